package cluster

import (
	"context"
	"time"

	"github.com/tandem-ha/tandem/internal/api"
	"github.com/tandem-ha/tandem/internal/quorum"
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
			n.q.mu.Unlock()
			continue
		}
		info := &api.QuorumInfo{}
		qctx, cancel := context.WithTimeout(ctx, 800*time.Millisecond)
		h, held, err := quorum.CurrentHolder(qctx, cli, s.Cluster.Quorum.Prefix)
		if err != nil {
			info.Error = err.Error()
		} else {
			info.Reachable = true
			if held {
				info.Holder = h.Name
			}
			if sr, ok, err := quorum.ReadSync(qctx, cli, s.Cluster.Quorum.Prefix); err == nil && ok {
				info.SyncRecord = sr.Sync
			}
		}
		cancel()
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
		if s.Role == state.RolePrimary {
			n.keepEtcdLeaderOff(ctx, s, info)
		}
	}
}

// keepEtcdLeaderOff moves the etcd leadership away from the primary's own
// member, to the witness (or the secondary when the witness is down): if
// the primary then dies, the other two still have a leader, and the lease
// runs out on time rather than after an election (and the lease extension
// every new etcd leader grants).
func (n *Node) keepEtcdLeaderOff(ctx context.Context, s state.State, info *api.QuorumInfo) {
	n.q.mu.Lock()
	m := n.q.member
	n.q.mu.Unlock()
	if m == nil || !m.IsRaftLeader() {
		return
	}
	to := ""
	for _, ms := range info.Members {
		switch {
		case ms.Name == n.cfg.Name || !ms.Healthy:
		case ms.Name != s.Cluster.Peer.Name:
			to = ms.Name // the witness first
		case to == "":
			to = ms.Name
		}
	}
	if to == "" {
		return
	}
	mctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if moved, err := m.HandLeadershipTo(mctx, to); err != nil {
		n.log.Warn("could not move the etcd leadership off the primary", "to", to, "err", err)
	} else if moved {
		n.log.Info("etcd leadership moved off the primary", "to", to)
	}
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
	info.Watchdog = n.watchdogInfo()
	return &info
}
