//go:build linux

package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tandem-ha/tandem/internal/tool"
)

// startDetached starts path with args inside namespace ns, in a session of
// its own with stdout and stderr appended to logPath, records its pid in
// pidPath (unless empty) and lets it outlive this process. `ip netns exec` replaces itself
// with the program, so the pid is the program's.
func startDetached(log *slog.Logger, ns, logPath, pidPath, path string, args ...string) (int, error) {
	ip, err := lookTool("ip")
	if err != nil {
		return 0, err
	}
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return 0, fmt.Errorf("while opening %s: %w", logPath, err)
	}
	defer logf.Close()
	argv := append([]string{"netns", "exec", ns, path}, args...)
	log.Info("starting", "tool", filepath.Base(path), "netns", ns, "args", args)
	cmd := tool.Prepare(context.Background(), tool.Cmd{Path: ip, Args: argv})
	// A new session rather than only a new process group: the program must
	// not get the terminal's signals once `lab up` has returned.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Stdout = logf
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("while starting %s in %s: %w", filepath.Base(path), ns, err)
	}
	pid := cmd.Process.Pid
	_ = cmd.Process.Release()
	if pidPath == "" {
		return pid, nil
	}
	if err := os.WriteFile(pidPath, []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		return pid, fmt.Errorf("while recording the pid of %s: %w", filepath.Base(path), err)
	}
	return pid, nil
}

// alive tells whether pid is a running process; a zombie counts as gone.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return false
	}
	state := b[i+2]
	return state != 'Z' && state != 'X'
}

func cmdline(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(bytes.ReplaceAll(b, []byte{0}, []byte{' '})))
}

func netnsID(pid string) string {
	s, _ := os.Readlink("/proc/" + pid + "/ns/net")
	return s
}

// readPid returns the pid recorded in path if that process still runs and
// its command line mentions mark (so a recycled pid is never signalled).
func readPid(path, mark string) (int, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 || !alive(pid) || !strings.Contains(cmdline(pid), mark) {
		return 0, false
	}
	return pid, true
}

// strays lists processes outside this process's network namespace whose
// command line mentions dir: lab processes whose namespace is already gone.
func strays(dir string) []int {
	self := netnsID("self")
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		ns := netnsID(e.Name())
		if ns == "" || ns == self || !alive(pid) {
			continue
		}
		if strings.Contains(cmdline(pid), dir+"/") {
			out = append(out, pid)
		}
	}
	return out
}

// stop sends sig to every pid and waits up to wait for all of them to end;
// it returns those still running.
func stop(log *slog.Logger, pids []int, sig syscall.Signal, wait time.Duration) []int {
	for _, pid := range pids {
		if alive(pid) {
			log.Debug("signalling", "pid", pid, "signal", sig.String(), "cmd", cmdline(pid))
			if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
				log.Warn("cannot signal", "pid", pid, "signal", sig.String(), "err", err)
			}
		}
	}
	deadline := time.Now().Add(wait)
	for {
		var left []int
		for _, pid := range pids {
			if alive(pid) {
				left = append(left, pid)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// tailFile returns the last n lines of a file, for error messages.
func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
