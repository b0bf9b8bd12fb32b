package cluster

import (
	"context"
	"time"

	"github.com/tandem-ha/tandem/internal/state"
)

// A reload replaces a running tandemd with the binary now on disk while
// PostgreSQL and the cluster IP stay as they are (the daemon re-executes
// itself in place; docs/operations.md). The node's part: the old process
// writes down what it was doing (Handover), the new one carries on from
// it instead of booting as after a crash:
//
//   - a primary in manual mode does not wait for its peer's word before
//     opening: it never stopped being primary. The monitor still asks the
//     peer every second and fences on a newer term, as it did before;
//   - a primary keeps the synchronous setting it had (a degraded cluster
//     stays degraded until the monitor sees the secondary stream), so the
//     first settings reload does not make commits wait for an absent
//     secondary;
//   - a primary in automatic mode releases its lease after one last
//     renewal and the new process resumes it (quorum.Resume). Until then
//     PostgreSQL keeps accepting writes only up to the fence deadline that
//     renewal set; past it, unrenewed, the new process fences as a primary
//     whose renewals failed would.

// Handover is what a reloading tandemd passes to the process it becomes.
type Handover struct {
	PID     int        `json:"pid"`
	Version string     `json:"version"`
	Role    state.Role `json:"role"`
	Term    int64      `json:"term"`
	// SyncOn: on a primary, whether commits waited for the secondary.
	SyncOn *bool `json:"sync_on,omitempty"`
	// LeaseLeft: in automatic mode on a primary, how long after the
	// handover was made the lease's fence deadline falls. The daemon turns
	// it into a point on CLOCK_MONOTONIC (see LeaseDeadline).
	LeaseLeft time.Duration `json:"lease_left,omitempty"`
	// LeaseDeadline is when the new process must have renewed the lease
	// or fence (set by the receiving daemon; not sent).
	LeaseDeadline time.Time `json:"-"`
}

// PrepareHandover is the node's last step before a reload, after Stop: it
// notes the role, term and synchronous setting, and in automatic mode lets
// go of the quorum without resigning (the lease is renewed once more, then
// left to the new process; the etcd member and the client stop).
func (n *Node) PrepareHandover() Handover {
	s := n.State()
	h := Handover{Role: s.Role, Term: s.Term}
	if s.Role == state.RolePrimary {
		on := n.syncSettingOn()
		h.SyncOn = &on
	}
	n.q.mu.Lock()
	lead := n.q.lead
	n.q.lead = nil
	n.q.mu.Unlock()
	if lead != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		deadline := lead.Release(ctx)
		cancel()
		h.LeaseLeft = time.Until(deadline)
		n.log.Info("leader lease released for the reload", "deadline_in", h.LeaseLeft.Round(time.Millisecond))
	}
	// The watchdog's file would close at the exec without the magic
	// close, leaving the device counting while the new process boots and
	// resumes the lease: a reload would reset the machine. It is disarmed
	// here and armed again by the new process before it carries on as the
	// holder (armWatchdog in tryHoldPrimary). The price: for the ~0.1–0.5 s
	// of the exec, a new process that hangs is not reset by the device; it
	// has not resumed the lease then, so the secondary promotes only once
	// the lease runs out, as for a primary that died.
	n.disarmWatchdogFor(nil, "reload: the new process arms it again")
	n.closeQuorum(false, false)
	return h
}

// SetHandover gives a node that was just created by a reload what the old
// process was doing; call it before Start. A handover for another role or
// term than the state file's is ignored (the state file wins).
func (n *Node) SetHandover(h Handover) {
	s := n.State()
	if h.Role != s.Role || h.Term != s.Term {
		n.log.Warn("reload handover does not match the state file; booting as after a restart", "handover_role", h.Role, "handover_term", h.Term, "role", s.Role, "term", s.Term)
		return
	}
	n.handover.Store(&h)
}

// reloaded returns the handover while the boot after a reload uses it.
func (n *Node) reloaded() *Handover { return n.handover.Load() }

// endHandover: the boot has decided; later openings (after a fence) are
// ordinary ones.
func (n *Node) endHandover() { n.handover.Store(nil) }

// bootSyncOn is whether a primary opening at boot makes commits wait for
// the secondary: as before the reload, or as the replication mode says.
func (n *Node) bootSyncOn(s state.State) bool {
	if h := n.reloaded(); h != nil && h.SyncOn != nil {
		return *h.SyncOn
	}
	return s.Cluster.Replication != ModeAsync
}

// leaseHandedOver says whether the lease the old process released may
// still be unexpired and unrenewed: PostgreSQL may keep accepting writes
// until its deadline, not after.
func (n *Node) leaseHandedOver() bool {
	h := n.reloaded()
	return h != nil && !h.LeaseDeadline.IsZero() && time.Now().Before(h.LeaseDeadline)
}

// guardHandedLease fences this primary at the handed-over lease's
// deadline unless the tenure was resumed by then: the old process's
// renewals have stopped, and past the deadline the lease may expire and
// the secondary take over.
func (n *Node) guardHandedLease() {
	h := n.reloaded()
	if h == nil || h.LeaseDeadline.IsZero() {
		return
	}
	n.run.goAttach(func(ctx context.Context) {
		t := time.NewTimer(time.Until(h.LeaseDeadline))
		defer t.Stop()
		select {
		case <-ctx.Done():
			return
		case <-n.run.stopping:
			return
		case <-t.C:
		}
		if n.leadership() != nil || n.pg.Fenced() || !n.pg.PostmasterRunning() {
			return
		}
		n.log.Error("FENCE: the lease handed over by the reload was not resumed before its deadline; this node stops accepting writes")
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := n.pg.Fence(fctx); err != nil {
			n.log.Error("FENCE: could not stop PostgreSQL", "err", err)
		}
		if err := n.vip.Release(fctx); err != nil {
			n.log.Error("FENCE: could not drop the cluster IP", "err", err)
		}
	})
}
