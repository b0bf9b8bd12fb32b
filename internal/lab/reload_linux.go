//go:build linux

package lab

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"syscall"
	"time"
)

// restartStopWait bounds a restart's wait for tandemd to stop: the unit's
// TimeoutStopSec (the operation grace, then PostgreSQL's three stages).
const restartStopWait = 150 * time.Second

// Reload does on a node what `systemctl reload tandemd` does: it runs the
// unit's ExecReload, `tandemd --config FILE --reload`, on the host. The
// tandemd executable run is the lab's (what `up` started, or the one
// FindTandemd picks): replace that file first to try an upgrade. It
// returns the command's exit code: 0 once the new process answers.
func Reload(ctx context.Context, log *slog.Logger, name, host string, stdout, stderr io.Writer) (int, error) {
	l, h, tandemd, err := nodeHost(name, host)
	if err != nil {
		return 0, err
	}
	if h.Role != RoleNode {
		return 0, fmt.Errorf("host %s is the witness: it has no reload (no PostgreSQL, no cluster IP to keep); `tandem lab restart %s` restarts it", host, host)
	}
	if _, ok := readPid(l.PidPath(h.Name), l.Dir+"/"); !ok {
		return 0, fmt.Errorf("tandemd does not run on %s: nothing to reload (`tandem lab power-on %s` starts it)", host, host)
	}
	argv := []string{tandemd, "--config", l.ConfigPath(h.Name), "--reload"}
	return execIn(ctx, log, l, host, argv, nil, nil, stdout, stderr)
}

// Restart does on a node (or the witness) what `systemctl restart tandemd`
// does: SIGTERM to tandemd (which stops PostgreSQL on a node), a wait for
// it to exit, then tandemd started again with the same configuration, and
// a wait for its /health.
func Restart(ctx context.Context, log *slog.Logger, name, host string, wait time.Duration, out io.Writer) error {
	l, h, tandemd, err := nodeHost(name, host)
	if err != nil {
		return err
	}
	pid, ok := readPid(l.PidPath(h.Name), l.Dir+"/")
	if ok {
		if left := stop(log, []int{pid}, syscall.SIGTERM, restartStopWait); len(left) > 0 {
			return fmt.Errorf("tandemd (pid %d) on %s did not stop within %s; see %s", pid, host, restartStopWait, l.LogPath(h.Name))
		}
		fmt.Fprintf(out, "lab %s: tandemd on %s stopped\n", l.Name, host)
	}
	if pid, err = restartDaemon(log, l, h, tandemd); err != nil {
		return err
	}
	fmt.Fprintf(out, "lab %s: tandemd on %s started (pid %d)\n", l.Name, host, pid)
	if wait <= 0 {
		wait = DefaultPowerOnTimeout
	}
	own := func(h Host) string { return h.Netns }
	return waitHealthy(ctx, l, []Host{h}, map[string]int{h.Name: pid}, own, wait, out)
}

// nodeHost finds a host that runs tandemd, powered on, and the tandemd
// executable to run there.
func nodeHost(name, host string) (*Layout, Host, string, error) {
	l, err := Load(name)
	if err != nil {
		return nil, Host{}, "", err
	}
	h, err := l.LookupHost(host)
	if err != nil {
		return nil, Host{}, "", err
	}
	if h.Role != RoleNode && h.Role != RoleWitness {
		return nil, Host{}, "", fmt.Errorf("host %s runs no tandemd; nodes and the witness do", host)
	}
	f, err := l.LoadFaults()
	if err != nil {
		return nil, Host{}, "", err
	}
	if f.IsOff(host) {
		return nil, Host{}, "", fmt.Errorf("host %s is powered off (`tandem lab power-on %s`)", host, host)
	}
	tandemd := l.Tandemd
	if tandemd == "" || !isExecutable(tandemd) {
		if tandemd, err = FindTandemd(""); err != nil {
			return nil, Host{}, "", err
		}
	}
	if _, err := os.Stat(l.ConfigPath(h.Name)); err != nil {
		return nil, Host{}, "", fmt.Errorf("no configuration for %s: %w", host, err)
	}
	return l, h, tandemd, nil
}
