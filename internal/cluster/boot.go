package cluster

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/tandem-ha/tandem/internal/state"
)

// OpBoot is the node deciding, at start, in which role PostgreSQL may run.
// It is not journaled (a crash during boot just boots again), but it holds
// the exclusion so no operation starts before the decision.
const OpBoot state.OpKind = "boot"

// Start takes the exclusion for the boot decision at once, so that an
// operation asked for before the decision is refused rather than run on a
// node that does not yet know its role, then runs the node in a tracked
// goroutine: boot, then the monitor, until shutdown. The metrics
// collector runs beside them from the start.
func (n *Node) Start() {
	op, err := n.run.begin(n.cfg.Name, OpBoot, byNode)
	if err != nil {
		n.log.Error("cannot start the node", "err", err)
		return
	}
	// Maintenance mode holds through a restart: the supervisor keeps its
	// hands off from the start (its first start is still made by boot).
	n.pg.SetHandsOff(n.inMaintenance() != nil)
	n.run.goAttach(n.runCollector)
	n.run.goAttach(n.runAutoWatch)
	n.run.goAttach(n.runQuorumInfo)
	n.run.goAttach(n.runHealWatch)
	n.run.goAttach(n.runFileSync)
	n.run.goAttach(func(ctx context.Context) {
		start := time.Now()
		err := n.boot(ctx)
		n.ops.record(string(OpBoot), err, time.Since(start))
		n.run.end(op, err)
		if err != nil {
			// The monitor still runs: it reports, and carries on what it
			// can (a pending re-seed, the term).
			n.log.Error("boot failed", "err", err)
		}
		n.runMonitor(ctx)
	})
}

// boot brings the node up in the role it may have. It is the one place
// that decides whether PostgreSQL may open for writes after a restart:
//
//   - an interrupted operation is settled first (recovery table);
//   - no cluster, or standalone: start PostgreSQL (initdb a new node);
//   - secondary: start as a standby of the remembered primary;
//   - primary: ask the peer first. Peer primary at a higher term → this
//     node is stale: rewind (or clone) and follow. Peer secondary → carry on
//     as primary. Peer silent → stay closed until it answers or, with
//     rejoin.self_elect, until rejoin.peer_grace passes and the cluster IP
//     probe finds nobody.
func (n *Node) boot(ctx context.Context) error {
	if err := n.RecoverBeforePostgres(); err != nil {
		return fmt.Errorf("could not recover an interrupted operation, PostgreSQL stays stopped: %w", err)
	}
	if err := n.pg.StartHalted(); err != nil {
		return fmt.Errorf("PostgreSQL supervisor did not start: %w", err)
	}
	n.setVIPAddress()
	// The quorum first: settling an interrupted switchover may need the
	// leader key.
	if s := n.State(); automatic(s) {
		if err := n.startQuorum(*s.Cluster.Quorum); err != nil {
			n.log.Error("could not start the quorum (this node cannot be primary, nor fail over by itself, until it does)", "err", err)
			n.q.mu.Lock()
			n.q.memberErr = err.Error()
			n.q.mu.Unlock()
		}
	}
	n.recoverAtBoot(ctx)
	defer n.endHandover()
	n.guardHandedLease()
	s := n.State()
	switch {
	case s.Operation != nil && s.Operation.Kind == OpRejoin:
		n.run.rename(OpRejoin)
		return n.rejoinLoop(ctx)
	case s.Role == state.RolePrimary && automatic(s):
		if rejoin := n.autoPrimary(ctx); rejoin {
			n.run.rename(OpRejoin)
			return n.rejoinLoop(ctx)
		}
	case s.Role == state.RolePrimary:
		if rejoin := n.bootPrimary(ctx); rejoin {
			n.run.rename(OpRejoin)
			return n.rejoinLoop(ctx)
		}
	case s.Role == state.RoleSecondary:
		if err := n.bootSecondary(ctx); err != nil {
			n.log.Error("could not start as a standby", "err", err)
		}
	default:
		if err := n.pg.StartPrimary(ctx, baseSettings(n.cfg.MaxSlotWALKeep), true); err != nil {
			n.log.Error("PostgreSQL did not start", "err", err)
		}
		if s.Role == state.RoleStandalone {
			n.takeVIP(ctx, false)
		} else {
			_ = n.vip.Release(ctx)
		}
	}
	n.recoverAfterStart(ctx)
	return nil
}

// bootSecondary trusts the state file: a secondary never starts
// read-write (StartStandby writes standby.signal if it is missing).
func (n *Node) bootSecondary(ctx context.Context) error {
	_ = n.vip.Release(ctx)
	return n.followAsStandby(ctx, memberOf(n.State().Cluster.Peer))
}

// bootPrimary asks the peer before opening for writes. It reports whether
// this node turned out stale and fenced itself (the caller rejoins).
func (n *Node) bootPrimary(ctx context.Context) (rejoin bool) {
	s := n.State()
	peer := memberOf(s.Cluster.Peer)
	since := time.Now()
	// A postmaster left running by a crashed tandemd was open for writes
	// all along; adopting it changes nothing, but the cluster IP still
	// waits for the peer's word.
	if n.pg.PostmasterRunning() {
		if err := n.pg.StartPrimary(ctx, n.primarySettingsFor(s, n.bootSyncOn(s)), false); err != nil {
			n.log.Error("could not adopt the running PostgreSQL", "err", err)
		}
	}
	logged := false
	for {
		hb, err := n.askPeer(ctx, peer, 2*time.Second)
		if err == nil {
			n.markHeard()
			if peerNewer(s, hb.Role, hb.Term) {
				n.log.Warn("the peer is primary in a newer term; this node is stale and rejoins as its standby", "peer_term", hb.Term, "term", s.Term)
				n.fence(ctx, hb.Term, fmt.Sprintf("on restart, %s was primary at term %d", peer.Name, hb.Term))
				return true
			}
			n.log.Info("the peer confirms this node is primary", "peer_role", hb.Role, "term", s.Term)
			n.openAsPrimary(ctx, s)
			return false
		}
		if n.reloaded() != nil {
			// A reload, not a restart: this process's predecessor was
			// primary until a moment ago and its PostgreSQL and cluster IP
			// never stopped. Carry on; the monitor keeps asking the peer.
			n.log.Info("reloaded as primary; the peer does not answer, carrying on as before", "peer", peer.Name, "err", err)
			n.openAsPrimary(ctx, s)
			return false
		}
		// Self-election rests on the cluster IP probe; with the DNS
		// endpoint there is nothing to probe (a name that still points
		// here says nothing: the peer's failover may not have reached
		// the DNS server), so such a node waits for its peer.
		selfElect := n.cfg.SelfElect && endpointOf(s.Cluster) != EndpointDNS
		if !logged {
			n.log.Warn("restarted as primary, but the peer does not answer; not opening for writes yet", "peer", peer.Name, "grace", n.cfg.PeerGrace, "self_elect", selfElect, "err", err)
			if n.cfg.SelfElect && !selfElect {
				n.log.Warn("rejoin.self_elect does not apply to a cluster whose endpoint is its DNS name (no cluster IP to probe): waiting for the peer", "peer", peer.Name)
			}
			logged = true
		}
		if selfElect && time.Since(since) >= n.cfg.PeerGrace && n.clusterIPFree(ctx, s) {
			n.log.Warn("peer silent for the whole grace and the cluster IP is free: resuming as primary", "grace", n.cfg.PeerGrace)
			n.openAsPrimary(ctx, s)
			return false
		}
		if !n.run.wait(ctx, time.Second) {
			return false
		}
	}
}

// peerNewer says whether the peer's answer makes a primary at s stale.
func peerNewer(s state.State, peerRole string, peerTerm int64) bool {
	return peerTerm > s.Term || (state.Role(peerRole) == state.RolePrimary && peerTerm >= s.Term)
}

// clusterIPFree probes the cluster IP; any doubt counts as taken.
func (n *Node) clusterIPFree(ctx context.Context, s state.State) bool {
	pfx, err := netip.ParsePrefix(s.Cluster.ClusterIP)
	if err != nil {
		return false
	}
	mac, inUse, err := n.vip.Probe(ctx, pfx)
	switch {
	case err != nil:
		n.log.Error("cannot probe the cluster IP", "err", err)
		return false
	case inUse:
		n.log.Warn("the cluster IP is answered by another host; staying closed", "mac", mac)
		return false
	}
	return true
}

func (n *Node) openAsPrimary(ctx context.Context, s state.State) {
	if err := n.pg.StartPrimary(ctx, n.primarySettingsFor(s, n.bootSyncOn(s)), false); err != nil {
		n.log.Error("PostgreSQL did not start", "err", err)
		return
	}
	n.takeVIP(ctx, false)
	n.startServices(ctx, s.Term)
}

// primarySettingsFor are a primary's settings in cluster s.
func (n *Node) primarySettingsFor(s state.State, syncOn bool) map[string]string {
	peer := ""
	if s.Cluster != nil && s.Cluster.Peer != nil {
		peer = s.Cluster.Peer.Name
	}
	return primarySettings(n.cfg.MaxSlotWALKeep, peer, syncOn)
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
