package cluster

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandem-ha/tandem/internal/api"
	"github.com/tandem-ha/tandem/internal/state"
)

func TestSecondOperationGetsConflictNamingTheFirst(t *testing.T) {
	tn := newTestNode(t, state.State{Role: state.RoleNone})
	release := make(chan struct{})
	started := make(chan struct{})
	go func() {
		_, _ = runOp(tn.Node, context.Background(), OpSwitchover, byConsole, func(ctx context.Context, _ func(int, error)) (int, error) {
			close(started)
			<-release
			return 0, nil
		})
	}()
	<-started
	_, err := runOp(tn.Node, context.Background(), OpFailover, byConsole, func(context.Context, func(int, error)) (int, error) {
		t.Error("a second operation ran while the first held the exclusion")
		return 0, nil
	})
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Status != http.StatusConflict || !strings.Contains(ae.Message, "operation switchover is in progress on a") {
		t.Fatalf("second operation: %v, want a 409 naming the switchover", err)
	}
	// The monitor's internal actions are refused too.
	if tn.inline(OpReseed, func(context.Context) error { t.Error("inline ran"); return nil }) {
		t.Fatal("inline ran while an operation held the exclusion")
	}
	close(release)
}

func TestOperationOutlivesItsCaller(t *testing.T) {
	tn := newTestNode(t, state.State{Role: state.RoleNone})
	ctx, cancel := context.WithCancel(context.Background())
	proceed := make(chan struct{})
	finished := make(chan error, 1)
	go func() {
		_, err := runOp(tn.Node, ctx, OpSwitchover, byConsole, func(opCtx context.Context, _ func(string, error)) (string, error) {
			<-proceed
			// The caller is gone by now; the operation's context is not.
			finished <- opCtx.Err()
			return "done", nil
		})
		if err == nil {
			t.Error("the caller got a result although it went away first")
		}
	}()
	time.Sleep(20 * time.Millisecond)
	cancel() // the console is killed
	time.Sleep(20 * time.Millisecond)
	close(proceed)
	if err := <-finished; err != nil {
		t.Fatalf("the operation's context ended with its caller: %v", err)
	}
	waitFor(t, "the outcome to be recorded", func() bool {
		_, last := tn.run.snapshot()
		return last != nil && last.Outcome == api.OutcomeSucceeded && last.Kind == string(OpSwitchover)
	})
}

func TestReplyEarlyThenCarryOn(t *testing.T) {
	tn := newTestNode(t, state.State{Role: state.RoleNone})
	carryOn := make(chan struct{})
	v, err := runOp(tn.Node, context.Background(), OpSwitchover, byConsole, func(ctx context.Context, reply func(string, error)) (string, error) {
		reply("early", nil)
		<-carryOn
		return "final", errors.New("settled later")
	})
	if v != "early" || err != nil {
		t.Fatalf("caller got %q, %v; want the early answer", v, err)
	}
	if cur, _ := tn.run.snapshot(); cur == nil {
		t.Fatal("the operation released the exclusion when it answered early")
	}
	close(carryOn)
	waitFor(t, "the final outcome", func() bool {
		_, last := tn.run.snapshot()
		return last != nil && last.Outcome == api.OutcomeFailed && last.Error == "settled later"
	})
}

func TestStopWaitsForTheOperationThenRefusesNewOnes(t *testing.T) {
	tn := newTestNode(t, state.State{Role: state.RoleNone})
	var done sync.WaitGroup
	done.Add(1)
	ended := false
	go func() {
		defer done.Done()
		_, _ = runOp(tn.Node, context.Background(), OpSwitchover, byConsole, func(ctx context.Context, _ func(int, error)) (int, error) {
			time.Sleep(100 * time.Millisecond)
			ended = ctx.Err() == nil
			return 0, nil
		})
	}()
	time.Sleep(10 * time.Millisecond)
	start := time.Now()
	tn.Stop(5 * time.Second)
	if time.Since(start) < 50*time.Millisecond {
		t.Fatal("Stop returned before the operation in flight finished")
	}
	done.Wait()
	if !ended {
		t.Fatal("the operation's context was cancelled although it finished within the grace")
	}
	_, err := runOp(tn.Node, context.Background(), OpFailover, byConsole, func(context.Context, func(int, error)) (int, error) { return 0, nil })
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Status != http.StatusServiceUnavailable {
		t.Fatalf("an operation after Stop: %v, want 503 shutting down", err)
	}
	if tn.run.goAttach(func(context.Context) {}) {
		t.Fatal("goAttach ran work after Stop")
	}
}

func TestStopCancelsAnOperationPastTheGrace(t *testing.T) {
	tn := newTestNode(t, state.State{Role: state.RoleNone})
	cancelled := make(chan bool, 1)
	go func() {
		_, _ = runOp(tn.Node, context.Background(), OpReseed, byNode, func(ctx context.Context, _ func(int, error)) (int, error) {
			select {
			case <-ctx.Done():
				cancelled <- true
			case <-time.After(10 * time.Second):
				cancelled <- false
			}
			return 0, ctx.Err()
		})
	}()
	time.Sleep(10 * time.Millisecond)
	tn.Stop(50 * time.Millisecond)
	if !<-cancelled {
		t.Fatal("an operation past the grace was not cancelled")
	}
}

func TestShortExclusiveActionDelaysAnOperationInsteadOfRefusingIt(t *testing.T) {
	tn := newTestNode(t, state.State{Role: state.RoleNone})
	inside := make(chan struct{})
	go tn.exclusive(func() {
		close(inside)
		time.Sleep(100 * time.Millisecond)
	})
	<-inside
	ran := false
	_, err := runOp(tn.Node, context.Background(), OpSwitchover, byConsole, func(context.Context, func(int, error)) (int, error) {
		ran = true
		return 0, nil
	})
	if err != nil || !ran {
		t.Fatalf("an operation behind a short adjustment: ran=%v err=%v; want it to wait and run", ran, err)
	}
}

func TestUpdateIsTheOneWriter(t *testing.T) {
	tn := newTestNode(t, clusterState(state.RoleSecondary, 1))
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = tn.set(func(s *state.State) { s.Term++ })
		}()
	}
	wg.Wait()
	if got := tn.State().Term; got != 51 {
		t.Fatalf("term in memory %d after 50 concurrent increments from 1, want 51", got)
	}
	if got := tn.saved(t).Term; got != 51 {
		t.Fatalf("term in the file %d, want 51: file and memory disagree", got)
	}
	// A failing change leaves both untouched.
	err := tn.update(func(s *state.State) error { s.Term = 99; return errors.New("no") })
	if err == nil || tn.State().Term != 51 || tn.saved(t).Term != 51 {
		t.Fatalf("a failed update changed the state (err %v, term %d / %d)", err, tn.State().Term, tn.saved(t).Term)
	}
	// State hands out copies.
	s := tn.State()
	s.Cluster.Peer.Name = "mallory"
	if tn.State().Cluster.Peer.Name != "b" {
		t.Fatal("State returned shared memory")
	}
}

func TestJournalRefusesAStepWithoutRecovery(t *testing.T) {
	tn := newTestNode(t, clusterState(state.RolePrimary, 1))
	if err := tn.journal(OpSwitchover, "made-up", 2); err == nil {
		t.Fatal("a step missing from the recovery table was journaled")
	}
	if tn.saved(t).Operation != nil {
		t.Fatal("the refused step reached the state file")
	}
	if err := tn.journal(OpSwitchover, StepDemote, 2); err != nil {
		t.Fatal(err)
	}
	op := tn.saved(t).Operation
	if op == nil || op.Kind != OpSwitchover || op.Step != StepDemote || op.Term != 2 {
		t.Fatalf("journal wrote %+v", op)
	}
}

func TestEveryJournaledStepHasARecovery(t *testing.T) {
	steps := JournaledSteps()
	if len(steps) < 17 {
		t.Fatalf("only %d journaled steps listed", len(steps))
	}
	for _, s := range steps {
		r, _ := recoveryFor(s.Op, s.Step)
		if s.How == "" {
			t.Errorf("%s:%s: the recovery says nothing about what it does", s.Op, s.Step)
		}
		// Each step is settled by a recovery function, or carried on by
		// what resumedBy names (the boot decision rejoins, the monitor
		// re-seeds).
		if r.beforeStart == nil && r.atBoot == nil && r.afterStart == nil && r.resumedBy == "" {
			t.Errorf("%s:%s has no recovery", s.Op, s.Step)
		}
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
