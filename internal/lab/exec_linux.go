//go:build linux

package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"

	"github.com/tandem-ha/tandem/internal/tool"
)

// Exec runs argv on host of the lab called name, with the given stdio and
// the caller's environment, and returns its exit code (128+signal when a
// signal ended it). The host's /etc/resolv.conf, hosts and nsswitch.conf
// are the lab's, as `ip netns exec` binds them.
func Exec(ctx context.Context, log *slog.Logger, name, host string, argv []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	if err := CheckHost(); err != nil {
		return 0, err
	}
	if len(argv) == 0 {
		return 0, errors.New("no command given: write it after --, for example `tandem lab exec client -- getent hosts a`")
	}
	l, err := Load(name)
	if err != nil {
		return 0, err
	}
	return execIn(ctx, log, l, host, argv, nil, stdin, stdout, stderr)
}

// execIn runs argv on a host of l with the caller's environment plus env.
// On the client, the console finds the lab's cluster: TANDEM_CACHE_DIR
// points at the lab's console directory unless the caller chose a cache
// (TANDEM_CACHE_DIR or XDG_CACHE_HOME).
func execIn(ctx context.Context, log *slog.Logger, l *Layout, host string, argv, env []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	h, ok := l.Host(host)
	if !ok {
		return 0, fmt.Errorf("lab %s has no host %q; its hosts are %s", l.Name, host, strings.Join(l.HostNames(), ", "))
	}
	ip, err := lookTool("ip")
	if err != nil {
		return 0, err
	}
	// Found here, with the caller's PATH, so that a typo gets the shell's
	// answer: status 127 and a clear message. The namespace shares this
	// machine's file system, so what is found here runs there.
	if !strings.Contains(argv[0], "/") {
		if _, err := exec.LookPath(argv[0]); err != nil {
			return 127, fmt.Errorf("%w: %s", ErrCommandNotFound, argv[0])
		}
	}
	cmd := tool.Prepare(ctx, tool.Cmd{Path: ip, Args: append([]string{"netns", "exec", h.Netns}, argv...)})
	// The command is the caller's: their environment, their terminal, and
	// the terminal's process group so that job control and ^C work.
	cmd.Env = os.Environ()
	if host == "client" && os.Getenv("TANDEM_CACHE_DIR") == "" && os.Getenv("XDG_CACHE_HOME") == "" {
		cmd.Env = append(cmd.Env, "TANDEM_CACHE_DIR="+l.ConsoleDir())
	}
	cmd.Env = append(cmd.Env, env...)
	cmd.SysProcAttr = nil
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	log.Debug("running", "tool", "ip", "args", cmd.Args[1:])

	// ^C reaches the command from the terminal; this process only waits.
	// Termination requests sent to this process are passed on.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("while starting the command on %s: %w", host, err)
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case s := <-sigs:
				if s == syscall.SIGTERM || s == syscall.SIGHUP {
					_ = cmd.Process.Signal(s)
				}
			case <-done:
				return
			}
		}
	}()
	err = cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return ee.ExitCode(), nil
	}
	if err != nil {
		return 0, fmt.Errorf("while running the command on %s: %w", host, err)
	}
	return 0, nil
}
