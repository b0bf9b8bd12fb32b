package cluster

import (
	"context"
	"fmt"
	"time"

	"github.com/tandem-ha/tandem/internal/api"
	"github.com/tandem-ha/tandem/internal/postgres"
	"github.com/tandem-ha/tandem/internal/state"
)

// OpRejoin makes a stale former primary the standby of the new one.
const OpRejoin state.OpKind = "rejoin"

// Steps of a rejoin.
const (
	StepFenced state.Step = "fenced" // this node fenced itself on a newer term
	StepFollow state.Step = "follow" // a switchover's old primary could not restart as a standby
	StepStop   state.Step = "stop"
	StepRewind state.Step = "rewind"
	StepClone  state.Step = "clone"
)

// Every step of a rejoin is settled the same way at boot: rejoin again
// (the loop below). An interrupted clone first gets its old data back, so
// a half-made copy is never started and the rewind can try again.
var rejoinRecovery = stepTable{
	StepFenced: {how: "rejoin: rewind (or clone) from the new primary and follow it", resumedBy: "boot"},
	StepFollow: {how: "rejoin: rewind (or clone) from the new primary and follow it", resumedBy: "boot"},
	StepStop:   {how: "rejoin: rewind (or clone) from the new primary and follow it", resumedBy: "boot"},
	StepRewind: {how: "rejoin: rewind again (pg_rewind is restartable), or clone", resumedBy: "boot"},
	StepClone: {how: "put back the data the clone moved aside, then rejoin again", resumedBy: "boot",
		beforeStart: func(n *Node, _ state.State) error { return n.restoreAside() }},
}

// Event kinds of rejoining.
const (
	EventFenced   = "fenced"
	EventRejoined = "rejoined"
)

// fence makes this node stop acting as primary at once: cluster IP
// dropped, services stopped, PostgreSQL stopped (a hard fence: a client
// cannot override it for its session). The journal then says "rejoin",
// which the caller runs.
func (n *Node) fence(ctx context.Context, newTerm int64, why string) {
	n.log.Warn("fencing: a newer term exists in which this node is not primary", "term", newTerm, "why", why)
	if err := n.vip.Release(ctx); err != nil {
		n.log.Error("FENCE: could not drop the cluster IP", "err", err)
	}
	s := n.State()
	n.stopServices(ctx, s.Term)
	if err := n.pg.Halt(ctx, true); err != nil {
		n.log.Error("FENCE: could not stop PostgreSQL", "err", err)
	}
	err := n.journalWith(OpRejoin, StepFenced, newTerm, func(s *state.State) {
		s.Role, s.Term, s.Operation = state.RoleSecondary, newTerm, nil
	})
	if err != nil {
		n.log.Error("could not save the fenced state", "err", err)
	}
	n.runHook(ctx, string(s.Role), "fenced", newTerm)
	n.event(ctx, EventFenced, n.cfg.Name, fmt.Sprintf("%s fenced itself: %s", n.cfg.Name, why))
}

// rejoinLoop makes a stale former primary a standby of the new one,
// retrying until it works or the node stops. It runs inside an operation
// (it holds the exclusion the whole time: nothing else may touch a node
// that is between roles).
func (n *Node) rejoinLoop(ctx context.Context) error {
	// A rejoin tandemd starts by itself waits for maintenance to end: the
	// fenced node stays stopped (maintenance.go).
	if err := n.waitMaintenanceOff(ctx); err != nil {
		return err
	}
	for delay := time.Second; ; delay = min(delay*2, 30*time.Second) {
		err := n.rejoin(ctx)
		if err == nil {
			return nil
		}
		n.log.Error("rejoin failed; retrying", "err", err, "in", delay)
		if !n.run.wait(ctx, delay) {
			return fmt.Errorf("rejoin not finished when tandemd stopped (it resumes at the next start): %w", err)
		}
	}
}

// rejoin: PostgreSQL stopped cleanly (crash recovery in single-user mode
// first if it was not), pg_rewind from the new primary, then started as its
// standby. When rewind cannot work, a fresh clone (the old data moved
// aside until the clone streams).
func (n *Node) rejoin(ctx context.Context) (err error) {
	start := time.Now()
	defer func() { n.ops.record(string(OpRejoin), err, time.Since(start)) }()
	s := n.State()
	peer := memberOf(s.Cluster.Peer)
	pw, err := n.readReplPassword()
	if err != nil {
		return err
	}
	if err := n.journal(OpRejoin, StepStop, s.Term); err != nil {
		return err
	}
	if err := n.pg.Halt(ctx, true); err != nil {
		return err
	}
	// Rewind: crash recovery in single-user mode first if PostgreSQL did
	// not stop cleanly, a checkpoint on the new primary (its control file
	// names the new timeline only after one), then pg_rewind.
	how := "rewind"
	if err := n.rewind(ctx, peer, pw); err != nil {
		n.log.Warn("pg_rewind could not bring this node back; cloning instead", "err", err)
		how = "clone"
		if err := n.journal(OpRejoin, StepClone, s.Term); err != nil {
			return err
		}
		if _, _, err := n.cloneFrom(ctx, *peer, slotName(n.cfg.Name), pw, nil); err != nil {
			return err
		}
	} else {
		if err := n.followAsStandby(ctx, peer); err != nil {
			return err
		}
		if err := n.waitStreaming(ctx, 60*time.Second); err != nil {
			return err
		}
	}
	if err := n.set(func(s *state.State) { s.Role, s.Operation = state.RoleSecondary, nil }); err != nil {
		return err
	}
	took := time.Since(start).Round(time.Millisecond)
	n.log.Info("rejoined as standby", "how", how, "took", took, "primary", peer.Name)
	n.event(ctx, EventRejoined, n.cfg.Name, fmt.Sprintf("%s rejoined as the standby of %s by %s in %s", n.cfg.Name, peer.Name, how, took))
	return nil
}

func (n *Node) rewind(ctx context.Context, primary *api.Member, pw string) error {
	if err := n.journal(OpRejoin, StepRewind, n.State().Term); err != nil {
		return err
	}
	return n.pg.Rewind(ctx, postgres.Source{Host: primary.IP, Port: primary.PGPort, User: ReplicationUser, Password: pw})
}
