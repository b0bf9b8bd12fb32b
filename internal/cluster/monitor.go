package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tandem-ha/tandem/internal/api"
	"github.com/tandem-ha/tandem/internal/state"
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

// monitor is the state of the watch loop; only its goroutine touches it.
type monitor struct {
	role           string
	term           int64
	peerUp         bool
	peerDownSince  time.Time
	offlineNoted   bool
	lastStreaming  time.Time
	awayNoted      bool
	syncOn         bool
	syncKnown      bool
	synchronized   bool
	syncFlagKnown  bool
	capNoted       bool
	lastSlotStatus string
}

// monitorEvery is how often the monitor looks.
const monitorEvery = time.Second

// offlineAfter is how long the peer's API may be silent before the
// node_offline event; short blips are not worth a line in the history.
const offlineAfter = 5 * time.Second

func (n *Node) runMonitor(ctx context.Context) {
	m := &monitor{lastStreaming: time.Now(), peerUp: true}
	t := time.NewTicker(monitorEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s := n.State()
		if s.Cluster == nil || s.Cluster.Peer == nil || s.Operation != nil {
			continue
		}
		if s.Role != m.role || s.Term != m.term {
			// A new role or term: start watching afresh.
			*m = monitor{role: s.Role, term: s.Term, lastStreaming: time.Now(), peerUp: true}
		}
		hb, err := n.heartbeat(ctx, s)
		n.watchPeer(ctx, m, s, err)
		if err == nil && n.observeTerm(ctx, s, hb) {
			continue
		}
		switch s.Role {
		case state.RolePrimary:
			n.watchReplication(ctx, m, s)
		case state.RoleSecondary:
			if err == nil && hb.Role == state.RolePrimary && hb.SlotWALStatus == "lost" {
				n.reseed(ctx, s, "the primary removed WAL this secondary still needed (max_slot_wal_keep_size was passed)")
			}
		}
	}
}

// heartbeat asks the peer who it is; the answer also feeds failover's
// "when did we last hear from the primary".
func (n *Node) heartbeat(ctx context.Context, s state.State) (api.Heartbeat, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	p := n.peerOf(memberOf(s.Cluster.Peer))
	defer p.close()
	var hb api.Heartbeat
	if err := p.do(ctx, http.MethodGet, "/v1/peer/heartbeat", nil, &hb); err != nil {
		return hb, err
	}
	n.markHeard()
	n.noteContact(hb)
	return hb, nil
}

// Heartbeat answers the peer.
func (n *Node) Heartbeat(ctx context.Context) api.Heartbeat {
	n.markHeard()
	s := n.State()
	ps := n.pg.Status(ctx)
	hb := api.Heartbeat{Name: n.cfg.Name, Role: s.Role, Term: s.Term, Postgres: ps.State, InRecovery: ps.InRecovery}
	if s.Operation != nil {
		hb.Operation = s.Operation.Kind + ":" + s.Operation.Step
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

	want := false
	switch s.Cluster.Replication {
	case ModeStrict:
		want = true
	case ModeSync:
		if !m.syncKnown {
			// Start from what PostgreSQL has: on after a restart, off right
			// after a promotion (until the old primary streams).
			m.syncOn, m.syncKnown = n.syncSettingOn(), true
		}
		want = m.syncOn
		if m.syncOn && !r.rowExists && now.Sub(m.lastStreaming) >= n.cfg.SyncGrace {
			want = false
			n.event(ctx, EventSyncDegraded, peer, fmt.Sprintf("secondary %s gone for %s: synchronous replication suspended, commits no longer wait for it; the cluster is NOT synchronized", peer, n.cfg.SyncGrace))
		}
		if !m.syncOn && streaming {
			want = true
			n.event(ctx, EventSyncRestored, peer, fmt.Sprintf("secondary %s streams and has caught up: synchronous replication restored", peer))
		}
	}
	if !m.syncKnown || want != m.syncOn || n.syncSettingDiffers(want, peer) {
		n.pg.SetSettings(primarySettings(n.cfg.MaxSlotWALKeep, peer, want))
		if err := n.pg.Reload(ctx); err != nil {
			n.log.Error("could not change synchronous replication", "want", want, "err", err)
			return
		}
		m.syncOn, m.syncKnown = want, true
	}

	// sync and strict: the secondary confirms commits; async: it has
	// everything the primary wrote.
	synchronized := streaming && r.LagBytes == 0
	if s.Cluster.Replication != ModeAsync {
		synchronized = r.SyncState == "sync" || r.SyncState == "quorum"
	}
	if !m.syncFlagKnown || synchronized != m.synchronized {
		err := n.withConn(ctx, func(c *pgx.Conn) error { return SetSynchronized(ctx, c, synchronized) })
		if err == nil {
			m.synchronized, m.syncFlagKnown = synchronized, true
		}
	}
}

// observeTerm acts on the peer's term: a primary that learns of a newer
// term fences itself and rejoins; a secondary follows the term. It
// reports whether it changed this node's role.
func (n *Node) observeTerm(ctx context.Context, s state.State, hb api.Heartbeat) bool {
	switch {
	case s.Role == state.RolePrimary && hb.Role == state.RolePrimary && hb.Term == s.Term:
		// Cannot happen through tandem's own operations (only a promotion
		// makes a primary, and it bumps the term); leave it to an operator
		// rather than guess which one to stop.
		n.log.Error("BOTH nodes claim to be primary in the same term; an operator must decide", "term", s.Term, "peer", hb.Name)
	case s.Role == state.RolePrimary && hb.Term > s.Term:
		if !n.opMu.TryLock() {
			return false
		}
		defer n.opMu.Unlock()
		n.fence(ctx, hb.Term, fmt.Sprintf("%s is %s at term %d", hb.Name, hb.Role, hb.Term))
		n.rejoinLoop(ctx)
		return true
	case s.Role == state.RoleSecondary && hb.Role == state.RolePrimary && hb.Term > s.Term:
		s.Term = hb.Term
		if err := n.save(s); err != nil {
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
// protected from the moment it starts.
func (n *Node) reseed(ctx context.Context, s state.State, why string) {
	if !n.opMu.TryLock() {
		return
	}
	defer n.opMu.Unlock()
	start := time.Now()
	n.log.Warn("re-seeding this secondary", "op", OpReseed, "reason", why)
	primary := memberOf(s.Cluster.Peer)
	if err := n.journal(OpReseed, "slot"); err != nil {
		return
	}
	defer func() {
		st := n.State()
		st.Operation = nil
		_ = n.save(st)
	}()
	p := n.peerOf(primary)
	defer p.close()
	if err := p.do(ctx, http.MethodPost, "/v1/peer/reseed", nil, nil); err != nil {
		n.log.Error("the primary did not recreate the slot; will retry", "err", err)
		return
	}
	password, err := n.readReplPassword()
	if err != nil {
		n.log.Error("cannot re-seed", "err", err)
		return
	}
	_ = n.journal(OpReseed, "clone")
	took, _, err := n.cloneFrom(ctx, *primary, slotName(n.cfg.Name), password)
	if err != nil {
		n.log.Error("re-seed failed; will retry", "err", err)
		return
	}
	n.event(ctx, EventReseeded, n.cfg.Name, fmt.Sprintf("secondary %s was re-seeded with a fresh copy (%s; clone %s) because %s", n.cfg.Name, time.Since(start).Round(time.Millisecond), took.Round(time.Millisecond), why))
}

// RecreateSlot is the primary's side of a re-seed: a lost slot is dropped
// and created again, reserving WAL from now.
func (n *Node) RecreateSlot(ctx context.Context) error {
	s := n.State()
	if s.Role != state.RolePrimary || s.Cluster == nil || s.Cluster.Peer == nil {
		return conflict("%s is not a primary with a secondary", n.cfg.Name)
	}
	slot := slotName(s.Cluster.Peer.Name)
	return n.withConn(ctx, func(c *pgx.Conn) error {
		if err := dropSlotNow(ctx, c, slot); err != nil {
			return err
		}
		_, err := c.Exec(ctx, `SELECT pg_create_physical_replication_slot($1, true)`, slot)
		return err
	})
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
