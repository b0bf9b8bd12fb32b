package postgres

import (
	"context"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/tandem-ha/tandem/internal/tool"
)

// In maintenance mode an operator stops PostgreSQL and starts it by hand:
// the supervisor must neither restart it meanwhile (it would race the
// operator's pg_ctl start) nor lose it afterwards; it adopts the new
// postmaster. Switched back on, a missing postmaster is restarted.
func TestHandsOffAdoptsPostmasterStartedByHand(t *testing.T) {
	opts := testOptions(t)
	s := newSupervisor(t, opts)
	first := startOK(t, s)
	s.SetHandsOff(true)

	// The operator's fast stop.
	if err := syscall.Kill(first.PID, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	waitStatus(ctx, t, s, func(st Status) bool { return st.State == StateStopped && st.Error == StoppedByHand })
	// Several backoff periods and polls pass: still nobody starts it.
	time.Sleep(3 * time.Second)
	if st := s.Status(ctx); st.State != StateStopped || st.PID != 0 {
		t.Fatalf("hands off, the supervisor did something: %+v", st)
	}

	// pg_ctl start by hand: the supervisor adopts that postmaster.
	_, err := tool.Run(ctx, testLogger(t), tool.Cmd{
		Path: filepath.Join(opts.BinDir, "pg_ctl"),
		Args: []string{"-D", opts.DataDir, "-l", filepath.Join(opts.SocketDir, "pg_ctl.log"), "-w", "start"},
		User: s.runAs,
		Dir:  "/",
	})
	if err != nil {
		t.Fatalf("pg_ctl start: %v", err)
	}
	st := waitStatus(ctx, t, s, func(st Status) bool { return st.State == StateRunning && st.PID != first.PID && st.PID != 0 })
	if st.Error != "" || st.LSN == "" {
		t.Errorf("status after adopting the postmaster started by hand: %+v", st)
	}

	// Maintenance over: a crash is restarted again.
	s.SetHandsOff(false)
	if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitStatus(ctx, t, s, func(n Status) bool { return n.State == StateRunning && n.PID != st.PID && n.PID != 0 })
	stopOK(t, s)
	waitNoProcesses(t, opts.DataDir)
}

func waitStatus(ctx context.Context, t *testing.T, s *Supervisor, ok func(Status) bool) Status {
	t.Helper()
	for {
		st := s.Status(ctx)
		if ok(st) {
			return st
		}
		if ctx.Err() != nil {
			t.Fatalf("status never as expected: %+v", st)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Hands off stops only the supervisor's own restarts: a start asked for
// (an operation the operator started, such as a switchover) still starts.
func TestHandsOffStillServesAStartAskedFor(t *testing.T) {
	opts := testOptions(t)
	s := newSupervisor(t, opts)
	first := startOK(t, s)
	s.SetHandsOff(true)
	if err := syscall.Kill(first.PID, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	waitStatus(ctx, t, s, func(st Status) bool { return st.State == StateStopped && st.Error == StoppedByHand })
	if err := s.StartPrimary(ctx, nil, false); err != nil {
		t.Fatalf("a start asked for while hands off: %v", err)
	}
	if st := s.Status(ctx); st.State != StateRunning || st.PID == 0 || st.PID == first.PID {
		t.Fatalf("after the start asked for: %+v", st)
	}
	stopOK(t, s)
	waitNoProcesses(t, opts.DataDir)
}
