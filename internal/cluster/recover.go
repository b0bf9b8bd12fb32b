package cluster

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"sort"

	"github.com/jackc/pgx/v5"

	"github.com/tandem-ha/tandem/internal/api"
	"github.com/tandem-ha/tandem/internal/state"
)

// StartupSettings are the settings PostgreSQL starts with, from the role
// the state file remembers: a secondary must come back as a standby of its
// primary, a primary with the replication mode it was assembled with.
func (n *Node) StartupSettings() map[string]string {
	s := n.State()
	switch {
	case s.Cluster == nil || s.Cluster.Peer == nil:
		return baseSettings(n.cfg.MaxSlotWALKeep)
	case s.Role == state.RoleSecondary:
		pw, err := n.readReplPassword()
		if err != nil {
			n.log.Error("no replication password; the standby cannot connect", "err", err)
		}
		return standbySettings(n.cfg.MaxSlotWALKeep, *memberOf(s.Cluster.Peer), n.cfg.Name, pw, slotName(n.cfg.Name))
	case s.Role == state.RolePrimary:
		return primarySettings(n.cfg.MaxSlotWALKeep, s.Cluster.Peer.Name, s.Cluster.Replication != ModeAsync)
	}
	return baseSettings(n.cfg.MaxSlotWALKeep)
}

// RecoverBeforePostgres finishes or rolls back what a crash interrupted
// while this node's data directory was being replaced, before the
// supervisor looks at it: a half-made clone must never be started, and an
// empty data directory must not be initialised over data moved aside.
func (n *Node) RecoverBeforePostgres() error {
	s := n.State()
	if s.Operation == nil {
		return nil
	}
	dataDir := n.pg.DataDir()
	switch s.Operation.Kind {
	case OpJoin, OpReseed:
		aside := newestAside(dataDir)
		if aside == "" {
			// The clone had finished and the old data was gone: only
			// the journal was left open. A join is re-evaluated by the
			// primary; keep the node as it was before the join.
			break
		}
		n.log.Warn("a clone was interrupted; restoring the data it replaced", "op", s.Operation.Kind, "old_data_dir", aside)
		if err := os.RemoveAll(dataDir); err != nil {
			return err
		}
		if err := os.Rename(aside, dataDir); err != nil {
			return err
		}
	case OpLeave:
		// The replica was being removed: finish, an empty data dir is
		// initialised by the supervisor as for a new node.
		if err := os.RemoveAll(dataDir); err != nil {
			return err
		}
		s.Role, s.Term, s.Cluster = state.RoleNone, 0, nil
		_ = os.Remove(filepath.Join(n.cfg.StateDir, replPasswordFile))
	default:
		return nil // recovered once PostgreSQL runs
	}
	if s.Operation.Kind == OpJoin {
		s.Role, s.Term, s.Cluster = state.RoleNone, 0, nil
	}
	s.Operation = nil
	return n.save(s)
}

func newestAside(dataDir string) string {
	m, _ := filepath.Glob(dataDir + ".tandem-old-*")
	if len(m) == 0 {
		return ""
	}
	sort.Strings(m)
	return m[len(m)-1]
}

// recoverAfterStart finishes or rolls back an operation that needs a
// running PostgreSQL.
func (n *Node) recoverAfterStart(ctx context.Context) {
	s := n.State()
	if s.Operation == nil {
		return
	}
	log := n.log.With("op", s.Operation.Kind, "step", s.Operation.Step)
	switch s.Operation.Kind {
	case OpAssemble:
		// Did the secondary finish joining? Then only the last steps are
		// missing; otherwise undo the primary's side.
		if s.Cluster != nil && s.Cluster.Peer != nil {
			p := n.peerOf(memberOf(s.Cluster.Peer))
			var hb api.Heartbeat
			err := p.do(ctx, http.MethodGet, "/v1/peer/heartbeat", nil, &hb)
			p.close()
			if err == nil && hb.Role == state.RoleSecondary {
				log.Info("the secondary had joined; finishing the assembly")
				n.event(ctx, EventAssembled, n.cfg.Name, "cluster "+s.Cluster.Name+" assembled (finished after a tandemd restart)")
				s.Operation = nil
				_ = n.save(s)
				return
			}
		}
		log.Warn("rolling back an assembly interrupted by a restart")
		if s.Cluster != nil && s.Cluster.Peer != nil {
			if err := n.dropPrimarySide(ctx, slotName(s.Cluster.Peer.Name)); err != nil {
				log.Error("rollback incomplete", "err", err)
			}
		}
		_ = n.withConn(ctx, func(c *pgx.Conn) error {
			_, err := c.Exec(ctx, `DROP SCHEMA IF EXISTS tandem CASCADE`)
			return err
		})
		_ = n.vip.Release(ctx)
		s.Role, s.Term, s.Cluster, s.Operation = state.RoleNone, 0, nil, nil
		_ = n.save(s)
	case OpDisassemble:
		log.Info("finishing a disassembly interrupted by a restart")
		if s.Cluster != nil && s.Cluster.Peer != nil {
			if err := n.dropPrimarySide(ctx, slotName(s.Cluster.Peer.Name)); err != nil {
				log.Error("could not finish the disassembly", "err", err)
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
		s.Role, s.Operation = state.RoleStandalone, nil
		if s.Cluster != nil {
			s.Cluster.Peer = nil
		}
		_ = n.save(s)
	case OpJoin, OpLeave, OpReseed:
		// Settled before PostgreSQL started; only a stale journal is left.
		s.Operation = nil
		_ = n.save(s)
	}
}
