package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tandem-ha/tandem/internal/api"
	"github.com/tandem-ha/tandem/internal/state"
	"github.com/tandem-ha/tandem/internal/tool"
)

// Run brings the node up in the role it may have, then watches. It is
// the one place that decides whether PostgreSQL may open for writes after
// a restart:
//
//   - no cluster, or standalone: start PostgreSQL (initdb a new node);
//   - secondary: start as a standby of the remembered primary;
//   - primary: ask the peer first. Peer primary at a higher term → this
//     node is stale: rewind (or clone) and follow. Peer secondary → carry on
//     as primary. Peer silent → stay closed until it answers or, with
//     rejoin.self_elect, until rejoin.peer_grace passes and the cluster IP
//     probe finds nobody.
//
// Run returns when ctx ends; the daemon runs it in its own goroutine so
// the API answers (with PostgreSQL "stopped") while it waits.
func (n *Node) Run(ctx context.Context) {
	if err := n.RecoverBeforePostgres(); err != nil {
		n.log.Error("could not recover an interrupted operation; PostgreSQL stays stopped", "err", err)
		return
	}
	if err := n.pg.StartHalted(); err != nil {
		n.log.Error("PostgreSQL supervisor did not start", "err", err)
		return
	}
	n.setVIPAddress()
	s := n.State()
	if s.Operation != nil {
		switch s.Operation.Kind {
		case OpSwitchover:
			n.resolveSwitchover(ctx)
		case OpPromote:
			n.resolvePromote(ctx)
		}
	}
	s = n.State()
	if s.Operation != nil && s.Operation.Kind == OpRejoin {
		n.rejoinLoop(ctx)
	} else {
		switch s.Role {
		case state.RolePrimary:
			n.bootPrimary(ctx)
		case state.RoleSecondary:
			if err := n.bootSecondary(ctx); err != nil {
				n.log.Error("could not start as a standby", "err", err)
			}
		default:
			n.pg.SetSettings(baseSettings(n.cfg.MaxSlotWALKeep))
			if err := n.pg.Resume(ctx, true); err != nil {
				n.log.Error("PostgreSQL did not start", "err", err)
			}
			if s.Role == state.RoleStandalone {
				n.takeVIP(ctx, false)
			} else {
				_ = n.vip.Release(ctx)
			}
		}
	}
	n.recoverAfterStart(ctx)
	n.runMonitor(ctx)
}

func (n *Node) bootSecondary(ctx context.Context) error {
	_ = n.vip.Release(ctx)
	s := n.State()
	if _, err := n.pg.ReadDataFile("standby.signal"); errors.Is(err, os.ErrNotExist) {
		// Trust the state file: a secondary never starts read-write.
		if err := n.pg.WriteDataFile("standby.signal", nil, 0o600); err != nil {
			return err
		}
	}
	return n.followAsStandby(ctx, memberOf(s.Cluster.Peer))
}

// bootPrimary asks the peer before opening for writes.
func (n *Node) bootPrimary(ctx context.Context) {
	s := n.State()
	peer := memberOf(s.Cluster.Peer)
	p := n.peerOf(peer)
	defer p.close()
	since := time.Now()
	// A postmaster left running by a crashed tandemd was open for writes
	// all along; adopting it changes nothing, but the cluster IP still
	// waits for the peer's word.
	if n.pg.PostmasterRunning() {
		n.pg.SetSettings(n.StartupSettings())
		if err := n.pg.Resume(ctx, false); err != nil {
			n.log.Error("could not adopt the running PostgreSQL", "err", err)
		}
	}
	logged := false
	for ctx.Err() == nil {
		var hb api.Heartbeat
		hctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := p.do(hctx, http.MethodGet, "/v1/peer/heartbeat", nil, &hb)
		cancel()
		if err == nil {
			n.markHeard()
			switch {
			case hb.Term > s.Term || (hb.Role == state.RolePrimary && hb.Term >= s.Term):
				n.log.Warn("the peer is primary in a newer term; this node is stale and rejoins as its standby", "peer_term", hb.Term, "term", s.Term)
				n.fence(ctx, hb.Term, fmt.Sprintf("on restart, %s was primary at term %d", peer.Name, hb.Term))
				n.rejoinLoop(ctx)
				return
			default:
				n.log.Info("the peer confirms this node is primary", "peer_role", hb.Role, "term", s.Term)
				n.openAsPrimary(ctx, s)
				return
			}
		}
		if !logged {
			n.log.Warn("restarted as primary, but the peer does not answer; not opening for writes yet", "peer", peer.Name, "grace", n.cfg.PeerGrace, "self_elect", n.cfg.SelfElect, "err", err)
			logged = true
		}
		if n.cfg.SelfElect && time.Since(since) >= n.cfg.PeerGrace {
			if pfx, perr := netip.ParsePrefix(s.Cluster.ClusterIP); perr == nil {
				mac, inUse, perr := n.vip.Probe(ctx, pfx)
				switch {
				case perr != nil:
					n.log.Error("cannot probe the cluster IP", "err", perr)
				case inUse:
					n.log.Warn("the cluster IP is answered by another host; staying closed", "mac", mac)
				default:
					n.log.Warn("peer silent for the whole grace and the cluster IP is free: resuming as primary", "grace", n.cfg.PeerGrace)
					n.openAsPrimary(ctx, s)
					return
				}
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func (n *Node) openAsPrimary(ctx context.Context, s state.State) {
	n.pg.SetSettings(primarySettings(n.cfg.MaxSlotWALKeep, s.Cluster.Peer.Name, s.Cluster.Replication != ModeAsync))
	if err := n.pg.RemoveDataFile("standby.signal"); err != nil {
		n.log.Error("could not remove standby.signal", "err", err)
	}
	if err := n.pg.Resume(ctx, false); err != nil {
		n.log.Error("PostgreSQL did not start", "err", err)
		return
	}
	n.takeVIP(ctx, false)
	n.startServices(ctx, s.Term)
}

func (n *Node) takeVIP(ctx context.Context, trusted bool) {
	n.setVIPAddress()
	acquire := n.vip.Acquire
	if trusted {
		acquire = n.vip.AcquireTrusted
	}
	if err := acquire(ctx); err != nil {
		n.log.Error("cannot take the cluster IP", "err", err)
		n.event(ctx, EventClusterIPConflict, n.cfg.Name, err.Error())
	}
}

// fence makes this node stop acting as primary at once: cluster IP
// dropped, services stopped, PostgreSQL stopped (a hard fence: a client
// cannot override it for its session). It then waits to rejoin.
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
	oldRole := s.Role
	s.Role, s.Term = state.RoleSecondary, newTerm
	s.Operation = &state.Operation{Kind: OpRejoin, Step: "fenced", Term: newTerm, StartedAt: time.Now().UTC()}
	if err := n.save(s); err != nil {
		n.log.Error("could not save the fenced state", "err", err)
	}
	n.runHook(ctx, oldRole, "fenced", newTerm)
	n.event(ctx, EventFenced, n.cfg.Name, fmt.Sprintf("%s fenced itself: %s", n.cfg.Name, why))
}

// rejoinLoop makes a stale former primary a standby of the new one,
// retrying until it works or ctx ends.
func (n *Node) rejoinLoop(ctx context.Context) {
	for delay := time.Second; ctx.Err() == nil; delay = min(delay*2, 30*time.Second) {
		err := n.rejoin(ctx)
		if err == nil {
			return
		}
		n.log.Error("rejoin failed; retrying", "err", err, "in", delay)
		select {
		case <-ctx.Done():
		case <-time.After(delay):
		}
	}
}

// rejoin: PostgreSQL stopped cleanly (crash recovery in single-user mode
// first if it was not), pg_rewind from the new primary, then started as its
// standby. When rewind cannot work, a fresh clone (the old data moved
// aside until the clone streams).
func (n *Node) rejoin(ctx context.Context) (err error) {
	start := time.Now()
	defer func() { n.ops.record(OpRejoin, err, time.Since(start)) }()
	s := n.State()
	peer := memberOf(s.Cluster.Peer)
	pw, err := n.readReplPassword()
	if err != nil {
		return err
	}
	if err := n.journalTerm(OpRejoin, "stop", s.Term); err != nil {
		return err
	}
	if err := n.pg.Halt(ctx, true); err != nil {
		return err
	}
	how := "rewind"
	if err := n.rewind(ctx, peer, pw); err != nil {
		n.log.Warn("pg_rewind could not bring this node back; cloning instead", "err", err)
		how = "clone"
		_ = n.journalTerm(OpRejoin, "clone", s.Term)
		if _, _, err := n.cloneFrom(ctx, *peer, slotName(n.cfg.Name), pw); err != nil {
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
	s = n.State()
	s.Role, s.Operation = state.RoleSecondary, nil
	if err := n.save(s); err != nil {
		return err
	}
	took := time.Since(start).Round(time.Millisecond)
	n.log.Info("rejoined as standby", "how", how, "took", took, "primary", peer.Name)
	n.event(ctx, EventRejoined, n.cfg.Name, fmt.Sprintf("%s rejoined as the standby of %s by %s in %s", n.cfg.Name, peer.Name, how, took))
	return nil
}

func (n *Node) rewind(ctx context.Context, primary *api.Member, pw string) error {
	if err := n.journalTerm(OpRejoin, "rewind", n.State().Term); err != nil {
		return err
	}
	cd, err := n.pg.ControlData(ctx)
	if err != nil {
		return err
	}
	switch cd["Database cluster state"] {
	case "shut down", "shut down in recovery":
	default:
		// pg_rewind needs a clean shutdown; single-user mode runs crash
		// recovery and shuts down cleanly without opening for clients.
		n.log.Info("running crash recovery before the rewind", "state", cd["Database cluster state"])
		cmd := n.pgTool("postgres", "--single", "-F", "-D", n.pg.DataDir(), "postgres")
		if _, err := tool.Run(ctx, n.log, cmd); err != nil {
			return fmt.Errorf("while running crash recovery in single-user mode: %w", err)
		}
	}
	src := conninfo(map[string]string{"host": primary.IP, "port": fmt.Sprint(primary.PGPort), "user": ReplicationUser, "password": pw, "connect_timeout": "5"}) + " dbname=postgres"
	// A just-promoted primary's control file names the new timeline only
	// after its first checkpoint; without one pg_rewind sees "same
	// timeline" and does nothing.
	if err := checkpointAt(ctx, src); err != nil {
		n.log.Warn("could not make the primary checkpoint before the rewind", "err", err)
	}
	src = conninfo(map[string]string{"host": primary.IP, "port": fmt.Sprint(primary.PGPort), "user": ReplicationUser, "connect_timeout": "5"}) + " dbname=postgres"
	cmd := n.pgTool("pg_rewind", "--target-pgdata", n.pg.DataDir(), "--source-server", src, "--progress")
	cmd.Env = append(cmd.Env, "PGPASSWORD="+pw)
	if _, err := tool.Run(ctx, n.log, cmd); err != nil {
		return fmt.Errorf("pg_rewind: %w", err)
	}
	// Files copied from the primary may include its socket lock; the data
	// directory is ours again.
	_ = os.Remove(filepath.Join(n.pg.DataDir(), "postmaster.pid"))
	return nil
}

// resolveSwitchover settles a switchover a crash interrupted on the old
// primary: if the peer promoted, follow it; if it did not, stay primary;
// if it cannot be asked, wait (two primaries are worse than none).
func (n *Node) resolveSwitchover(ctx context.Context) {
	s := n.State()
	peer := memberOf(s.Cluster.Peer)
	p := n.peerOf(peer)
	defer p.close()
	for ctx.Err() == nil {
		var hb api.Heartbeat
		hctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := p.do(hctx, http.MethodGet, "/v1/peer/heartbeat", nil, &hb)
		cancel()
		if err == nil && hb.Operation == "" {
			if hb.Role == state.RolePrimary && hb.Term >= s.Operation.Term {
				n.log.Info("the interrupted switchover had promoted the peer; following it", "term", hb.Term)
				s.Role, s.Term = state.RoleSecondary, hb.Term
				s.Operation = &state.Operation{Kind: OpRejoin, Step: "follow", Term: hb.Term, StartedAt: time.Now().UTC()}
				_ = n.save(s)
				return
			}
			n.log.Info("the interrupted switchover had not promoted the peer; staying primary")
			s.Role, s.Operation = state.RolePrimary, nil
			_ = n.save(s)
			return
		}
		n.log.Warn("waiting for the peer to learn how the interrupted switchover ended", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// resolvePromote settles a promotion a crash interrupted on the new
// primary: PostgreSQL's own state says whether it happened.
func (n *Node) resolvePromote(ctx context.Context) {
	s := n.State()
	if _, err := n.pg.ReadDataFile("standby.signal"); errors.Is(err, os.ErrNotExist) {
		n.log.Info("the interrupted promotion had completed; this node is primary", "term", s.Operation.Term)
		s.Role, s.Term, s.Operation = state.RolePrimary, s.Operation.Term, nil
		_ = n.save(s)
		return
	}
	n.log.Info("the interrupted promotion had not happened; staying secondary")
	s.Operation = nil
	_ = n.save(s)
}

func checkpointAt(ctx context.Context, connString string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, connString)
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	_, err = c.Exec(ctx, "CHECKPOINT")
	return err
}
