package cluster

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/tandem-ha/tandem/internal/api"
	"github.com/tandem-ha/tandem/internal/state"
)

// The secondary's own checks before a failover: a primary that answers it
// on the link between the nodes, or a cluster IP someone still answers
// for, refuses the failover, names the path, and nothing is promoted.
func TestFailoverRefusedOnTheSecondarysPaths(t *testing.T) {
	for _, tc := range []struct {
		name   string
		heard  bool // the monitor heard the primary a moment ago
		answer bool // the primary answers a fresh ask
		inUse  bool // someone answers the ARP probe for the cluster IP
		force  bool
		want   string
	}{
		{name: "primary answers on the link", heard: true, answer: true, want: "on the link between the nodes"},
		{name: "cluster IP still answered", heard: true, inUse: true, want: "ARP/NDP probe"},
		{name: "cluster IP answered, even with force", heard: true, answer: true, inUse: true, force: true, want: "ARP/NDP probe"},
		{name: "cluster IP answered, primary long silent", inUse: true, want: "ARP/NDP probe"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tn := newTestNode(t, clusterState(state.RoleSecondary, 2))
			if tc.heard {
				tn.markHeard()
			}
			if tc.answer {
				tn.peer.answer(api.Heartbeat{Name: "b", Role: "primary", Term: 2, Postgres: "running"})
			}
			tn.vip.inUse = tc.inUse
			_, err := tn.Failover(context.Background(), api.FailoverRequest{Force: tc.force})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("failover: %v, want a refusal naming %q", err, tc.want)
			}
			if slices.Contains(tn.pg.called(), "promote") || tn.vip.isHeld() {
				t.Fatalf("a refused failover promoted (%v) or took the cluster IP (%v)", tn.pg.called(), tn.vip.isHeld())
			}
			if s := tn.State(); s.Role != state.RoleSecondary || s.Term != 2 {
				t.Fatalf("a refused failover changed the state: %s at term %d", s.Role, s.Term)
			}
		})
	}
}
