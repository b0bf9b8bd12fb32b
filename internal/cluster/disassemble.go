package cluster

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tandem-ha/tandem/internal/api"
	"github.com/tandem-ha/tandem/internal/state"
)

// Operation kinds of disassembly.
const (
	OpDisassemble state.OpKind = "disassemble" // on the primary
	OpLeave       state.OpKind = "leave"       // on the secondary
)

// Steps of a disassembly and of leaving.
const (
	StepPrimarySide   state.Step = "primary"        // the primary drops slot, role, pg_hba lines
	StepRemoveReplica state.Step = "remove-replica" // the secondary removes its replica
	StepInit          state.Step = "init"           // …and starts a fresh, empty PostgreSQL
)

// A disassembly interrupted on the primary is finished; so is leaving on
// the secondary (its replica holds nothing of its own).
var disassembleRecovery = stepTable{
	StepPrimarySide: {how: "finish: drop the primary's side, mark the record standalone", afterStart: (*Node).recoverDisassemble},
}

var leaveRecovery = stepTable{
	StepRemoveReplica: {how: "finish: move the replica aside (kept); an empty PostgreSQL is initialised", atBoot: (*Node).finishLeave},
	StepInit:          {how: "finish: an empty PostgreSQL is initialised (the replica was moved aside)", atBoot: (*Node).finishLeave},
}

// Disassemble ends the cluster. On the primary: the secondary removes its
// replica first, then the primary drops the slot, the replication role and
// its pg_hba entries and marks the record standalone; it keeps its data and
// the cluster IP. With Force, an unreachable secondary is left alone. On a
// secondary, only with Force (the primary is gone): it removes its own
// replica and returns to "no cluster".
func (n *Node) Disassemble(ctx context.Context, req api.DisassembleRequest) (api.DisassembleResult, error) {
	return runOp(n, ctx, OpDisassemble, byConsole, func(ctx context.Context, _ func(api.DisassembleResult, error)) (api.DisassembleResult, error) {
		return n.disassemble(ctx, req)
	})
}

func (n *Node) disassemble(ctx context.Context, req api.DisassembleRequest) (api.DisassembleResult, error) {
	s := n.State()
	if err := n.noPendingJournal(s); err != nil {
		return api.DisassembleResult{}, err
	}
	switch s.Role {
	case state.RolePrimary:
	case state.RoleSecondary:
		if !req.Force {
			return api.DisassembleResult{}, conflict("%s is the secondary: disassemble through the primary, or pass --force if the primary is gone for good", n.cfg.Name)
		}
		// The primary may really be gone, and this replica the last copy
		// of the data: it is kept aside, not deleted.
		aside, err := n.leave(ctx, true)
		if err != nil {
			return api.DisassembleResult{}, err
		}
		return api.DisassembleResult{Primary: "not contacted", Secondary: fmt.Sprintf("%s holds no cluster; its replica was kept at %s (remove it by hand once you no longer need it)", n.cfg.Name, aside)}, nil
	default:
		return api.DisassembleResult{}, conflict("%s holds no cluster (role %s): nothing to disassemble", n.cfg.Name, s.Role)
	}
	peer := memberOf(s.Cluster.Peer)
	res := api.DisassembleResult{}

	// 1. The secondary first: while it streams, the slot cannot be dropped.
	lctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	err := n.peer(peer).Leave(lctx)
	cancel()
	if err != nil {
		if !req.Force {
			return res, unavailable("the secondary %s did not leave (%v); nothing was changed. If it is gone for good, pass --force to disassemble the primary side alone", peer.Name, err)
		}
		n.log.Warn("secondary unreachable; disassembling the primary side only", "op", OpDisassemble, "peer", peer.Name, "err", err)
		res.Secondary = fmt.Sprintf("not reached (%v); when it is back, run `tandem disassemble --force` against it", err)
	} else {
		res.Secondary = "replica removed; " + peer.Name + " holds no cluster"
	}

	// 2. The primary side.
	if err := n.journal(OpDisassemble, StepPrimarySide, 0); err != nil {
		return res, err
	}
	if automatic(s) {
		n.retireQuorum(ctx)
	}
	if err := n.dropPrimarySide(ctx, peer.Slot); err != nil {
		return res, err
	}
	err = n.withConn(ctx, func(c *pgx.Conn) error {
		rec, err := ReadRecord(ctx, c)
		if err != nil {
			return err
		}
		rec.State, rec.Synchronized, rec.Members = "standalone", false, []api.Member{n.self("")}
		return WriteRecord(ctx, c, rec)
	})
	if err != nil {
		return res, err
	}
	n.event(ctx, EventDisassembled, n.cfg.Name, fmt.Sprintf("cluster %s disassembled: %s stays read-write with the cluster IP; secondary %s: %s", s.Cluster.Name, n.cfg.Name, peer.Name, res.Secondary))
	if err := n.set(func(s *state.State) {
		s.Role, s.Operation = state.RoleStandalone, nil
		s.Cluster.Peer = nil
		s.Cluster.Failover, s.Cluster.Quorum, s.Lease = "", nil, 0
	}); err != nil {
		return res, err
	}
	_ = os.Remove(filepath.Join(n.cfg.StateDir, replPasswordFile))
	res.Primary = n.cfg.Name + " is standalone: read-write, keeps its data and the cluster IP"
	n.log.Info("disassembled", "op", OpDisassemble)
	return res, nil
}

// dropPrimarySide removes what assembly added on the primary. Synchronous
// replication goes first, so nothing after it waits for a standby.
func (n *Node) dropPrimarySide(ctx context.Context, slot string) error {
	if err := n.setHBA(nil); err != nil {
		return err
	}
	if err := n.pg.StartPrimary(ctx, baseSettings(n.cfg.MaxSlotWALKeep), false); err != nil {
		return err
	}
	return n.withConn(ctx, func(c *pgx.Conn) error {
		if _, err := c.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1`, ReplicationUser); err != nil {
			return err
		}
		if err := dropSlotNow(ctx, c, slot); err != nil {
			return err
		}
		if _, err := c.Exec(ctx, dropRoleSQL); err != nil {
			return fmt.Errorf("while dropping the replication role: %w", err)
		}
		return nil
	})
}

// Leave is the secondary's side of disassembly, asked by the primary.
func (n *Node) Leave(ctx context.Context) error {
	_, err := runOp(n, ctx, OpLeave, byPeer, func(ctx context.Context, _ func(struct{}, error)) (struct{}, error) {
		s := n.State()
		if s.Role != state.RoleSecondary {
			return struct{}{}, conflict("%s is not a secondary (role %s)", n.cfg.Name, s.Role)
		}
		if err := n.noPendingJournal(s); err != nil {
			return struct{}{}, err
		}
		_, err := n.leave(ctx, false)
		return struct{}{}, err
	})
	return err
}

// leave moves this secondary's replica aside and starts a fresh, empty
// PostgreSQL: the node is back to "no cluster", ready to be assembled
// again. When the primary asked (keep false), the replica holds nothing of
// its own — it is a copy of the primary, which carries on — and is deleted;
// a forced leave (the primary gone) keeps it and returns where.
func (n *Node) leave(ctx context.Context, keep bool) (string, error) {
	if err := n.journal(OpLeave, StepRemoveReplica, 0); err != nil {
		return "", err
	}
	aside, err := n.pg.MoveDataAside(ctx)
	if err != nil {
		return "", fmt.Errorf("while moving the replica aside: %w", err)
	}
	if err := n.journal(OpLeave, StepInit, 0); err != nil {
		return aside, err
	}
	if !keep {
		if err := n.pg.DiscardAside(ctx, aside); err != nil {
			n.log.Warn("could not remove the old replica", "old_data_dir", aside, "err", err)
		}
	}
	if err := n.pg.StartPrimary(ctx, baseSettings(n.cfg.MaxSlotWALKeep), true); err != nil {
		return aside, fmt.Errorf("while starting a fresh PostgreSQL: %w", err)
	}
	if err := n.forgetCluster(); err != nil {
		return aside, err
	}
	n.log.Info("left the cluster; fresh PostgreSQL running", "op", OpLeave, "kept", keep, "old_data_dir", aside)
	return aside, nil
}

// finishLeave completes leaving after a restart, before the role decision:
// the replica is moved aside if it is still in place (and kept: a restart
// cannot tell whether the primary still has the data), and the node holds
// no cluster, so boot initialises an empty data directory as for a new
// node.
func (n *Node) finishLeave(ctx context.Context) {
	if s := n.State(); s.Operation.Step == StepRemoveReplica {
		if aside, err := n.pg.MoveDataAside(ctx); err != nil {
			n.log.Error("could not move the replica aside; PostgreSQL starts on it, as a node with no cluster", "err", err)
		} else {
			n.log.Warn("the interrupted leave kept the replica aside; remove it by hand once you no longer need it", "old_data_dir", aside)
		}
	}
	if err := n.forgetCluster(); err != nil {
		n.log.Error("could not save the state", "err", err)
	}
}

// forgetCluster returns the node to "no cluster".
func (n *Node) forgetCluster() error {
	n.closeQuorum(false, true)
	if err := n.set(func(s *state.State) { s.Role, s.Term, s.Cluster, s.Operation = state.RoleNone, 0, nil, nil }); err != nil {
		return err
	}
	_ = os.Remove(filepath.Join(n.cfg.StateDir, replPasswordFile))
	return nil
}

// recoverDisassemble finishes a disassembly a restart interrupted on the
// primary.
func (n *Node) recoverDisassemble(ctx context.Context) {
	n.log.Info("finishing a disassembly interrupted by a restart")
	s := n.State()
	if s.Cluster != nil && s.Cluster.Peer != nil {
		if err := n.dropPrimarySide(ctx, slotName(s.Cluster.Peer.Name)); err != nil {
			n.log.Error("could not finish the disassembly", "err", err)
			return
		}
	}
	_ = n.withConn(ctx, func(c *pgx.Conn) error {
		_, err := c.Exec(ctx, `UPDATE tandem.cluster SET state = 'standalone', synchronized = false`)
		if err == nil {
			_, err = c.Exec(ctx, `DELETE FROM tandem.members WHERE name <> $1`, n.cfg.Name)
		}
		return err
	})
	err := n.set(func(s *state.State) {
		s.Role, s.Operation = state.RoleStandalone, nil
		if s.Cluster != nil {
			s.Cluster.Peer = nil
		}
	})
	if err != nil {
		n.log.Error("could not save the state", "err", err)
	}
}

// dropSlotNow drops a slot even while a (partitioned) standby still holds
// it: the walsender is cut off first, and the drop retried until the slot
// is released.
func dropSlotNow(ctx context.Context, c *pgx.Conn, slot string) error {
	if _, err := c.Exec(ctx, `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active`, slot); err != nil {
		return fmt.Errorf("while disconnecting the standby from slot %s: %w", slot, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := c.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, slot)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("while dropping replication slot %s: %w", slot, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// retireQuorum ends automatic mode on a primary that is disassembling:
// the primary record is made to name this node at a term no secondary can
// pass, so a secondary the disassembly did not reach (--force) never takes
// the vacant key for a failover; then the key is resigned and the member
// stopped, its data removed.
func (n *Node) retireQuorum(ctx context.Context) {
	if l := n.leadership(); l != nil {
		qctx, cancel := context.WithTimeout(ctx, quorumCall)
		if err := l.WritePrimary(qctx, n.cfg.Name, math.MaxInt64); err != nil {
			n.log.Warn("could not mark the quorum retired; a secondary that was not reached must be disassembled with --force before it could promote", "err", err)
		}
		cancel()
	}
	n.closeQuorum(true, true)
}
