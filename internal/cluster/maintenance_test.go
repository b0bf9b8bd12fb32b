package cluster

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandem-ha/tandem/internal/api"
	"github.com/tandem-ha/tandem/internal/state"
)

// peerTakes makes the fake peer keep what it is sent, as a real one does.
func peerTakes(tn *testNode) *[]api.MaintenanceInfo {
	var mu sync.Mutex
	got := &[]api.MaintenanceInfo{}
	tn.peer.mu.Lock()
	tn.peer.maint = func(m api.MaintenanceInfo) (api.MaintenanceInfo, error) {
		mu.Lock()
		defer mu.Unlock()
		*got = append(*got, m)
		return m, nil
	}
	tn.peer.mu.Unlock()
	return got
}

func inMaint(st state.State) bool { return maintenanceOf(st) != nil }

func TestMaintenanceOnAndOffReachBothNodesAndSurviveARestart(t *testing.T) {
	tn := newTestNode(t, clusterState(state.RolePrimary, 3))
	tn.peer.answer(api.Heartbeat{Name: "b", Role: "secondary", Term: 3})
	sent := peerTakes(tn)
	ctx := context.Background()

	res, err := tn.SetMaintenance(ctx, api.MaintenanceRequest{On: true, Reason: "kernel update", By: "alice@ops"})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Changed || !res.Maintenance.On || res.Maintenance.Gen != 1 || res.Maintenance.By != "alice@ops" || res.Maintenance.Reason != "kernel update" {
		t.Fatalf("result %+v", res)
	}
	if len(res.Nodes) != 2 || !res.Nodes[0].Applied || !res.Nodes[1].Applied {
		t.Fatalf("nodes %+v, want both applied", res.Nodes)
	}
	if len(*sent) != 1 || !(*sent)[0].On || (*sent)[0].Gen != 1 {
		t.Fatalf("the peer got %+v", *sent)
	}
	// Durable: what a restarted tandemd reads.
	if saved := tn.saved(t); !inMaint(saved) || saved.Cluster.Maintenance.Reason != "kernel update" {
		t.Fatalf("state file %+v", saved.Cluster.Maintenance)
	}
	if !tn.pg.handsOff {
		t.Fatal("maintenance on, but the supervisor still restarts PostgreSQL by itself")
	}
	if info := tn.Node.Node(ctx); info.Maintenance == nil || !info.Maintenance.On {
		t.Fatalf("GET /v1/node maintenance %+v", info.Maintenance)
	}

	// On again: nothing changes, nothing is recorded.
	again, err := tn.SetMaintenance(ctx, api.MaintenanceRequest{On: true, Reason: "other"})
	if err != nil || again.Changed || again.Maintenance.Gen != 1 || again.Maintenance.Reason != "kernel update" {
		t.Fatalf("second on: %+v, %v", again, err)
	}

	off, err := tn.SetMaintenance(ctx, api.MaintenanceRequest{On: false, By: "bob@ops"})
	if err != nil || !off.Changed || off.Maintenance.On || off.Maintenance.Gen != 2 {
		t.Fatalf("off: %+v, %v", off, err)
	}
	if inMaint(tn.saved(t)) || tn.pg.handsOff {
		t.Fatal("maintenance off, but the node still holds it")
	}
}

// The peer down: the switch holds here and the answer says who did not
// take it (refusing would make "off" impossible when the primary is gone).
func TestMaintenanceWithThePeerSilentSaysSo(t *testing.T) {
	tn := newTestNode(t, clusterState(state.RoleSecondary, 3))
	res, err := tn.SetMaintenance(context.Background(), api.MaintenanceRequest{On: true, By: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Changed || !inMaint(tn.saved(t)) {
		t.Fatalf("not switched on here: %+v", res)
	}
	if res.Nodes[1].Name != "b" || res.Nodes[1].Applied || !strings.Contains(res.Nodes[1].Error, "learns it when the nodes hear each other again") {
		t.Fatalf("peer entry %+v", res.Nodes[1])
	}
}

func TestMaintenanceBadReasonChangesNothing(t *testing.T) {
	tn := newTestNode(t, clusterState(state.RolePrimary, 3))
	for _, reason := range []string{"two\nlines", strings.Repeat("x", maxReasonLen+1)} {
		_, err := tn.SetMaintenance(context.Background(), api.MaintenanceRequest{On: true, Reason: reason})
		var ae *api.Error
		if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest {
			t.Fatalf("reason %q: %v, want a 400", reason, err)
		}
	}
	if tn.saved(t).Cluster.Maintenance != nil || tn.pg.handsOff {
		t.Fatal("a refused switch changed the node")
	}
	notInCluster := newTestNode(t, state.State{Role: state.RoleNone})
	if _, err := notInCluster.SetMaintenance(context.Background(), api.MaintenanceRequest{On: true}); err == nil {
		t.Fatal("maintenance switched on outside a cluster")
	}
}

// Convergence: a later switch wins, an older one is ignored.
func TestPeerMaintenanceKeepsTheLaterSwitch(t *testing.T) {
	tn := newTestNode(t, clusterState(state.RoleSecondary, 3))
	t0 := time.Now().UTC()
	on := api.MaintenanceInfo{On: true, By: "a", At: t0, Gen: 2}
	if got, err := tn.PeerMaintenance(context.Background(), on); err != nil || !got.On || got.Gen != 2 {
		t.Fatalf("adopt: %+v %v", got, err)
	}
	stale := api.MaintenanceInfo{On: false, At: t0.Add(time.Hour), Gen: 1}
	if got, _ := tn.PeerMaintenance(context.Background(), stale); !got.On || got.Gen != 2 {
		t.Fatalf("an older generation replaced a newer one: %+v", got)
	}
	tie := api.MaintenanceInfo{On: false, At: t0.Add(time.Second), Gen: 2}
	if got, _ := tn.PeerMaintenance(context.Background(), tie); got.On {
		t.Fatalf("same generation, later change: not adopted: %+v", got)
	}
	if !(&on).Newer(nil) || (*api.MaintenanceInfo)(nil).Newer(&on) {
		t.Fatal("Newer against nil")
	}
}

func maintState(role state.Role, term int64) state.State {
	s := clusterState(role, term)
	s.Cluster.Maintenance = &api.MaintenanceInfo{On: true, By: "alice", Reason: "kernel update", At: time.Now().UTC(), Gen: 1}
	return s
}

func TestFailoverRefusedInMaintenance(t *testing.T) {
	tn := newTestNode(t, maintState(state.RoleSecondary, 3))
	tn.pg.running, tn.pg.recovery = true, true
	_, err := tn.Failover(context.Background(), api.FailoverRequest{Force: true})
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Status != http.StatusConflict || !strings.Contains(ae.Message, "maintenance mode is on") || !strings.Contains(ae.Message, "kernel update") || !strings.Contains(ae.Message, "tandem maintenance off") {
		t.Fatalf("failover in maintenance: %v", err)
	}
	if s := tn.saved(t); s.Role != state.RoleSecondary || s.Term != 3 || slices.Contains(tn.pg.called(), "promote") {
		t.Fatal("a refused failover changed the node")
	}
}

func TestNoAutomaticFailoverInMaintenance(t *testing.T) {
	s := maintState(state.RoleSecondary, 3)
	s.Cluster.Failover = FailoverAutomatic
	tn := newTestNode(t, s)
	tn.pg.running, tn.pg.recovery = true, true
	ok, why := tn.autoEligible(context.Background(), tn.State())
	if ok || !strings.Contains(why, "maintenance mode is on") || !strings.Contains(why, "no automatic failover") {
		t.Fatalf("eligible %v (%s), want not eligible because of maintenance", ok, why)
	}
}

func TestSyncChangeHeldInMaintenance(t *testing.T) {
	tn := newTestNode(t, clusterState(state.RolePrimary, 3))
	var held bool
	if tn.holdSyncChange(context.Background(), &held, false, "b") {
		t.Fatal("held outside maintenance")
	}
	tn2 := newTestNode(t, maintState(state.RolePrimary, 3))
	if !tn2.holdSyncChange(context.Background(), &held, false, "b") || !held {
		t.Fatal("a degrade was not held in maintenance")
	}
	// The restore brings back the configured promise (after a switchover
	// made in maintenance, say): not held.
	if tn2.holdSyncChange(context.Background(), &held, true, "b") {
		t.Fatal("a restore was held in maintenance")
	}
}

// A primary that learns of a newer term still fences in maintenance (two
// writable primaries are worse than a stopped one), but does not rejoin
// until maintenance is off, which it learns from the peer.
func TestStalePrimaryFencesButWaitsForMaintenanceOffToRejoin(t *testing.T) {
	tn := newTestNode(t, maintState(state.RolePrimary, 3))
	writeFile(t, filepath.Join(tn.dir, replPasswordFile), "pw")
	tn.vip.held = true
	tn.pg.running = true
	hb := api.Heartbeat{Name: "b", Role: "primary", Term: 5, Maintenance: tn.State().Cluster.Maintenance}
	tn.peer.answer(hb)
	go tn.observeTerm(context.Background(), tn.State(), hb)
	waitFor(t, "the fence", func() bool { st := tn.State(); return st.Role == state.RoleSecondary && st.Term == 5 })
	if tn.vip.isHeld() || tn.pg.Status(context.Background()).State == "running" {
		t.Fatal("not fenced")
	}
	time.Sleep(1500 * time.Millisecond)
	if slices.Contains(tn.pg.called(), "rewind") || slices.Contains(tn.pg.called(), "start-standby") {
		t.Fatalf("rejoined in maintenance: %v", tn.pg.called())
	}
	// The peer switched maintenance off.
	off := api.MaintenanceInfo{On: false, By: "bob", At: time.Now().UTC(), Gen: 2}
	hb.Maintenance = &off
	tn.peer.answer(hb)
	waitFor(t, "the rejoin once maintenance is off", func() bool { return slices.Contains(tn.pg.called(), "rewind") })
}

func TestMonitorDoesNotReseedInMaintenance(t *testing.T) {
	s := maintState(state.RoleSecondary, 3)
	s.Operation = &state.Operation{Kind: OpReseed, Step: StepClone}
	tn := newTestNode(t, s)
	tn.pg.running, tn.pg.recovery = true, true
	tn.peer.answer(api.Heartbeat{Name: "b", Role: "primary", Term: 3, SlotWALStatus: "lost"})
	go tn.runMonitor(context.Background())
	time.Sleep(2500 * time.Millisecond)
	tn.peer.mu.Lock()
	n := tn.peer.slotsRecreated
	tn.peer.mu.Unlock()
	if n != 0 {
		t.Fatalf("re-seeded %d times in maintenance", n)
	}
}

// Switched on at the secondary while the primary (which holds the
// history) is down: the event is kept and recorded once it answers.
func TestMaintenanceEventKeptUntilTheHistoryAnswers(t *testing.T) {
	tn := newTestNode(t, clusterState(state.RoleSecondary, 3))
	if _, err := tn.SetMaintenance(context.Background(), api.MaintenanceRequest{On: true, Reason: "rack move", By: "alice"}); err != nil {
		t.Fatal(err)
	}
	tn.peer.answer(api.Heartbeat{Name: "b", Role: "primary", Term: 3})
	tn.flushKeptEvents(context.Background())
	tn.peer.mu.Lock()
	defer tn.peer.mu.Unlock()
	if len(tn.peer.events) != 1 || tn.peer.events[0].Kind != EventMaintenanceOn || !strings.Contains(tn.peer.events[0].Message, "rack move") || !strings.Contains(tn.peer.events[0].Message, "recorded late") {
		t.Fatalf("events the primary got: %+v", tn.peer.events)
	}
}
