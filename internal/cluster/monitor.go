package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tandem-ha/tandem/internal/api"
	"github.com/tandem-ha/tandem/internal/state"
	"github.com/tandem-ha/tandem/internal/version"
)

// Event kinds written by the monitor and operations.
const (
	EventAssembled         = "assembled"
	EventDisassembled      = "disassembled"
	EventNodeOffline       = "node_offline"
	EventNodeOnline        = "node_online"
	EventSecondaryAway     = "secondary_unavailable"
	EventSecondaryBack     = "secondary_recovered"
	EventSyncDegraded      = "sync_degraded"
	EventSyncRestored      = "sync_restored"
	EventWALCapReached     = "wal_cap_reached"
	EventReseeded          = "reseeded"
	EventClusterIPConflict = "cluster_ip_conflict"
)

// OpReseed clones a secondary afresh when the primary no longer has the
// WAL it needs.
const OpReseed state.OpKind = "reseed"

// Steps of a re-seed.
const (
	StepSlot state.Step = "slot" // the primary is asked to recreate the slot
	// StepClone (rejoin.go): the fresh copy is being made.
)

// A re-seed stays journaled until it has succeeded: once the primary
// recreated the slot, the old data can no longer stream, and nothing else
// would say it needs a re-seed. The node starts as the secondary it was
// (with the old data back, if the clone was cut short) and the monitor
// carries the re-seed on.
var reseedRecovery = stepTable{
	StepSlot: {how: "start as the secondary it was; the monitor re-seeds again", resumedBy: "the monitor"},
	StepClone: {how: "put back the data the clone moved aside, start as the secondary it was; the monitor re-seeds again", resumedBy: "the monitor",
		beforeStart: func(n *Node, _ state.State) error { return n.restoreAside() }},
}

// reseedRetry spaces the monitor's attempts at a pending re-seed.
const reseedRetry = 10 * time.Second

// monitor is the state of the watch loop; only its goroutine touches it.
type monitor struct {
	role          state.Role
	term          int64
	peerUp        bool
	peerDownSince time.Time
	offlineNoted  bool
	lastStreaming time.Time
	awayNoted     bool
	syncOn        bool
	syncKnown     bool
	synchronized  bool
	syncFlagKnown bool
	capNoted      bool
	lastReseed    time.Time // the last attempt at a pending re-seed
	receiver      receiverWatch
	// syncRecord is what this primary last wrote into the quorum's sync
	// record (automatic mode); syncRecordKnown: since this tenure began.
	syncRecord      string
	syncRecordKnown bool
	syncRecordLease int64 // the tenure (its lease) it was written in
	// Maintenance mode (maintenance.go): a held sync change was noted,
	// and PostgreSQL stopped or started by hand.
	syncHeld    bool
	byHand      byHandWatch
	byHandSince time.Time
}

// monitorEvery is how often the monitor looks.
const monitorEvery = time.Second

// After a switchover the new primary's monitor looks every
// monitorHurryEvery for monitorHurryFor: the old primary streams again
// within a few hundred milliseconds of restarting as the standby, and
// synchronous commit (with the sync record in automatic mode) should be
// back as soon as it does, not at the next one-second look and the one
// after it (issue 12: synchronous again within 300 ms).
const (
	monitorHurryEvery = 50 * time.Millisecond
	monitorHurryFor   = 5 * time.Second
)

// hurryMonitor asks the monitor for its quick looks (it never blocks).
func (n *Node) hurryMonitor() {
	select {
	case n.hurry <- struct{}{}:
	default:
	}
}

// offlineAfter is how long the peer's API may be silent before the
// node_offline event; short blips are not worth a line in the history.
const offlineAfter = 5 * time.Second

func (n *Node) runMonitor(ctx context.Context) {
	m := &monitor{lastStreaming: time.Now(), peerUp: true}
	t := time.NewTimer(monitorEvery)
	defer t.Stop()
	var hurryUntil time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.run.stopping:
			return
		case <-n.hurry:
			hurryUntil = time.Now().Add(monitorHurryFor)
		case <-t.C:
		}
		if m.synchronized && m.role == state.RolePrimary {
			hurryUntil = time.Time{} // what the quick looks were for is done
		}
		if time.Now().Before(hurryUntil) {
			t.Reset(monitorHurryEvery)
		} else {
			t.Reset(monitorEvery)
		}
		s := n.State()
		if s.Cluster == nil || s.Cluster.Peer == nil {
			continue
		}
		if s.Operation != nil {
			// The one journaled operation the monitor carries on: a re-seed
			// that failed or was interrupted.
			if s.Operation.Kind == OpReseed && s.Role == state.RoleSecondary && time.Since(m.lastReseed) >= reseedRetry && maintenanceOf(s) == nil {
				m.lastReseed = time.Now()
				n.inline(OpReseed, func(ctx context.Context) error {
					return n.reseed(ctx, "a re-seed was left unfinished (a failure or a restart); trying again")
				})
			}
			continue
		}
		if s.Role != m.role || s.Term != m.term {
			// A new role or term: start watching afresh.
			*m = monitor{role: s.Role, term: s.Term, lastStreaming: time.Now(), peerUp: true}
		}
		if maintenanceOf(s) != nil {
			n.watchByHand(ctx, &m.byHand, &m.byHandSince)
		}
		hb, err := n.heartbeat(ctx, s)
		n.watchPeer(ctx, m, s, err)
		if err == nil && hb.Maintenance.Newer(s.Cluster.Maintenance) {
			// A switch made while this node was away or unreachable.
			if aerr := n.adoptMaintenance(hb.Maintenance, hb.Name); aerr != nil {
				n.log.Error("could not save the maintenance mode the peer holds", "err", aerr)
			}
			s = n.State()
		}
		if err == nil || s.Role != state.RoleSecondary {
			n.flushKeptEvents(ctx) // maintenance events the history missed
		}
		if err == nil && n.observeTerm(ctx, s, hb) {
			continue
		}
		switch s.Role {
		case state.RolePrimary:
			n.watchReplication(ctx, m, s)
		case state.RoleSecondary:
			if maintenanceOf(s) != nil {
				break // no receiver kick, no re-seed: the operator's hands
			}
			if err == nil && state.Role(hb.Role) == state.RolePrimary {
				n.kickStuckReceiver(ctx, &m.receiver)
			}
			if err == nil && state.Role(hb.Role) == state.RolePrimary && hb.SlotWALStatus == "lost" {
				n.inline(OpReseed, func(ctx context.Context) error {
					return n.reseed(ctx, "the primary removed WAL this secondary still needed (max_slot_wal_keep_size was passed)")
				})
			}
		}
	}
}

// heartbeat asks the peer who it is; the answer also feeds failover's
// "when did we last hear from the primary".
func (n *Node) heartbeat(ctx context.Context, s state.State) (api.Heartbeat, error) {
	hb, err := n.askPeer(ctx, memberOf(s.Cluster.Peer), 2*time.Second)
	if err != nil {
		return hb, err
	}
	n.markHeard()
	n.noteContact(hb)
	return hb, nil
}

// Heartbeat answers the peer.
func (n *Node) Heartbeat(ctx context.Context) api.Heartbeat {
	n.markHeard()
	n.notePeerCert(ctx)
	s := n.State()
	ps := n.pg.Status(ctx)
	hb := api.Heartbeat{Name: n.cfg.Name, Role: string(s.Role), Term: s.Term, Postgres: ps.State, InRecovery: ps.InRecovery,
		Version: version.Version, Protocol: version.ProtocolLevel()}
	// The journaled operation, or else the one in flight that has not
	// journaled yet (a promotion waiting for replay): a peer settling a
	// switchover must not take "no operation" for "did not promote".
	hb.Operation = opString(s.Operation)
	if s.Cluster != nil {
		hb.Maintenance = s.Cluster.Maintenance
	}
	if cur, _ := n.run.snapshot(); hb.Operation == "" && cur != nil {
		hb.Operation = cur.Kind + ":" + cur.Step
	}
	if s.Role == state.RolePrimary && s.Cluster != nil && s.Cluster.Peer != nil {
		_ = n.withConn(ctx, func(c *pgx.Conn) error {
			if err := c.QueryRow(ctx, `SELECT coalesce((SELECT wal_status FROM pg_replication_slots WHERE slot_name = $1), 'missing'), pg_current_wal_flush_lsn()::text`, slotName(s.Cluster.Peer.Name)).Scan(&hb.SlotWALStatus, &hb.FlushLSN); err != nil {
				return err
			}
			if r, err := ReadRecord(ctx, c); err == nil {
				hb.Synchronized = r.Synchronized
			}
			return nil
		})
	}
	return hb
}

func (n *Node) watchPeer(ctx context.Context, m *monitor, s state.State, err error) {
	peer := s.Cluster.Peer.Name
	if err == nil {
		if m.offlineNoted {
			n.event(ctx, EventNodeOnline, peer, fmt.Sprintf("%s answers again after %s", peer, time.Since(m.peerDownSince).Round(time.Second)))
		}
		m.peerUp, m.offlineNoted = true, false
		return
	}
	if m.peerUp {
		m.peerUp, m.peerDownSince = false, time.Now()
	}
	if !m.offlineNoted && time.Since(m.peerDownSince) >= offlineAfter {
		m.offlineNoted = true
		n.event(ctx, EventNodeOffline, peer, fmt.Sprintf("%s has not answered for %s: %v", peer, offlineAfter, err))
	}
}

// replStats is the secondary as the primary sees it.
type replStats struct {
	api.ReplicationInfo
	rowExists bool
}

func (n *Node) primaryStats(ctx context.Context, c *pgx.Conn, peer string) (replStats, error) {
	var r replStats
	slot := slotName(peer)
	r.Slot = slot
	var state, syncState, sent, replay *string
	var lagBytes *int64
	var lagSec *float64
	err := c.QueryRow(ctx, `SELECT state, sync_state, sent_lsn::text, replay_lsn::text,
	pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint,
	extract(epoch FROM coalesce(replay_lag, '0'::interval))::float8
FROM pg_stat_replication WHERE application_name = $1 ORDER BY backend_start DESC LIMIT 1`, peer).
		Scan(&state, &syncState, &sent, &replay, &lagBytes, &lagSec)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		r.State = "disconnected"
	case err != nil:
		return r, err
	default:
		r.rowExists = true
		switch deref(state) {
		case "streaming":
			r.State = "streaming"
		default:
			r.State = "catching_up"
		}
		r.SyncState, r.SentLSN, r.ReplayLSN = deref(syncState), deref(sent), deref(replay)
		if lagBytes != nil {
			r.LagBytes = *lagBytes
		}
		if lagSec != nil {
			r.LagSeconds = *lagSec
		}
		if r.State == "streaming" && r.LagBytes > 0 {
			r.State = "catching_up"
			if r.LagBytes < 1<<20 {
				r.State = "streaming" // a commit in flight, not a backlog
			}
		}
	}
	var walStatus *string
	var retained *int64
	err = c.QueryRow(ctx, `SELECT wal_status, pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&walStatus, &retained)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return r, err
	}
	r.SlotWALStatus = deref(walStatus)
	if retained != nil {
		r.RetainedBytes = *retained
	}
	return r, nil
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// watchReplication keeps the replication mode's promise on the primary:
// sync degrades to async after SyncGrace without a streaming secondary and
// comes back once it streams again; strict never degrades; async never
// waits. It also notes long absences and a passed WAL cap.
func (n *Node) watchReplication(ctx context.Context, m *monitor, s state.State) {
	peer := s.Cluster.Peer.Name
	var r replStats
	err := n.withConn(ctx, func(c *pgx.Conn) error {
		var err error
		r, err = n.primaryStats(ctx, c, peer)
		return err
	})
	if err != nil {
		return
	}
	streaming := r.State == "streaming"
	now := time.Now()
	if r.rowExists {
		if m.awayNoted {
			m.awayNoted = false
			n.event(ctx, EventSecondaryBack, peer, fmt.Sprintf("secondary %s is replicating again after %s away", peer, now.Sub(m.lastStreaming).Round(time.Second)))
		}
		m.lastStreaming = now
	} else if !m.awayNoted && now.Sub(m.lastStreaming) >= n.cfg.AwayAfter {
		m.awayNoted = true
		n.event(ctx, EventSecondaryAway, peer, fmt.Sprintf("secondary %s has not replicated for more than %s; WAL for it waits in pg_wal (%d bytes so far)", peer, n.cfg.AwayAfter, r.RetainedBytes))
	}

	if r.SlotWALStatus == "lost" && !m.capNoted {
		m.capNoted = true
		n.event(ctx, EventWALCapReached, peer, fmt.Sprintf("the WAL kept for %s passed max_slot_wal_keep_size (%s) and was released; it will be re-seeded when it returns", peer, n.cfg.MaxSlotWALKeep))
	}
	if r.SlotWALStatus != "lost" {
		m.capNoted = false
	}

	if s.Cluster.Replication == ModeSync && !m.syncKnown {
		// Start from what PostgreSQL has: on after a restart, off right
		// after a promotion (until the old primary streams).
		m.syncOn, m.syncKnown = n.syncSettingOn(), true
	}
	want, change := syncWanted(s.Cluster.Replication, m.syncOn, r.rowExists, streaming, now.Sub(m.lastStreaming), n.cfg.SyncGrace)
	if (!m.syncKnown || want != m.syncOn || n.syncSettingDiffers(want, peer)) && !n.holdSyncChange(ctx, &m.syncHeld, want, peer) {
		// Under the exclusion, and only if this node is still the primary
		// the tick looked at: an operation may have changed the role (and
		// PostgreSQL's settings) since.
		if !want && automatic(s) {
			// The sync record stops naming the standby before commits may
			// go without it: after this, it may not promote by itself.
			if err := n.recordSync(ctx, m, ""); err != nil {
				n.log.Error("could not clear the sync record; synchronous replication stays on", "err", err)
				return
			}
		}
		applied := false
		n.exclusive(func() {
			if now := n.State(); now.Role != s.Role || now.Term != s.Term || now.Operation != nil {
				return
			}
			if err := n.pg.StartPrimary(ctx, primarySettings(n.cfg.MaxSlotWALKeep, peer, want), false); err != nil {
				n.log.Error("could not change synchronous replication", "want", want, "err", err)
				return
			}
			applied = true
		})
		if !applied {
			return // the next tick looks again
		}
		m.syncOn, m.syncKnown = want, true
		switch change {
		case EventSyncDegraded:
			n.event(ctx, EventSyncDegraded, peer, fmt.Sprintf("secondary %s gone for %s: synchronous replication suspended, commits no longer wait for it; the cluster is NOT synchronized", peer, n.cfg.SyncGrace))
		case EventSyncRestored:
			n.event(ctx, EventSyncRestored, peer, fmt.Sprintf("secondary %s streams and has caught up: synchronous replication restored", peer))
		}
	}

	// sync and strict: the secondary confirms commits; async: it has
	// everything the primary wrote.
	synchronized := streaming && r.LagBytes == 0
	if s.Cluster.Replication != ModeAsync {
		synchronized = r.SyncState == "sync" || r.SyncState == "quorum"
	}
	if n.syncFlagReset.Swap(false) {
		m.syncFlagKnown = false // afterPromotion wrote the flag: write it again
	}
	if !m.syncFlagKnown || synchronized != m.synchronized {
		err := n.withConn(ctx, func(c *pgx.Conn) error { return SetSynchronized(ctx, c, synchronized) })
		if err == nil {
			m.synchronized, m.syncFlagKnown = synchronized, true
		}
	}
	// The sync record names the standby only once it is in
	// synchronous_standby_names and pg_stat_replication shows it
	// synchronous: from then on every acknowledged commit is on it.
	if automatic(s) && s.Cluster.Replication != ModeAsync && m.syncOn && synchronized {
		if err := n.recordSync(ctx, m, peer); err != nil {
			n.log.Warn("could not record the synchronous standby in the quorum", "err", err)
		}
	}
}

// recordSync writes the sync record (only while this node holds the
// leader key), unless it already says node in this tenure.
func (n *Node) recordSync(ctx context.Context, m *monitor, node string) error {
	l := n.leadership()
	if l == nil {
		return fmt.Errorf("this node does not hold the leader key")
	}
	// Per tenure: a new one (a regained key, a quorum made anew by a
	// change of mode) may find another record, or none.
	if m.syncRecordKnown && m.syncRecord == node && m.syncRecordLease == int64(l.LeaseID()) {
		return nil
	}
	qctx, cancel := context.WithTimeout(ctx, quorumCall)
	defer cancel()
	if err := l.WriteSync(qctx, node); err != nil {
		return err
	}
	m.syncRecord, m.syncRecordKnown, m.syncRecordLease = node, true, int64(l.LeaseID())
	n.log.Info("sync record written", "synchronous", node)
	return nil
}

// syncWanted is the replication mode's promise, decided from what the
// primary sees: strict always waits for the secondary; async never does;
// sync waits while the secondary replicates, stops waiting (degrades)
// once it has been gone for grace, and waits again once it streams. It
// returns whether commits should wait, and the event when that changes.
func syncWanted(mode string, syncOn, connected, streaming bool, sinceStreaming, grace time.Duration) (want bool, change string) {
	switch mode {
	case ModeStrict:
		return true, ""
	case ModeSync:
		switch {
		case syncOn && !connected && sinceStreaming >= grace:
			return false, EventSyncDegraded
		case !syncOn && streaming:
			return true, EventSyncRestored
		}
		return syncOn, ""
	}
	return false, ""
}

// observeTerm acts on the peer's term: a primary that learns of a newer
// term fences itself and rejoins; a secondary follows the term. It
// reports whether it changed this node's role.
func (n *Node) observeTerm(ctx context.Context, s state.State, hb api.Heartbeat) bool {
	switch {
	case s.Role == state.RolePrimary && state.Role(hb.Role) == state.RolePrimary && hb.Term == s.Term:
		// Cannot happen through tandem's own operations (only a promotion
		// makes a primary, and it bumps the term); leave it to an operator
		// rather than guess which one to stop.
		n.log.Error("BOTH nodes claim to be primary in the same term; an operator must decide", "term", s.Term, "peer", hb.Name)
	case s.Role == state.RolePrimary && hb.Term > s.Term:
		return n.inline(OpRejoin, func(ctx context.Context) error {
			if now := n.State(); now.Role != state.RolePrimary || now.Term >= hb.Term {
				return nil // an operation changed the role meanwhile
			}
			n.fence(ctx, hb.Term, fmt.Sprintf("%s is %s at term %d", hb.Name, hb.Role, hb.Term))
			return n.rejoinLoop(ctx)
		})
	case s.Role == state.RoleSecondary && state.Role(hb.Role) == state.RolePrimary && hb.Term > s.Term:
		err := n.set(func(now *state.State) {
			if now.Role == state.RoleSecondary && now.Term < hb.Term {
				now.Term = hb.Term
			}
		})
		if err != nil {
			n.log.Error("could not save the new term", "err", err)
		}
	}
	return false
}

func (n *Node) syncSettingOn() bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var cur string
	_ = n.withConn(ctx, func(c *pgx.Conn) error {
		return c.QueryRow(ctx, `SELECT current_setting('synchronous_standby_names')`).Scan(&cur)
	})
	return cur != ""
}

// syncSettingDiffers reports whether PostgreSQL's synchronous_standby_names
// disagrees with what the monitor wants (after a restart, or an edit).
func (n *Node) syncSettingDiffers(want bool, peer string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var cur string
	err := n.withConn(ctx, func(c *pgx.Conn) error {
		return c.QueryRow(ctx, `SELECT current_setting('synchronous_standby_names')`).Scan(&cur)
	})
	if err != nil {
		return false
	}
	if want {
		return cur != quoteIdent(peer) && cur != peer
	}
	return cur != ""
}

// reseed clones this secondary afresh when the primary no longer has the
// WAL it needs. The primary recreates the slot first, so the new copy is
// protected from the moment it starts. A failure is retried by the monitor.
func (n *Node) reseed(ctx context.Context, why string) error {
	s := n.State()
	if s.Role != state.RoleSecondary || (s.Operation != nil && s.Operation.Kind != OpReseed) {
		return nil // an operation changed the role meanwhile
	}
	start := time.Now()
	n.log.Warn("re-seeding this secondary", "op", OpReseed, "reason", why)
	primary := memberOf(s.Cluster.Peer)
	if err := n.journal(OpReseed, StepSlot, 0); err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err := n.peer(primary).RecreateSlot(rctx)
	cancel()
	if err != nil {
		return fmt.Errorf("the primary did not recreate the slot (the monitor retries): %w", err)
	}
	password, err := n.readReplPassword()
	if err != nil {
		return fmt.Errorf("cannot re-seed: %w", err)
	}
	if err := n.journal(OpReseed, StepClone, 0); err != nil {
		return err
	}
	took, _, err := n.cloneFrom(ctx, *primary, slotName(n.cfg.Name), password, func(ctx context.Context) error {
		return n.followAsStandby(ctx, primary)
	})
	if err != nil {
		return fmt.Errorf("re-seed failed (the monitor retries): %w", err)
	}
	if err := n.forgetOperation(); err != nil {
		return err
	}
	n.event(ctx, EventReseeded, n.cfg.Name, fmt.Sprintf("secondary %s was re-seeded with a fresh copy (%s; clone %s) because %s", n.cfg.Name, time.Since(start).Round(time.Millisecond), took.Round(time.Millisecond), why))
	return nil
}

// RecreateSlot is the primary's side of a re-seed: a lost slot is dropped
// and created again, reserving WAL from now.
func (n *Node) RecreateSlot(ctx context.Context) error {
	_, err := runOp(n, ctx, OpReseed, byPeer, func(ctx context.Context, _ func(struct{}, error)) (struct{}, error) {
		s := n.State()
		if s.Role != state.RolePrimary || s.Cluster == nil || s.Cluster.Peer == nil {
			return struct{}{}, conflict("%s is not a primary with a secondary", n.cfg.Name)
		}
		slot := slotName(s.Cluster.Peer.Name)
		return struct{}{}, n.withConn(ctx, func(c *pgx.Conn) error {
			if err := dropSlotNow(ctx, c, slot); err != nil {
				return err
			}
			_, err := c.Exec(ctx, `SELECT pg_create_physical_replication_slot($1, true)`, slot)
			return err
		})
	})
	return err
}

// PeerEvent records an event on behalf of the secondary.
func (n *Node) PeerEvent(ctx context.Context, e api.PeerEvent) error {
	s := n.State()
	if s.Role != state.RolePrimary || s.Cluster == nil || s.Cluster.Peer == nil {
		return conflict("%s is not the primary", n.cfg.Name)
	}
	if e.Kind == "" || e.Message == "" {
		return badRequest("an event needs a kind and a message")
	}
	return n.withConn(ctx, func(c *pgx.Conn) error { return AddEvent(ctx, c, e.Kind, s.Cluster.Peer.Name, s.Term, e.Message) })
}
