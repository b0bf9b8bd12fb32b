package cluster

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tandem-ha/tandem/internal/api"
	"github.com/tandem-ha/tandem/internal/state"
)

func automaticState(role state.Role, term int64) state.State {
	s := clusterState(role, term)
	s.Cluster.Failover = FailoverAutomatic
	s.Cluster.Quorum = &api.QuorumSpec{Token: "tandem-0123456789abcdef", Prefix: "/tandem/db"}
	return s
}

// The secondary promises only as the secondary of the caller's term in
// automatic mode, and never while it is taking the key itself.
func TestFailsafePromiseRefusals(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		st   state.State
		term int64
		want string
	}{
		{"manual mode", clusterState(state.RoleSecondary, 3), 3, "not in automatic failover mode"},
		{"a primary", automaticState(state.RolePrimary, 3), 3, "not a secondary"},
		{"another term", automaticState(state.RoleSecondary, 3), 2, "a promise for term 2 asked"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tn := newTestNode(t, tc.st)
			_, err := tn.Failsafe(ctx, api.FailsafeRequest{Term: tc.term})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Failsafe: %v, want a refusal saying %q", err, tc.want)
			}
			tn.q.mu.Lock()
			until := tn.q.promiseUntil
			tn.q.mu.Unlock()
			if !until.IsZero() {
				t.Fatalf("a refused promise was recorded (until %v)", until)
			}
		})
	}
}

// A secondary that promised waits the promise out before it campaigns
// (the flag it sets then is what makes Failsafe refuse); a switchover
// (honour false) does not wait.
func TestCampaignWaitsOutThePromise(t *testing.T) {
	tn := newTestNode(t, automaticState(state.RoleSecondary, 3))
	tn.q.mu.Lock()
	tn.q.promiseUntil = time.Now().Add(300 * time.Millisecond)
	tn.q.mu.Unlock()
	start := time.Now()
	if err := tn.beginCampaign(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited < 250*time.Millisecond {
		t.Fatalf("the campaign began %v after a promise with 300 ms left", waited)
	}
	tn.q.mu.Lock()
	campaigning := tn.q.campaigning
	tn.q.mu.Unlock()
	if !campaigning {
		t.Fatal("not marked campaigning")
	}
	tn.endCampaign()

	tn.q.mu.Lock()
	tn.q.promiseUntil = time.Now().Add(time.Hour)
	tn.q.mu.Unlock()
	start = time.Now()
	if err := tn.beginCampaign(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited > 100*time.Millisecond {
		t.Fatalf("a switchover's campaign waited %v for a promise", waited)
	}
	tn.endCampaign()

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := tn.beginCampaign(ctx, true); err == nil {
		t.Fatal("a campaign began while a promise an hour long was in force")
	}
}
