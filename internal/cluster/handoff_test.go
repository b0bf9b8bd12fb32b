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
