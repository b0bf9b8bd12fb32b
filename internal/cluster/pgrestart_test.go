package cluster

import (
	"context"
	"strings"
	"testing"

	"github.com/tandem-ha/tandem/internal/state"
)

// Only a secondary with a running standby restarts its PostgreSQL in
// place; anything else is refused with PostgreSQL left alone.
func TestRestartPostgresRefusals(t *testing.T) {
	for _, tc := range []struct {
		name     string
		st       state.State
		running  bool
		recovery bool
		want     string
	}{
		{"the primary", clusterState(state.RolePrimary, 3), true, false, "not the secondary"},
		{"no cluster", state.State{Role: state.RoleNone}, true, false, "not the secondary"},
		{"a stopped standby", clusterState(state.RoleSecondary, 3), false, false, "not a running standby"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tn := newTestNode(t, tc.st)
			tn.pg.mu.Lock()
			tn.pg.running, tn.pg.recovery = tc.running, tc.recovery
			tn.pg.mu.Unlock()
			_, err := tn.restartPostgres(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("restartPostgres: %v, want a refusal saying %q", err, tc.want)
			}
			tn.pg.mu.Lock()
			calls := tn.pg.calls
			tn.pg.mu.Unlock()
			for _, c := range calls {
				if c == "halt" || c == "start-standby" {
					t.Fatalf("a refused restart touched PostgreSQL: %v", calls)
				}
			}
		})
	}
}
