package cluster

import (
	"context"
	"time"

	"github.com/tandem-ha/tandem/internal/api"
	"github.com/tandem-ha/tandem/internal/quorum"
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
	return &info
}
