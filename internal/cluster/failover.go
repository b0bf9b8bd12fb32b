package cluster

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"time"

	"github.com/tandem-ha/tandem/internal/api"
	"github.com/tandem-ha/tandem/internal/state"
)

// Failover makes this secondary the primary because the primary is gone.
// The console has already checked every path it has to the primary; this
// node checks its own (unless Force), then probes the cluster IP — which
// no flag skips, since an answer there means a primary is still alive —
// promotes, bumps the term and takes the cluster IP. The cluster is then
// degraded until the old primary rejoins, which it does by itself.
func (n *Node) Failover(ctx context.Context, req api.FailoverRequest) (res api.FailoverResult, err error) {
	start := time.Now()
	defer func() { n.ops.record(OpFailover, err, time.Since(start)) }()
	st := newSteps()
	if !n.opMu.TryLock() {
		return api.FailoverResult{}, conflict("another operation is in progress on %s", n.cfg.Name)
	}
	defer n.opMu.Unlock()
	s := n.State()
	if s.Role != state.RoleSecondary || s.Cluster == nil || s.Cluster.Peer == nil {
		return api.FailoverResult{}, conflict("%s is not the secondary of a cluster (role %s); failover is sent to the secondary", n.cfg.Name, s.Role)
	}
	peer := memberOf(s.Cluster.Peer)
	// The monitor asks the peer every second; when it has not heard from
	// it for a while, the primary is silent as far as this node can tell,
	// and a fresh check would only add its timeout to the outage.
	if ago := n.heardAgo(); !req.Force && ago >= 0 && ago < 3*time.Second {
		p := n.peerOf(peer)
		var hb api.Heartbeat
		hctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		err := p.do(hctx, http.MethodGet, "/v1/peer/heartbeat", nil, &hb)
		cancel()
		p.close()
		if err == nil {
			return api.FailoverResult{}, conflict("the primary %s answers %s (role %s, term %d, PostgreSQL %s): failover refused. For a planned change use switchover", peer.Name, n.cfg.Name, hb.Role, hb.Term, hb.Postgres)
		}
	}
	st.mark("primary silent")
	prefix, err := netip.ParsePrefix(s.Cluster.ClusterIP)
	if err != nil {
		return api.FailoverResult{}, err
	}
	if mac, inUse, err := n.vip.Probe(ctx, prefix); err != nil {
		return api.FailoverResult{}, unavailable("cannot probe the cluster IP %s: %v; failover refused", prefix.Addr(), err)
	} else if inUse {
		return api.FailoverResult{}, conflict("the cluster IP %s is still answered by %s: a primary may be alive; failover refused", prefix.Addr(), mac)
	}
	st.mark("cluster IP probed free")
	newTerm := s.Term + 1
	n.log.Warn("failover", "op", OpFailover, "from", peer.Name, "term", newTerm, "force", req.Force)
	if err := n.becomePrimary(ctx, newTerm, true, st); err != nil {
		return api.FailoverResult{}, err
	}
	took := time.Since(start).Round(time.Millisecond)
	go func() {
		bg := context.WithoutCancel(ctx)
		n.event(bg, EventFailoverStarted, n.cfg.Name, fmt.Sprintf("failover from %s to %s started (term %d → %d)%s", peer.Name, n.cfg.Name, s.Term, newTerm, map[bool]string{true: " with --force", false: ""}[req.Force]))
		n.afterPromotion(bg, newTerm, "failover")
		n.event(bg, EventFailoverFinished, n.cfg.Name, fmt.Sprintf("failover finished in %s: %s is primary at term %d; the cluster is degraded until %s rejoins", took, n.cfg.Name, newTerm, peer.Name))
	}()
	return api.FailoverResult{Primary: n.cfg.Name, Term: newTerm, Took: took.String(), Steps: st.list}, nil
}
