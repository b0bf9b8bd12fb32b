package cluster

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/tandem-ha/tandem/internal/state"
)

// After a reload the primary's PostgreSQL and cluster IP are those the old
// process left running. With the peer silent, a restart would stay closed
// (TestBootPrimaryWithSilentPeerStaysClosed); a reload carries on as
// primary, touching neither, and keeps commits not waiting for the
// secondary if they did not before.
func TestBootPrimaryAfterReloadCarriesOnWithSilentPeer(t *testing.T) {
	tn := newTestNode(t, clusterState(state.RolePrimary, 3))
	tn.pg.start(map[string]string{}, false) // left running by the old process
	tn.vip.held = true
	off := false
	tn.SetHandover(Handover{Role: state.RolePrimary, Term: 3, SyncOn: &off})
	select {
	case rejoin := <-bootAsPrimary(t, tn):
		if rejoin {
			t.Fatal("a reloaded primary decided to rejoin")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a reloaded primary with a silent peer did not carry on")
	}
	for _, c := range tn.pg.called() {
		if c == "halt" || c == "fence" {
			t.Fatalf("PostgreSQL was stopped across the reload: calls %v", tn.pg.called())
		}
	}
	if st := tn.pg.Status(context.Background()); st.State != "running" || st.InRecovery {
		t.Fatalf("PostgreSQL %+v, want running read-write", st)
	}
	if !tn.vip.isHeld() || slices.Contains(tn.vip.calls, "release") {
		t.Fatalf("cluster IP held=%v calls %v, want held and never released", tn.vip.isHeld(), tn.vip.calls)
	}
	if got := tn.pg.settings["synchronous_standby_names"]; got != "" {
		t.Fatalf("synchronous_standby_names=%q after the reload of a degraded primary; commits would wait for the absent secondary", got)
	}
}

// A handover that does not match the state file (another term) is not a
// reason to skip the peer's word.
func TestHandoverForAnotherTermIsIgnored(t *testing.T) {
	tn := newTestNode(t, clusterState(state.RolePrimary, 3))
	tn.SetHandover(Handover{Role: state.RolePrimary, Term: 2})
	if tn.reloaded() != nil {
		t.Fatal("a handover for term 2 was taken for a node at term 3")
	}
	done := bootAsPrimary(t, tn)
	time.Sleep(1500 * time.Millisecond)
	select {
	case <-done:
		t.Fatal("boot decided with the peer silent and no valid handover")
	default:
	}
	if tn.vip.isHeld() || tn.pg.Status(context.Background()).State == "running" {
		t.Fatal("a primary with a silent peer and no valid handover opened for writes")
	}
	tn.Stop(time.Second)
	<-done
}
