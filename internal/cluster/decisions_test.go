package cluster

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/tandem-ha/tandem/internal/api"
	"github.com/tandem-ha/tandem/internal/state"
)

func TestSyncWanted(t *testing.T) {
	grace := 10 * time.Second
	cases := []struct {
		name                         string
		mode                         string
		syncOn, connected, streaming bool
		since                        time.Duration
		want                         bool
		change                       string
	}{
		{"strict waits even with the secondary gone", ModeStrict, true, false, false, time.Hour, true, ""},
		{"async never waits", ModeAsync, false, true, true, 0, false, ""},
		{"sync keeps waiting within the grace", ModeSync, true, false, false, grace - time.Second, true, ""},
		{"sync degrades after the grace", ModeSync, true, false, false, grace, false, EventSyncDegraded},
		{"sync keeps waiting while connected but catching up", ModeSync, true, true, false, grace * 3, true, ""},
		{"sync restores once the secondary streams", ModeSync, false, true, true, 0, true, EventSyncRestored},
		{"sync stays async while the secondary catches up", ModeSync, false, true, false, 0, false, ""},
		{"sync stays async while the secondary is gone", ModeSync, false, false, false, time.Hour, false, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want, change := syncWanted(c.mode, c.syncOn, c.connected, c.streaming, c.since, grace)
			if want != c.want || change != c.change {
				t.Fatalf("syncWanted = %v, %q; want %v, %q", want, change, c.want, c.change)
			}
		})
	}
}

func TestPeerNewer(t *testing.T) {
	s := clusterState(state.RolePrimary, 3)
	for _, c := range []struct {
		role string
		term int64
		want bool
	}{
		{"secondary", 3, false}, // the peer confirms us
		{"secondary", 2, false},
		{"primary", 3, true}, // same term, the peer is primary: we are the stale one
		{"primary", 4, true},
		{"secondary", 4, true}, // any higher term
		{"none", 2, false},
	} {
		if got := peerNewer(s, c.role, c.term); got != c.want {
			t.Errorf("peer %s at term %d: stale=%v, want %v", c.role, c.term, got, c.want)
		}
	}
}

// bootAsPrimary runs the boot decision of a node whose state says
// "primary at term 3", in the background.
func bootAsPrimary(t *testing.T, tn *testNode) chan bool {
	t.Helper()
	done := make(chan bool, 1)
	go func() { done <- tn.bootPrimary(context.Background()) }()
	return done
}

func TestBootPrimaryConfirmedByItsSecondaryOpensForWrites(t *testing.T) {
	tn := newTestNode(t, clusterState(state.RolePrimary, 3))
	tn.pg.files["standby.signal"] = nil
	tn.peer.answer(api.Heartbeat{Name: "b", Role: "secondary", Term: 3})
	if rejoin := <-bootAsPrimary(t, tn); rejoin {
		t.Fatal("a primary confirmed by its secondary decided to rejoin")
	}
	if !tn.vip.isHeld() {
		t.Fatal("the confirmed primary did not take the cluster IP")
	}
	if _, err := tn.pg.ReadDataFile("standby.signal"); err == nil {
		t.Fatal("standby.signal left in place: PostgreSQL would start read-only")
	}
	if st := tn.pg.Status(context.Background()); st.State != "running" || st.InRecovery {
		t.Fatalf("PostgreSQL %+v, want running read-write", st)
	}
	if got := tn.pg.settings["synchronous_standby_names"]; got == "" {
		t.Fatal("a sync-mode primary came back without synchronous replication")
	}
}

func TestBootPrimaryStaleFencesAndRejoins(t *testing.T) {
	tn := newTestNode(t, clusterState(state.RolePrimary, 3))
	tn.peer.answer(api.Heartbeat{Name: "b", Role: "primary", Term: 4})
	if rejoin := <-bootAsPrimary(t, tn); !rejoin {
		t.Fatal("a primary whose peer is primary at a newer term did not decide to rejoin")
	}
	if tn.vip.isHeld() {
		t.Fatal("the stale primary holds the cluster IP")
	}
	if st := tn.pg.Status(context.Background()); st.State == "running" {
		t.Fatal("the stale primary's PostgreSQL runs")
	}
	s := tn.saved(t)
	if s.Role != state.RoleSecondary || s.Term != 4 || s.Operation == nil || s.Operation.Kind != OpRejoin || s.Operation.Step != StepFenced {
		t.Fatalf("state after the fence %+v %+v; want secondary at term 4, rejoin:fenced journaled", s, s.Operation)
	}
}

func TestBootPrimaryWithSilentPeerStaysClosed(t *testing.T) {
	for _, c := range []struct {
		name      string
		selfElect bool
		ipInUse   bool
	}{
		{"strict: never self-elects", false, false},
		{"self_elect, but another host answers for the cluster IP", true, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			tn := newTestNode(t, clusterState(state.RolePrimary, 3))
			tn.cfg.SelfElect, tn.cfg.PeerGrace = c.selfElect, 10*time.Millisecond
			tn.vip.inUse = c.ipInUse
			done := bootAsPrimary(t, tn)
			time.Sleep(1500 * time.Millisecond) // past the grace, one retry
			select {
			case <-done:
				t.Fatal("boot decided with the peer silent")
			default:
			}
			if tn.vip.isHeld() || tn.pg.Status(context.Background()).State == "running" {
				t.Fatal("a primary with a silent peer opened for writes")
			}
			tn.Stop(time.Second) // shutdown ends the wait
			select {
			case <-done:
			case <-time.After(3 * time.Second):
				t.Fatal("shutdown did not end boot's wait for the peer")
			}
		})
	}
}

func TestBootPrimarySelfElectsAfterGraceWhenClusterIPFree(t *testing.T) {
	tn := newTestNode(t, clusterState(state.RolePrimary, 3))
	tn.cfg.SelfElect, tn.cfg.PeerGrace = true, 10*time.Millisecond
	select {
	case rejoin := <-bootAsPrimary(t, tn):
		if rejoin {
			t.Fatal("self-election turned into a rejoin")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no self-election after the grace with the cluster IP free")
	}
	if !tn.vip.isHeld() || tn.pg.Status(context.Background()).State != "running" {
		t.Fatal("self-elected, but not open for writes with the cluster IP")
	}
}

func TestPrimaryFencesOnHigherTerm(t *testing.T) {
	tn := newTestNode(t, clusterState(state.RolePrimary, 3))
	tn.vip.held = true
	tn.pg.running = true
	s := tn.State()
	go tn.observeTerm(context.Background(), s, api.Heartbeat{Name: "b", Role: "primary", Term: 5})
	waitFor(t, "the fence", func() bool {
		st := tn.State()
		return st.Role == state.RoleSecondary && st.Term == 5
	})
	if tn.vip.isHeld() {
		t.Fatal("fenced, but still holding the cluster IP")
	}
	if tn.pg.Status(context.Background()).State == "running" {
		t.Fatal("fenced, but PostgreSQL still runs (a fence is hard)")
	}
	if op := tn.saved(t).Operation; op == nil || op.Kind != OpRejoin {
		t.Fatalf("journal after the fence %+v, want a rejoin", op)
	}
	// The rejoin runs as an operation: another one is refused meanwhile.
	if cur, _ := tn.run.snapshot(); cur == nil || cur.Kind != string(OpRejoin) {
		t.Fatalf("operation in flight %+v, want the rejoin", cur)
	}
}

func TestSecondaryFollowsTheTermWithoutFencing(t *testing.T) {
	tn := newTestNode(t, clusterState(state.RoleSecondary, 3))
	tn.pg.running = true
	if changed := tn.observeTerm(context.Background(), tn.State(), api.Heartbeat{Name: "b", Role: "primary", Term: 4}); changed {
		t.Fatal("a secondary changed role on a newer term")
	}
	if s := tn.saved(t); s.Term != 4 || s.Role != state.RoleSecondary {
		t.Fatalf("state %+v, want secondary at term 4", s)
	}
	if slices.Contains(tn.pg.called(), "halt") {
		t.Fatal("the secondary stopped PostgreSQL")
	}
}

func TestResolveInterruptedSwitchover(t *testing.T) {
	interrupted := func() state.State {
		s := clusterState(state.RolePrimary, 3)
		s.Operation = &state.Operation{Kind: OpSwitchover, Step: StepPromotePeer, Term: 4}
		return s
	}
	t.Run("peer promoted: follow it", func(t *testing.T) {
		tn := newTestNode(t, interrupted())
		tn.peer.answer(api.Heartbeat{Name: "b", Role: "primary", Term: 4})
		tn.resolveSwitchover(context.Background())
		s := tn.saved(t)
		if s.Role != state.RoleSecondary || s.Term != 4 || s.Operation == nil || s.Operation.Kind != OpRejoin || s.Operation.Step != StepFollow {
			t.Fatalf("state %+v %+v; want secondary at 4 with rejoin:follow", s, s.Operation)
		}
	})
	t.Run("peer did not promote: stay primary", func(t *testing.T) {
		tn := newTestNode(t, interrupted())
		tn.peer.answer(api.Heartbeat{Name: "b", Role: "secondary", Term: 3})
		tn.resolveSwitchover(context.Background())
		if s := tn.saved(t); s.Role != state.RolePrimary || s.Term != 3 || s.Operation != nil {
			t.Fatalf("state %+v; want primary at 3, journal closed", s)
		}
	})
	t.Run("peer busy promoting: keep asking", func(t *testing.T) {
		tn := newTestNode(t, interrupted())
		tn.peer.answer(api.Heartbeat{Name: "b", Role: "secondary", Term: 3, Operation: "promote:"})
		done := make(chan struct{})
		go func() { tn.resolveSwitchover(context.Background()); close(done) }()
		time.Sleep(1200 * time.Millisecond)
		if s := tn.saved(t); s.Operation == nil || s.Operation.Kind != OpSwitchover {
			t.Fatal("decided while the peer was still promoting")
		}
		tn.peer.answer(api.Heartbeat{Name: "b", Role: "primary", Term: 4})
		<-done
		if s := tn.saved(t); s.Role != state.RoleSecondary {
			t.Fatalf("role %s after the peer promoted, want secondary", s.Role)
		}
	})
	t.Run("peer silent: stay down until shutdown", func(t *testing.T) {
		tn := newTestNode(t, interrupted())
		done := make(chan struct{})
		go func() { tn.resolveSwitchover(context.Background()); close(done) }()
		time.Sleep(1200 * time.Millisecond)
		tn.Stop(time.Second)
		<-done
		if s := tn.saved(t); s.Operation == nil || s.Role != state.RolePrimary {
			t.Fatalf("state %+v: an unknown outcome must stay journaled", s)
		}
		if tn.vip.isHeld() {
			t.Fatal("took the cluster IP with the outcome unknown")
		}
	})
}

func TestResolveInterruptedPromotion(t *testing.T) {
	interrupted := func() state.State {
		s := clusterState(state.RoleSecondary, 3)
		s.Operation = &state.Operation{Kind: OpPromote, Step: StepPromote, Term: 4}
		return s
	}
	t.Run("standby.signal gone: promoted", func(t *testing.T) {
		tn := newTestNode(t, interrupted())
		tn.resolvePromote(context.Background())
		if s := tn.saved(t); s.Role != state.RolePrimary || s.Term != 4 || s.Operation != nil {
			t.Fatalf("state %+v, want primary at 4", s)
		}
	})
	t.Run("standby.signal there: not promoted", func(t *testing.T) {
		tn := newTestNode(t, interrupted())
		tn.pg.files["standby.signal"] = nil
		tn.resolvePromote(context.Background())
		if s := tn.saved(t); s.Role != state.RoleSecondary || s.Term != 3 || s.Operation != nil {
			t.Fatalf("state %+v, want secondary at 3", s)
		}
	})
}

func TestRecoveryBeforeStartRestoresAnInterruptedClone(t *testing.T) {
	s := clusterState(state.RoleNone, 0)
	s.Operation = &state.Operation{Kind: OpJoin, Step: StepClone}
	tn := newTestNode(t, s)
	// The old data moved aside, a half-made copy in its place.
	writeFile(t, tn.pg.dir+".tandem-old-20260101T000000/PG_VERSION", "15\n")
	writeFile(t, tn.pg.dir+"/half-made", "x")
	if err := tn.RecoverBeforePostgres(); err != nil {
		t.Fatal(err)
	}
	if !fileExists(tn.pg.dir+"/PG_VERSION") || fileExists(tn.pg.dir+"/half-made") {
		t.Fatal("the old data was not put back in place of the half-made clone")
	}
	if st := tn.saved(t); st.Role != state.RoleNone || st.Cluster != nil || st.Operation != nil {
		t.Fatalf("state %+v after an interrupted join, want no cluster", st)
	}
}

func TestMonitorCarriesOnAPendingReseed(t *testing.T) {
	s := clusterState(state.RoleSecondary, 3)
	s.Operation = &state.Operation{Kind: OpReseed, Step: StepClone}
	tn := newTestNode(t, s)
	tn.pg.running, tn.pg.recovery = true, true
	tn.peer.answer(api.Heartbeat{Name: "b", Role: "primary", Term: 3, SlotWALStatus: "reserved"})
	go tn.runMonitor(context.Background())
	waitFor(t, "the monitor to retry the re-seed (the primary asked to recreate the slot)", func() bool {
		tn.peer.mu.Lock()
		defer tn.peer.mu.Unlock()
		return tn.peer.slotsRecreated > 0
	})
	// The clone cannot work here (the fake has no data to copy): the
	// re-seed stays journaled for the next attempt.
	waitFor(t, "the failed attempt to end", func() bool { cur, _ := tn.run.snapshot(); return cur == nil })
	if op := tn.saved(t).Operation; op == nil || op.Kind != OpReseed {
		t.Fatalf("journal after a failed re-seed: %+v; it must stay until the re-seed succeeds", op)
	}
}
