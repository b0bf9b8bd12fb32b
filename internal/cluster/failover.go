package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/tandem-ha/tandem/internal/api"
	"github.com/tandem-ha/tandem/internal/quorum"
	"github.com/tandem-ha/tandem/internal/state"
)

// OpFailover makes the secondary primary because the primary is gone. Its
// one journaled step is the promotion's (promote:promote).
const OpFailover state.OpKind = "failover"

// Event kinds of a failover.
const (
	EventFailoverStarted  = "failover_started"
	EventFailoverFinished = "failover_finished"
	EventFailoverFailed   = "failover_failed"
)

// peerSilentAfter: a primary the monitor's heartbeats have not reached for
// this long (two of its one-second ticks, each with a two-second timeout)
// counts as silent on the link between the nodes without a fresh ask.
const peerSilentAfter = 3 * time.Second

// peerAskTimeout bounds the fresh ask: the peer client keeps its TLS
// connection alive, so a live peer answers within one round trip on the
// cluster subnet.
const peerAskTimeout = 500 * time.Millisecond

var errNotAsked = errors.New("not asked")

// Failover makes this secondary the primary because the primary is gone.
// The console has already checked every path it has to the primary; this
// node checks its own (unless Force), then probes the cluster IP — which
// no flag skips, since an answer there means a primary is still alive —
// promotes, bumps the term and takes the cluster IP. The cluster is then
// degraded until the old primary rejoins, which it does by itself.
func (n *Node) Failover(ctx context.Context, req api.FailoverRequest) (api.FailoverResult, error) {
	return runOp(n, ctx, OpFailover, byConsole, func(ctx context.Context, _ func(api.FailoverResult, error)) (api.FailoverResult, error) {
		return n.failover(ctx, req)
	})
}

func (n *Node) failover(ctx context.Context, req api.FailoverRequest) (api.FailoverResult, error) {
	start := time.Now()
	st := n.newSteps()
	s := n.State()
	if s.Role != state.RoleSecondary || s.Cluster == nil || s.Cluster.Peer == nil {
		return api.FailoverResult{}, conflict("%s is not the secondary of a cluster (role %s); failover is sent to the secondary", n.cfg.Name, s.Role)
	}
	if m := maintenanceOf(s); m != nil {
		// Its justification is that the primary is dead; in maintenance
		// it is most often stopped on purpose (maintenance.go).
		return api.FailoverResult{}, refusedInMaintenance(m, "failover", "In maintenance a primary that does not answer may be stopped on purpose; `tandem maintenance off` first (in automatic mode the secondary then fails over by itself if the primary's key is vacant)")
	}
	if err := n.noPendingJournal(s); err != nil {
		return api.FailoverResult{}, err
	}
	peer := memberOf(s.Cluster.Peer)
	if automatic(s) {
		if err := n.quorumAllowsFailover(ctx, s, peer.Name, req.Force); err != nil {
			return api.FailoverResult{}, err
		}
		st.mark("quorum: leader key vacant")
	}
	// A cluster whose endpoint is its DNS name has no shared address to
	// probe (the nodes are in different subnets): the peer link (and, in
	// automatic mode, the quorum) decides alone there.
	dnsEndpoint := endpointOf(s.Cluster) == EndpointDNS
	prefix, err := netip.ParsePrefix(s.Cluster.ClusterIP)
	if err != nil && !dnsEndpoint {
		return api.FailoverResult{}, err
	}
	// Two paths of this node's own, looked at together so that their
	// bounds do not add up: the peers' link, asked afresh when the monitor
	// heard the primary less than peerSilentAfter ago (past that, the
	// heartbeats of that whole time failed, and one more ask would only
	// add its timeout to the outage), and the cluster IP, probed by ARP or
	// NDP whatever the flags, since an answer there means a primary is
	// still alive.
	var (
		wg       sync.WaitGroup
		hb       api.Heartbeat
		hbErr    error = errNotAsked
		mac      string
		inUse    bool
		probeErr error
	)
	if ago := n.heardAgo(); !req.Force && ago >= 0 && ago < peerSilentAfter {
		wg.Go(func() { hb, hbErr = n.askPeer(ctx, peer, peerAskTimeout) })
	}
	if !dnsEndpoint {
		wg.Go(func() { mac, inUse, probeErr = n.vip.Probe(ctx, prefix) })
	}
	wg.Wait()
	if hbErr == nil {
		return api.FailoverResult{}, conflict("the primary %s answers %s on the link between the nodes (role %s, term %d, PostgreSQL %s): failover refused. For a planned change use switchover", peer.Name, n.cfg.Name, hb.Role, hb.Term, hb.Postgres)
	}
	if probeErr != nil {
		return api.FailoverResult{}, unavailable("cannot probe the cluster IP %s: %v; failover refused", prefix.Addr(), probeErr)
	} else if inUse {
		return api.FailoverResult{}, conflict("the cluster IP %s is still answered by %s (ARP/NDP probe from %s): a primary may be alive; failover refused", prefix.Addr(), mac, n.cfg.Name)
	}
	if dnsEndpoint {
		st.mark("primary silent (DNS endpoint: no cluster IP to probe)")
	} else {
		st.mark("primary silent, cluster IP probed free")
	}
	newTerm := s.Term + 1
	n.log.Warn("failover", "op", OpFailover, "from", peer.Name, "term", newTerm, "force", req.Force)
	var lead *quorum.Leadership
	if automatic(s) {
		l, err := n.takeKeyFor(ctx, s, newTerm, 5*time.Second)
		if err != nil {
			return api.FailoverResult{}, err
		}
		lead = l
		n.holdLeadership(l)
		st.mark("leader key taken")
	}
	if err := n.becomePrimary(ctx, newTerm, false, st, nil); err != nil {
		if lead != nil {
			_ = lead.Resign(context.WithoutCancel(ctx))
		}
		n.event(ctx, EventFailoverFailed, n.cfg.Name, fmt.Sprintf("failover to %s failed, %s stays secondary at term %d: %v", n.cfg.Name, n.cfg.Name, s.Term, err))
		return api.FailoverResult{}, err
	}
	took := time.Since(start).Round(time.Millisecond)
	forced := ""
	if req.Force {
		forced = " with --force"
	}
	n.run.goAttach(func(ctx context.Context) {
		n.event(ctx, EventFailoverStarted, n.cfg.Name, fmt.Sprintf("failover from %s to %s started (term %d → %d)%s", peer.Name, n.cfg.Name, s.Term, newTerm, forced))
		n.afterPromotion(ctx, newTerm, "failover")
		n.event(ctx, EventFailoverFinished, n.cfg.Name, fmt.Sprintf("failover finished in %s: %s is primary at term %d; the cluster is degraded until %s rejoins", took, n.cfg.Name, newTerm, peer.Name))
	})
	return api.FailoverResult{Primary: n.cfg.Name, Term: newTerm, Took: took.String(), Steps: st.list}, nil
}

// quorumAllowsFailover is the quorum's check before a manual failover in
// automatic mode: refused while the primary holds the leader key (its
// lease proves it alive and in touch with the quorum). With force, its
// lease is revoked instead; the primary fences itself at its next renewal,
// and this waits out the longest that can take (one lease TTL) before the
// failover goes on.
func (n *Node) quorumAllowsFailover(ctx context.Context, s state.State, peer string, force bool) error {
	cli := n.quorumClient()
	if cli == nil {
		return unavailable("the quorum is not running on %s; in automatic mode a failover needs it", n.cfg.Name)
	}
	qctx, cancel := context.WithTimeout(ctx, quorumCall)
	defer cancel()
	h, held, err := quorum.CurrentHolder(qctx, cli, s.Cluster.Quorum.Prefix)
	if err != nil {
		return unavailable("the quorum does not answer %s (%v): in automatic mode a failover needs it to take the leader key; failover refused", n.cfg.Name, err)
	}
	if !held {
		return nil
	}
	if !force {
		return conflict("the primary %s holds the leader lease: it is alive and in touch with the quorum, so failover is refused. For a planned change use switchover; --force revokes its lease (it fences itself) and then promotes %s", h.Name, n.cfg.Name)
	}
	if _, err := cli.Revoke(qctx, h.Lease); err != nil {
		return unavailable("could not revoke the lease of %s: %v; failover refused", h.Name, err)
	}
	ttl := n.cfg.Lease.TTL
	if ttl <= 0 {
		ttl = quorum.DefaultLeaseConfig.TTL
	}
	n.log.Warn("forced failover: the primary's lease is revoked; waiting for it to fence itself", "holder", h.Name, "wait", ttl)
	if !n.run.wait(ctx, ttl) {
		return errStopping(n.cfg.Name)
	}
	return nil
}
