package daemon

// Reload: replace the running tandemd with the binary now on disk while
// PostgreSQL keeps running and keeps its clients and the cluster IP stays
// on the interface (docs/operations.md, "Upgrade and reload").
//
// tandemd re-executes itself in place (execve of its own executable, same
// PID) rather than handing its sockets to a new process. The same PID is
// what systemd tracks as MAINPID (Type=notify, KillMode=process): nothing
// in the unit changes, PostgreSQL stays tandemd's child, and there is never
// a second tandemd on the state dir. What would make a socket handover
// worth its complexity does not apply: the node API is not on the write
// path (clients write to PostgreSQL through the cluster IP), so it may stop
// answering for the fraction of a second the exec takes; the console and
// the peer retry. The costs: the old process must let go of everything
// first (an operation in flight finishes, the cluster IP and PostgreSQL are
// detached rather than stopped, the quorum released without resigning),
// and a new binary that cannot start is found out only after the exec —
// which is why the old process first runs the new binary's own
// configuration check and refuses the reload if it fails.
//
// The sequence, old process (SIGUSR2, sent by `tandemd --reload`):
//  1. run `<exe> --config FILE --check`: the new binary validates the
//     configuration and the host; on failure, log and stay;
//  2. tell systemd RELOADING=1, stop the node API, let the operation in
//     flight finish (Node.Stop with OperationGrace);
//  3. note the role, term, synchronous setting and, in automatic mode, the
//     lease after one last renewal (cluster.Handover);
//  4. detach the cluster IP manager and the PostgreSQL supervisor (both
//     leave what they own as it is), unlock the state dir, exec.
//
// New process: reads the handover from the environment (only if it names
// this PID), adopts the postmaster, finds the cluster IP on the interface
// and keeps it, resumes the lease, and sends READY=1.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tandem-ha/tandem/internal/cluster"
	"github.com/tandem-ha/tandem/internal/service"
	"github.com/tandem-ha/tandem/internal/version"
)

// ReloadSignal asks a running tandemd to reload. SIGHUP keeps its meaning
// (re-read the tokens and log.level).
const ReloadSignal = service.ReloadSignal

// handoverEnv carries the handover across the exec. It does not start with
// TANDEMD_, the prefix of configuration variables, and is removed from the
// environment as soon as it is read, so hooks and PostgreSQL never see it.
const handoverEnv = "TANDEM_RELOAD_HANDOVER"

// runFile, in the state dir, says which tandemd runs and how its last
// reload went; `tandemd --reload` reads it.
const runFile = "tandemd.run"

// reloadCheckTimeout bounds the new binary's configuration check.
const reloadCheckTimeout = 30 * time.Second

// runInfo is the content of runFile.
type runInfo struct {
	PID     int       `json:"pid"`
	Version string    `json:"version"`
	Started time.Time `json:"started"`
	// Ready: the node API listens (READY=1 was sent).
	Ready bool `json:"ready"`
	// ReloadError is why the last reload was refused, at ReloadErrorAt.
	ReloadError   string    `json:"reload_error,omitempty"`
	ReloadErrorAt time.Time `json:"reload_error_at,omitzero"`
}

// envelope is the handover as it crosses the exec.
type envelope struct {
	cluster.Handover
	// MadeMono is CLOCK_MONOTONIC when the handover was made, in ns: it
	// survives the exec (Go's own monotonic clock starts again), so the new
	// process knows how much of the lease is left.
	MadeMono int64 `json:"made_mono"`
}

func monoNow() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Nano()
}

// takeHandover reads and removes the handover a reload left in the
// environment. One for another PID (a stale variable inherited by a
// process systemd started anew) is dropped.
func takeHandover(log *slog.Logger) *cluster.Handover {
	raw, ok := os.LookupEnv(handoverEnv)
	if !ok {
		return nil
	}
	_ = os.Unsetenv(handoverEnv)
	var e envelope
	if err := json.Unmarshal([]byte(raw), &e); err != nil {
		log.Warn("unreadable reload handover; starting as after a restart", "err", err)
		return nil
	}
	if e.PID != os.Getpid() {
		log.Warn("reload handover from another process; starting as after a restart", "handover_pid", e.PID)
		return nil
	}
	h := e.Handover
	if h.LeaseLeft > 0 {
		elapsed := time.Duration(monoNow() - e.MadeMono)
		h.LeaseDeadline = time.Now().Add(h.LeaseLeft - elapsed)
	}
	log.Info("reloaded in place", "previous_version", h.Version, "role", h.Role, "term", h.Term)
	return &h
}

// checkNewBinary runs the executable now on disk on this configuration
// with --check: a reload to a binary that cannot start, or with a
// configuration it refuses, is refused before anything is let go of.
func (d *Daemon) checkNewBinary(ctx context.Context) error {
	if d.exe == "" {
		return errors.New("the path of tandemd's executable is unknown")
	}
	if d.configPath == "" {
		return errors.New("tandemd runs without --config; a reload re-reads the configuration file, so there must be one")
	}
	ctx, cancel := context.WithTimeout(ctx, reloadCheckTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, d.exe, "--config", d.configPath, "--check").CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s --config %s --check failed (%v): %s", d.exe, d.configPath, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// reexec replaces this process with the executable on disk, with the same
// arguments and the handover in the environment. It returns only on
// failure; by then everything was let go of, so the caller exits and
// systemd starts tandemd again (PostgreSQL, still running, is adopted).
func (d *Daemon) reexec(h cluster.Handover) error {
	e := envelope{Handover: h, MadeMono: monoNow()}
	e.PID, e.Version = os.Getpid(), version.Version
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	env := append(os.Environ(), handoverEnv+"="+string(b))
	d.log.Info("re-executing", "exe", d.exe, "args", os.Args[1:])
	return syscall.Exec(d.exe, os.Args, env)
}

func writeRunInfo(dir string, r runInfo) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	path := filepath.Join(dir, runFile)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func readRunInfo(dir string) (runInfo, error) {
	var r runInfo
	b, err := os.ReadFile(filepath.Join(dir, runFile))
	if err != nil {
		return r, err
	}
	return r, json.Unmarshal(b, &r)
}

// Reload is `tandemd --reload`: what the unit's ExecReload runs. It is the
// binary now on disk, so it first checks that it accepts the configuration
// and the host (as the running tandemd will once more before it
// re-executes), then signals the running tandemd and waits until the new
// process answers (its node API listens) or the reload was refused. It
// fails when no tandemd runs on this state dir.
func Reload(ctx context.Context, stateDir string, out func(format string, a ...any)) error {
	before, err := readRunInfo(stateDir)
	if err != nil {
		return fmt.Errorf("no running tandemd found in %s (%v): start it instead", stateDir, err)
	}
	if !stateDirLocked(stateDir) {
		return fmt.Errorf("tandemd is not running on state_dir %s: start it instead", stateDir)
	}
	proc, err := os.FindProcess(before.PID)
	if err != nil {
		return err
	}
	sent := time.Now()
	if err := proc.Signal(ReloadSignal); err != nil {
		return fmt.Errorf("while signalling tandemd (pid %d): %w", before.PID, err)
	}
	// The old process lets the operation in flight finish first.
	deadline := time.NewTimer(OperationGrace + 60*time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return fmt.Errorf("tandemd (pid %d) did not come back from the reload in time; see its log", before.PID)
		case <-tick.C:
		}
		if err := proc.Signal(syscall.Signal(0)); err != nil {
			return fmt.Errorf("tandemd (pid %d) exited during the reload; see its log (systemd starts it again, and it adopts the running PostgreSQL)", before.PID)
		}
		r, err := readRunInfo(stateDir)
		if err != nil {
			continue // being replaced
		}
		switch {
		case r.ReloadError != "" && !r.ReloadErrorAt.Before(sent):
			return fmt.Errorf("reload refused, tandemd (pid %d) runs on unchanged: %s", r.PID, r.ReloadError)
		case r.PID == before.PID && r.Ready && r.Started.After(before.Started):
			out("tandemd reloaded: pid %d, version %s (was %s), in %s\n", r.PID, r.Version, before.Version, time.Since(sent).Round(time.Millisecond))
			return nil
		}
	}
}

// stateDirLocked says whether a tandemd holds the state dir's lock.
func stateDirLocked(dir string) bool {
	f, err := os.OpenFile(filepath.Join(dir, "tandemd.lock"), os.O_RDWR, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return errors.Is(err, syscall.EWOULDBLOCK)
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}
