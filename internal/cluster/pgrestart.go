package cluster

import (
	"context"
	"fmt"
	"time"

	"github.com/tandem-ha/tandem/internal/api"
	"github.com/tandem-ha/tandem/internal/state"
)

// A PostgreSQL minor update (`tandem upgrade --postgres`,
// docs/operations.md): the operator installs the new minor release's
// packages on both nodes (a running postmaster keeps the old binaries
// until it restarts); the console then has the secondary restart its
// PostgreSQL, switches over, and has the former primary, now the
// secondary, restart its own. The only write gap is the switchover's.

// OpPostgresRestart restarts the secondary's PostgreSQL in place.
const OpPostgresRestart state.OpKind = "postgres_restart"

// EventPostgresRestarted records a restart and the versions it went
// between.
const EventPostgresRestarted = "postgres_restarted"

// pgRestartStreamBy bounds the wait for the restarted standby to stream.
const pgRestartStreamBy = 60 * time.Second

// RestartPostgres restarts this node's PostgreSQL, which must be the
// secondary's (restarting the primary's is an outage: the console
// switches over first), and answers once it streams from the primary
// again, with the server versions before and after.
func (n *Node) RestartPostgres(ctx context.Context) (api.PostgresRestartResult, error) {
	return runOp(n, ctx, OpPostgresRestart, byConsole, func(ctx context.Context, _ func(api.PostgresRestartResult, error)) (api.PostgresRestartResult, error) {
		return n.restartPostgres(ctx)
	})
}

func (n *Node) restartPostgres(ctx context.Context) (api.PostgresRestartResult, error) {
	start := time.Now()
	s := n.State()
	if s.Cluster == nil || s.Cluster.Peer == nil || s.Role != state.RoleSecondary {
		return api.PostgresRestartResult{}, conflict("%s is %s, not the secondary of a cluster: only the secondary's PostgreSQL is restarted in place (for the primary's, switch over first; `tandem upgrade --postgres` does both)", n.cfg.Name, s.Role)
	}
	before := n.pg.Status(ctx)
	if before.State != "running" || !before.InRecovery {
		return api.PostgresRestartResult{}, conflict("PostgreSQL on %s is %s (in recovery %v), not a running standby: nothing was changed", n.cfg.Name, before.State, before.InRecovery)
	}
	res := api.PostgresRestartResult{Node: n.cfg.Name, VersionBefore: before.Version, PIDBefore: before.PID}
	peer := memberOf(s.Cluster.Peer)
	haltErr := n.pg.Halt(ctx, true)
	// Halted or not, it must run as a standby again.
	if err := n.followAsStandby(ctx, peer); err != nil {
		return res, fmt.Errorf("PostgreSQL on %s did not start again as a standby (stop: %v): %w; see its log, then `tandem status`", n.cfg.Name, haltErr, err)
	}
	if haltErr != nil {
		return res, fmt.Errorf("while stopping PostgreSQL on %s (it runs as a standby again): %w", n.cfg.Name, haltErr)
	}
	after := n.pg.Status(ctx)
	res.VersionAfter, res.PIDAfter = after.Version, after.PID
	if err := n.waitStreaming(ctx, pgRestartStreamBy); err != nil {
		return res, unavailable("PostgreSQL on %s restarted (version %s): %v", n.cfg.Name, res.VersionAfter, err)
	}
	res.Took = time.Since(start).Round(time.Millisecond).String()
	n.run.goAttach(func(ctx context.Context) {
		n.event(ctx, EventPostgresRestarted, n.cfg.Name, fmt.Sprintf("%s: PostgreSQL restarted in %s (version %s → %s), streaming again", n.cfg.Name, res.Took, res.VersionBefore, res.VersionAfter))
	})
	return res, nil
}
