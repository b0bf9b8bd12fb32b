package postgres

import (
	"context"
	"errors"
	"testing"
	"time"
)

// A fence ends every session at once and keeps PostgreSQL down: no crash
// restart, no read-write start, no promotion, until Unfence; a start as a
// standby (which writes nothing) is allowed and lifts it.
func TestFenceStopsAtOnceAndStaysDown(t *testing.T) {
	opts := testOptions(t)
	s := newSupervisor(t, opts)
	startOK(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := s.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	// A session in the middle of a long statement: an immediate shutdown
	// ends it, a smart one would wait for it.
	done := make(chan error, 1)
	go func() {
		_, err := conn.Exec(ctx, "SELECT pg_sleep(60)")
		done <- err
	}()
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	if err := s.Fence(ctx); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("the fence took %v", took)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("the session's statement succeeded across a fence")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the session survived the fence")
	}
	if !s.Fenced() {
		t.Fatal("Fenced() false after Fence")
	}
	if len(processesIn(opts.DataDir)) != 0 {
		t.Fatal("PostgreSQL processes remain after the fence")
	}
	// No crash restart comes.
	time.Sleep(2 * time.Second)
	if st := s.Status(ctx); st.State == StateRunning || st.State == StateStarting {
		t.Fatalf("PostgreSQL %s after a fence; it must stay down", st.State)
	}
	if err := s.StartPrimary(ctx, nil, false); !errors.Is(err, ErrFenced) {
		t.Fatalf("StartPrimary while fenced: %v, want ErrFenced", err)
	}
	if err := s.Resume(ctx, false); !errors.Is(err, ErrFenced) {
		t.Fatalf("Resume while fenced: %v, want ErrFenced", err)
	}
	if err := s.Promote(ctx); !errors.Is(err, ErrFenced) {
		t.Fatalf("Promote while fenced: %v, want ErrFenced", err)
	}
	if len(processesIn(opts.DataDir)) != 0 {
		t.Fatal("a refused start left PostgreSQL processes")
	}
	s.Unfence()
	if err := s.StartPrimary(ctx, nil, false); err != nil {
		t.Fatalf("StartPrimary after Unfence: %v", err)
	}
	if st := s.Status(ctx); st.State != StateRunning || st.InRecovery {
		t.Fatalf("after Unfence and StartPrimary: %+v", st)
	}
	stopOK(t, s)
	waitNoProcesses(t, opts.DataDir)
}

// A postmaster an earlier tandemd left running is fenced too, though this
// supervisor never adopted it.
func TestFenceStopsAForeignPostmaster(t *testing.T) {
	opts := testOptions(t)
	s1 := newSupervisor(t, opts)
	startOK(t, s1)
	s1.abandonForTest()

	s2 := newSupervisor(t, opts)
	if err := s2.StartHalted(); err != nil {
		t.Fatal(err)
	}
	if !s2.PostmasterRunning() {
		t.Fatal("the abandoned postmaster is not seen running")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := s2.Fence(ctx); err != nil {
		t.Fatal(err)
	}
	waitNoProcesses(t, opts.DataDir)
	if s2.PostmasterRunning() {
		t.Fatal("the foreign postmaster still runs after the fence")
	}
}
