package cluster

// Maintenance mode (Patroni's pause): the operator says "hands off", and
// tandemd keeps reporting but acts on nothing by itself until it is
// switched off. What that means, decision by decision (docs/operations.md,
// "Maintenance mode", says the same for operators):
//
//   - Suppressed: the sync mode's degrade (commits keep waiting for an
//     absent secondary past sync_grace: loosening the promise is a
//     judgement the operator reserved), the automatic failover of automatic mode, the automatic
//     rejoin of a fenced or stale primary (it stays stopped), the re-seed
//     of a secondary and the kick of a stuck WAL receiver, and the
//     supervisor's crash restart of PostgreSQL (hands off: it adopts the
//     postmaster the operator starts instead, postgres/handsoff.go).
//   - Refused with a message: `tandem failover`. Its justification is
//     tandemd's judgement that the primary is dead, and during maintenance
//     a silent primary is most often one an operator stopped on purpose.
//     Switching maintenance off first is the way (in automatic mode the
//     secondary then fails over by itself if the key is vacant).
//   - Allowed: `tandem switchover` (planned, both nodes answer and it
//     checks everything itself; Patroni allows it in pause too), and what
//     an operation the operator started does to its end. Also the sync
//     mode's restore: it only brings back the promise the cluster is
//     configured with. A new primary starts with commits not waiting
//     (after a promotion nobody streams yet) and the restore makes them
//     wait once its standby streams; holding it would leave a switchover
//     made in maintenance unsynchronized until maintenance ends.
//   - Kept, on purpose: in automatic mode the primary renews its leader
//     lease, feeds the watchdog and fences itself when it cannot renew.
//     "Only the holder of the leader key may be primary" is what makes
//     switching maintenance off safe: at that moment the secondary may
//     promote as soon as it finds the key vacant, and a primary that had
//     kept writing without the key would then be a second primary. So a
//     quorum lost during maintenance still costs writes (as it does
//     outside maintenance when the secondary may not promote). Likewise a
//     primary that learns of a newer term still fences (that newer term
//     comes from an operator's own failover; not fencing would leave two
//     writable primaries), but it does not rejoin until maintenance is off.
//
// The flag lives in each node's state file (Membership.Maintenance) and
// travels in the heartbeat, so it holds through a restart and on a node
// whose peer is down, and a node that missed a switch learns it when the
// two hear each other again (the higher Gen wins).

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/tandem-ha/tandem/internal/api"
	"github.com/tandem-ha/tandem/internal/postgres"
	"github.com/tandem-ha/tandem/internal/state"
)

// Events of maintenance mode.
const (
	EventMaintenanceOn  = "maintenance_on"
	EventMaintenanceOff = "maintenance_off"
	// EventSyncChangeHeld: sync mode would degrade (or restore) but
	// maintenance holds it as it is.
	EventSyncChangeHeld = "sync_change_held"
	// EventAutoFailoverSuppressed: the leader key went vacant in
	// maintenance; the secondary does not promote by itself.
	EventAutoFailoverSuppressed = "automatic_failover_suppressed"
	// PostgreSQL stopped / started outside tandemd in maintenance.
	EventPostgresStoppedByHand = "postgres_stopped_by_hand"
	EventPostgresStartedByHand = "postgres_started_by_hand"
)

// maxReasonLen bounds --reason: it goes into every node's state file and
// the event history.
const maxReasonLen = 500

// maintenanceOf is the maintenance mode in force in s, or nil when off.
func maintenanceOf(s state.State) *api.MaintenanceInfo {
	if s.Cluster == nil || s.Cluster.Maintenance == nil || !s.Cluster.Maintenance.On {
		return nil
	}
	m := *s.Cluster.Maintenance
	return &m
}

// inMaintenance is maintenanceOf for the node's current state.
func (n *Node) inMaintenance() *api.MaintenanceInfo { return maintenanceOf(n.State()) }

// describeMaintenance is the one sentence every message about it uses.
func describeMaintenance(m *api.MaintenanceInfo) string {
	s := fmt.Sprintf("maintenance mode is on (since %s, by %s", m.At.UTC().Format(time.RFC3339), m.By)
	if m.Reason != "" {
		s += ": " + m.Reason
	}
	return s + ")"
}

// refusedInMaintenance is the refusal of an operation that would need
// tandemd's judgement.
func refusedInMaintenance(m *api.MaintenanceInfo, what, instead string) error {
	return conflict("%s refused: %s. %s", what, describeMaintenance(m), instead)
}

func checkReason(r string) error {
	if len(r) > maxReasonLen {
		return badRequest("the reason is %d bytes long; at most %d", len(r), maxReasonLen)
	}
	if strings.IndexFunc(r, unicode.IsControl) >= 0 {
		return badRequest("the reason must be one line of printable text")
	}
	return nil
}

// SetMaintenance answers POST /v1/cluster/maintenance: the switch is made
// here (state file fsynced), then sent to the peer. A peer that does not
// answer is reported, not a failure: refusing would make maintenance
// impossible to switch off exactly when it matters (the primary powered
// off: off lets the secondary fail over). It learns the change from the
// heartbeat when it answers again, and until then acts on what it knew.
func (n *Node) SetMaintenance(ctx context.Context, req api.MaintenanceRequest) (api.MaintenanceResult, error) {
	s := n.State()
	if s.Cluster == nil || s.Cluster.Peer == nil {
		return api.MaintenanceResult{}, conflict("%s is not in a two-node cluster; maintenance mode is a cluster's", n.cfg.Name)
	}
	if err := checkReason(req.Reason); err != nil {
		return api.MaintenanceResult{}, err
	}
	by := strings.TrimSpace(req.By)
	if by == "" {
		by = byConsole
	}
	if err := checkReason(by); err != nil {
		return api.MaintenanceResult{}, err
	}
	peer := memberOf(s.Cluster.Peer)
	cur := s.Cluster.Maintenance
	// Ask the peer first: it may know a later change this node missed,
	// and the new one must order after both.
	hctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	hb, herr := n.peer(peer).Heartbeat(hctx)
	cancel()
	if herr == nil && hb.Maintenance.Newer(cur) {
		n.adoptMaintenance(hb.Maintenance, peer.Name)
		cur = hb.Maintenance
	}
	res := api.MaintenanceResult{}
	m := api.MaintenanceInfo{On: req.On, By: by, Reason: req.Reason, At: time.Now().UTC(), Gen: 1}
	if cur != nil {
		m.Gen = cur.Gen + 1
	}
	if (cur == nil && !req.On) || (cur != nil && cur.On == req.On) {
		// Already so: nothing changes and nothing is recorded; the peer
		// still hears what this node holds, in case it missed it.
		if cur != nil {
			m = *cur
		}
	} else {
		res.Changed = true
		if err := n.adoptMaintenance(&m, n.cfg.Name); err != nil {
			return api.MaintenanceResult{}, err
		}
	}
	res.Maintenance = m
	res.Nodes = append(res.Nodes, api.MaintenanceNode{Name: n.cfg.Name, Applied: true})
	pn := api.MaintenanceNode{Name: peer.Name}
	if herr == nil {
		pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		var got api.MaintenanceInfo
		got, herr = n.peer(peer).PeerMaintenance(pctx, m)
		cancel()
		if herr == nil && got.Gen == m.Gen && got.On == m.On {
			pn.Applied = true
		} else if herr == nil {
			herr = fmt.Errorf("it holds a later change (gen %d, on %v)", got.Gen, got.On)
		}
	}
	if herr != nil {
		pn.Error = fmt.Sprintf("%s did not take the change (%v): it learns it when the nodes hear each other again, and until then acts on what it knew", peer.Name, herr)
	}
	res.Nodes = append(res.Nodes, pn)
	if res.Changed {
		kind, what := EventMaintenanceOff, "maintenance mode switched off by "+by+": tandemd acts by itself again"
		if m.On {
			kind, what = EventMaintenanceOn, "maintenance mode switched on by "+by+": tandemd reports but takes no automatic action (no sync degrade, no automatic failover, rejoin or re-seed, no PostgreSQL restart)"
		}
		if m.Reason != "" {
			what += "; reason: " + m.Reason
		}
		if !pn.Applied {
			what += "; " + pn.Error
		}
		n.eventKept(ctx, kind, what)
	}
	return res, nil
}

// PeerMaintenance answers POST /v1/peer/maintenance: the peer's switch,
// adopted if it is later than what this node holds. It returns what this
// node holds afterwards.
func (n *Node) PeerMaintenance(_ context.Context, m api.MaintenanceInfo) (api.MaintenanceInfo, error) {
	if err := checkReason(m.Reason); err != nil {
		return api.MaintenanceInfo{}, err
	}
	if err := n.adoptMaintenance(&m, "peer"); err != nil {
		return api.MaintenanceInfo{}, err
	}
	s := n.State()
	if s.Cluster == nil || s.Cluster.Maintenance == nil {
		return api.MaintenanceInfo{}, conflict("%s is not in a cluster", n.cfg.Name)
	}
	return *s.Cluster.Maintenance, nil
}

// adoptMaintenance saves m if it is later than what this node holds, and
// puts the supervisor's hands-off mode in line with it.
func (n *Node) adoptMaintenance(m *api.MaintenanceInfo, from string) error {
	if m == nil {
		return nil
	}
	changed := false
	err := n.update(func(s *state.State) error {
		if s.Cluster == nil {
			return conflict("%s is not in a cluster", n.cfg.Name)
		}
		if m.Newer(s.Cluster.Maintenance) {
			c := *m
			s.Cluster.Maintenance, changed = &c, true
		}
		return nil
	})
	if err != nil {
		return err
	}
	if changed {
		n.log.Warn("maintenance mode", "on", m.On, "by", m.By, "reason", m.Reason, "gen", m.Gen, "from", from)
	}
	n.pg.SetHandsOff(n.inMaintenance() != nil)
	return nil
}

// waitMaintenanceOff holds an automatic rejoin while maintenance is on.
// It asks the peer itself (the monitor does not run its heartbeat while
// an operation is journaled), so a switch-off made while this node was
// away still reaches it.
func (n *Node) waitMaintenanceOff(ctx context.Context) error {
	if cur, _ := n.run.snapshot(); cur != nil && cur.By == byConsole {
		return nil // the operator's own operation (a switchover) finishes
	}
	logged := false
	for {
		s := n.State()
		m := maintenanceOf(s)
		if m == nil {
			return nil
		}
		if !logged {
			logged = true
			n.log.Warn("not rejoining: "+describeMaintenance(m)+"; this node stays stopped until maintenance is off", "op", OpRejoin)
		}
		if s.Cluster.Peer != nil {
			if hb, err := n.askPeer(ctx, memberOf(s.Cluster.Peer), 2*time.Second); err == nil {
				_ = n.adoptMaintenance(hb.Maintenance, hb.Name)
			}
		}
		if !n.run.wait(ctx, time.Second) {
			return fmt.Errorf("rejoin held by maintenance mode when tandemd stopped (it resumes at the next start)")
		}
	}
}

// byHandWatch is the monitor's view of PostgreSQL in maintenance: who
// stopped or started it is the operator, and the history says so.
type byHandWatch struct {
	stopped bool
	pid     int
}

// watchByHand reports PostgreSQL stopped or started outside tandemd while
// maintenance is on. A stop on the primary is kept and recorded once its
// PostgreSQL, which holds the history, is back; the start says how long
// it was down.
func (n *Node) watchByHand(ctx context.Context, w *byHandWatch, since *time.Time) {
	ps := n.pg.Status(ctx)
	switch {
	case ps.State == postgres.StateStopped && ps.Error == postgres.StoppedByHand:
		if !w.stopped {
			w.stopped, *since = true, time.Now()
			n.eventKept(ctx, EventPostgresStoppedByHand, fmt.Sprintf("PostgreSQL on %s (pid %d) stopped outside tandemd; maintenance mode: tandemd does not restart it and adopts the postmaster started by hand", n.cfg.Name, w.pid))
		}
	case ps.State == postgres.StateRunning && ps.PID != 0:
		if w.stopped {
			w.stopped = false
			n.event(ctx, EventPostgresStartedByHand, n.cfg.Name, fmt.Sprintf("PostgreSQL on %s was started by hand (pid %d) after %s stopped; tandemd adopted it", n.cfg.Name, ps.PID, time.Since(*since).Round(time.Second)))
		}
		w.pid = ps.PID
	}
}

// noteAutoBlocked records, once per vacancy, why a secondary whose
// primary's key went vacant does not promote by itself.
func (n *Node) noteAutoBlocked(ctx context.Context, s state.State, why string) {
	if m := maintenanceOf(s); m != nil {
		n.log.Error("the primary's leader key is gone; maintenance mode: this secondary does not fail over by itself", "why", why)
		n.eventKept(ctx, EventAutoFailoverSuppressed, fmt.Sprintf("the leader key of %s is vacant, but %s does not fail over by itself: %s. `tandem maintenance off` lets it fail over", s.Cluster.Peer.Name, n.cfg.Name, describeMaintenance(m)))
		return
	}
	n.log.Error("the primary's leader key is gone, but this secondary may not promote by itself", "why", why)
	n.event(ctx, EventAutoFailoverBlocked, n.cfg.Name, fmt.Sprintf("the leader key of %s is vacant, but %s does not promote by itself: %s. `tandem failover --force` promotes it anyway, losing what it lacks", s.Cluster.Peer.Name, n.cfg.Name, why))
}

// holdSyncChange reports whether maintenance holds a change of the sync
// mode's setting the monitor wants (noting it once per hold): a degrade
// (want false) is held, a restore is not (see the top of this file).
func (n *Node) holdSyncChange(ctx context.Context, held *bool, want bool, peer string) bool {
	m := n.inMaintenance()
	if m == nil || want {
		*held = false
		return false
	}
	if !*held {
		*held = true
		what := "would degrade synchronous replication (the secondary is gone past sync_grace); commits keep waiting for it"
		n.event(ctx, EventSyncChangeHeld, peer, fmt.Sprintf("tandemd %s: %s", what, describeMaintenance(m)))
	}
	return true
}

// keptEvents are maintenance events the history did not take: on a
// secondary whose primary is down (the history lives in the primary's
// PostgreSQL), or on a primary whose PostgreSQL an operator stopped. Who
// switched maintenance and why must not be lost for that; the monitor
// records them once the history answers (a few, in memory: a tandemd
// restart meanwhile loses them, and the log has them).
type keptEvents struct {
	mu     sync.Mutex
	events []keptEvent
}

type keptEvent struct {
	kind, msg string
	at        time.Time
}

// maxKeptEvents bounds the queue; the oldest go first.
const maxKeptEvents = 20

// eventKept records an event about this node now, or keeps it for later.
func (n *Node) eventKept(ctx context.Context, kind, msg string) {
	if n.eventErr(ctx, kind, n.cfg.Name, msg) == nil {
		return
	}
	n.kept.mu.Lock()
	defer n.kept.mu.Unlock()
	n.kept.events = append(n.kept.events, keptEvent{kind: kind, msg: msg, at: time.Now().UTC()})
	if len(n.kept.events) > maxKeptEvents {
		n.kept.events = n.kept.events[len(n.kept.events)-maxKeptEvents:]
	}
}

// flushKeptEvents records the kept events, oldest first, while the
// history takes them.
func (n *Node) flushKeptEvents(ctx context.Context) {
	for {
		n.kept.mu.Lock()
		if len(n.kept.events) == 0 {
			n.kept.mu.Unlock()
			return
		}
		e := n.kept.events[0]
		n.kept.mu.Unlock()
		msg := fmt.Sprintf("%s (at %s; recorded late, the history did not answer then)", e.msg, e.at.Format(time.RFC3339))
		if n.eventErr(ctx, e.kind, n.cfg.Name, msg) != nil {
			return
		}
		n.kept.mu.Lock()
		n.kept.events = n.kept.events[1:]
		n.kept.mu.Unlock()
	}
}
