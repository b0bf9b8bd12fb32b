package cluster

import (
	"context"
	"time"

	"github.com/tandem-ha/tandem/internal/api"
	"github.com/tandem-ha/tandem/internal/quorum"
	"github.com/tandem-ha/tandem/internal/quorumspec"
	"github.com/tandem-ha/tandem/internal/state"
)

// quorumInfoEvery is how often the quorum's picture for status is taken
// (GET /v1/node and /health stay cheap: they copy the last one).
const quorumInfoEvery = time.Second

// runQuorumInfo keeps n.q.info current while the node is in automatic
// mode: whether the quorum answers, each member's health and which one
// leads etcd, the holder of the leader key, the sync record.
func (n *Node) runQuorumInfo(ctx context.Context) {
	for n.run.wait(ctx, quorumInfoEvery) {
		s := n.State()
		cli := n.quorumClient()
		if !automatic(s) || cli == nil {
			n.q.mu.Lock()
			n.q.info = nil
			if automatic(s) && n.q.memberErr != "" {
				// The quorum could not start here (boot logged why): say it
				// in status too, or the operator sees only silence.
				n.q.info = &api.QuorumInfo{External: s.Cluster.Quorum.External(), Prefix: s.Cluster.Quorum.Prefix, Error: "this node's quorum did not start: " + n.q.memberErr}
			}
			n.q.mu.Unlock()
			continue
		}
		info := &api.QuorumInfo{External: s.Cluster.Quorum.External(), Prefix: s.Cluster.Quorum.Prefix}
		qctx, cancel := context.WithTimeout(ctx, 800*time.Millisecond)
		h, held, err := quorum.CurrentHolder(qctx, cli, s.Cluster.Quorum.Prefix)
		if err != nil {
			info.Error = err.Error()
		} else {
			info.Reachable = true
			if held {
				info.Holder = h.Name
			}
			if sr, ok, err := quorum.ReadSync(qctx, cli, s.Cluster.Quorum.Prefix); err != nil {
				info.Error = err.Error()
			} else if ok {
				info.SyncRecord = sr.Sync
			}
		}
		cancel()
		if s.Cluster.Quorum.External() {
			info.Members = externalMembers(ctx, cli, *s.Cluster.Quorum)
		}
		for _, m := range s.Cluster.Quorum.Members {
			ms := api.QuorumMemberStatus{Name: m.Name}
			mctx, mcancel := context.WithTimeout(ctx, 500*time.Millisecond)
			st, err := cli.Status(mctx, "https://"+m.ClientAddr)
			mcancel()
			if err != nil {
				ms.Error = err.Error()
			} else {
				ms.Healthy = len(st.Errors) == 0
				ms.EtcdLeader = st.Leader == st.Header.MemberId
				if !ms.Healthy {
					ms.Error = st.Errors[0]
				}
			}
			info.Members = append(info.Members, ms)
		}
		n.q.mu.Lock()
		info.Eligible, info.Why = n.q.eligible, n.q.why
		n.q.info = info
		n.q.mu.Unlock()
		if s.Role == state.RolePrimary && !s.Cluster.Quorum.External() {
			n.keepEtcdLeaderOff(ctx, s, info)
		}
	}
}

// keepEtcdLeaderOff keeps the etcd leadership on the witness while it is
// healthy (else on the secondary), never on the primary: if the primary
// dies, the other two still have a leader, and its lease runs out on time
// rather than after an election and the lease extension every new etcd
// leader grants. And the witness's own death, which does cost an election,
// is carried by failsafe (auto_failsafe.go): the pair is whole.
func (n *Node) keepEtcdLeaderOff(ctx context.Context, s state.State, info *api.QuorumInfo) {
	leader, healthy := "", map[string]bool{}
	for _, ms := range info.Members {
		healthy[ms.Name] = ms.Healthy
		if ms.EtcdLeader {
			leader = ms.Name
		}
	}
	witness := ""
	for _, m := range s.Cluster.Quorum.Members {
		if m.Name != n.cfg.Name && m.Name != s.Cluster.Peer.Name {
			witness = m.Name
		}
	}
	to := ""
	switch {
	case etcdLeaderOnPrimary():
		if leader == "" || leader == n.cfg.Name {
			return
		}
		to = n.cfg.Name
	case leader == "" || leader == witness:
		return
	case healthy[witness]:
		to = witness
	case leader == n.cfg.Name && healthy[s.Cluster.Peer.Name]:
		to = s.Cluster.Peer.Name
	default:
		return
	}
	var leaderAddr string
	for _, m := range s.Cluster.Quorum.Members {
		if m.Name == leader {
			leaderAddr = m.ClientAddr
		}
	}
	cli := n.quorumClient()
	if cli == nil || leaderAddr == "" {
		return
	}
	mctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	cfg := n.quorumClientConfig(s)
	cfg.Endpoints = []string{"https://" + leaderAddr}
	if moved, err := quorum.MoveLeader(mctx, cli, cfg, to); err != nil {
		n.log.Warn("could not move the etcd leadership", "from", leader, "to", to, "err", err)
	} else if moved {
		n.log.Info("etcd leadership moved", "from", leader, "to", to)
	}
}

// quorumClientConfig is how this node reaches the quorum of s.
func (n *Node) quorumClientConfig(s state.State) quorum.ClientConfig {
	var trusted [][]byte
	for _, m := range s.Cluster.Quorum.Members {
		trusted = append(trusted, []byte(m.CertPEM))
	}
	return quorum.ClientConfig{Endpoints: quorumspec.Endpoints(*s.Cluster.Quorum), CertPEM: n.cfg.CertPEM, KeyPEM: n.cfg.KeyPEM, TrustedPEM: trusted, DialTimeout: time.Second}
}

// quorumInfo is the last picture, with the fence deadline as of now.
func (n *Node) quorumInfo() *api.QuorumInfo {
	n.q.mu.Lock()
	defer n.q.mu.Unlock()
	if n.q.info == nil {
		return nil
	}
	info := *n.q.info
	info.Members = append([]api.QuorumMemberStatus(nil), n.q.info.Members...)
	if n.q.lead != nil {
		info.FenceInMS = time.Until(n.q.lead.Deadline()).Milliseconds()
	}
	if n.q.fenced {
		info.Error = "this node fenced itself: " + n.q.fenceReason
	}
	info.Failsafe = n.q.failsafe
	info.Watchdog = n.watchdogInfo()
	return &info
}
