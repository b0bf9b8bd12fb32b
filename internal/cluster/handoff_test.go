package cluster

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tandem-ha/tandem/internal/api"
	"github.com/tandem-ha/tandem/internal/state"
)

func vipCalls(tn *testNode) []string {
	tn.vip.mu.Lock()
	defer tn.vip.mu.Unlock()
	return slices.Clone(tn.vip.calls)
}

// The new primary of a switchover takes the cluster IP when the old one
// hands it over, and refuses for any other term or role.
func TestTakeClusterIP(t *testing.T) {
	tn := newTestNode(t, clusterState(state.RolePrimary, 4))
	if err := tn.TakeClusterIP(context.Background(), api.ClusterIPHandoff{Term: 3}); err == nil || !strings.Contains(err.Error(), "not the primary of term 3") {
		t.Fatalf("handoff for term 3 at term 4: %v, want a refusal", err)
	}
	if c := vipCalls(tn); len(c) != 0 {
		t.Fatalf("a refused handoff touched the cluster IP: %v", c)
	}
	tn.awaitClusterIP(4)
	if err := tn.TakeClusterIP(context.Background(), api.ClusterIPHandoff{Term: 4}); err != nil {
		t.Fatal(err)
	}
	// The fallback is disarmed: after its wait nothing more is taken.
	time.Sleep(clusterIPHandoffWait + 300*time.Millisecond)
	if c := vipCalls(tn); !slices.Equal(c, []string{"acquire"}) {
		t.Fatalf("cluster IP calls %v, want one acquire (the handoff's), none from the fallback", c)
	}
	sec := newTestNode(t, clusterState(state.RoleSecondary, 4))
	if err := sec.TakeClusterIP(context.Background(), api.ClusterIPHandoff{Term: 4}); err == nil {
		t.Fatal("a secondary took the cluster IP")
	}
}

// Without the handoff (the old primary died after the promotion), the new
// primary takes the address by itself once the wait is over.
func TestClusterIPHandoffFallback(t *testing.T) {
	tn := newTestNode(t, clusterState(state.RolePrimary, 4))
	tn.awaitClusterIP(4)
	time.Sleep(clusterIPHandoffWait / 2)
	if c := vipCalls(tn); len(c) != 0 {
		t.Fatalf("cluster IP taken before the wait was over: %v", c)
	}
	deadline := time.Now().Add(clusterIPHandoffWait)
	for len(vipCalls(tn)) == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if c := vipCalls(tn); !slices.Equal(c, []string{"acquire"}) {
		t.Fatalf("cluster IP calls %v after the wait, want the fallback's acquire", c)
	}
}

// A switchover's announcement readies only a secondary, only for the next
// term, and only once; Promote then takes what it began, and a failed
// preparation is made again rather than failing the promotion.
func TestPreparePromotion(t *testing.T) {
	pri := newTestNode(t, clusterState(state.RolePrimary, 4))
	if err := pri.PreparePromotion(context.Background(), api.PromotionPrepare{Term: 5}); err == nil || !strings.Contains(err.Error(), "not a secondary") {
		t.Fatalf("a primary asked to prepare: %v, want a refusal", err)
	}
	sec := newTestNode(t, clusterState(state.RoleSecondary, 4))
	if err := sec.PreparePromotion(context.Background(), api.PromotionPrepare{Term: 7}); err == nil || !strings.Contains(err.Error(), "at term 4") {
		t.Fatalf("a preparation for term 7 at term 4: %v, want a refusal", err)
	}
	if ch := sec.takePrep(context.Background(), 5, "a"); ch != nil {
		t.Fatal("a promotion found a preparation nobody began")
	}
	if err := sec.PreparePromotion(context.Background(), api.PromotionPrepare{Term: 5}); err != nil {
		t.Fatal(err)
	}
	sec.prepMu.Lock()
	first := sec.prep
	sec.prepMu.Unlock()
	if err := sec.PreparePromotion(context.Background(), api.PromotionPrepare{Term: 5}); err != nil {
		t.Fatal(err)
	}
	sec.prepMu.Lock()
	again := sec.prep
	sec.prepMu.Unlock()
	if first == nil || again != first {
		t.Fatal("a repeated announcement began a second preparation")
	}
	if ch := sec.takePrep(context.Background(), 6, "a"); ch != nil {
		t.Fatal("a promotion to another term took this preparation")
	}
	ch := sec.takePrep(context.Background(), 5, "a")
	if ch == nil {
		t.Fatal("the promotion did not find its preparation")
	}
	// The test node's PostgreSQL takes no connections: the prepared slot
	// failed, and the promotion's own attempt reports why.
	select {
	case err := <-ch:
		if err == nil || !strings.Contains(err.Error(), "not accepting connections") {
			t.Fatalf("slot outcome %v, want the second attempt's connection error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the prepared slot's outcome never came")
	}
	if ch := sec.takePrep(context.Background(), 5, "a"); ch != nil {
		t.Fatal("a preparation was handed out twice")
	}
}
