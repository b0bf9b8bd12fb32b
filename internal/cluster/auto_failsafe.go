package cluster

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/tandem-ha/tandem/internal/api"
	"github.com/tandem-ha/tandem/internal/quorum"
	"github.com/tandem-ha/tandem/internal/state"
)

// Failsafe (Patroni's failsafe_mode): while etcd does not answer the
// primary but the pair is whole, the primary stays primary only while its
// secondary promises, over the peer API, that it streams from it and will
// not take the leader key. Without it an etcd election (the witness, or
// whichever member led etcd, going away) or a short etcd outage would
// fence a healthy primary: its deadline (1.48 s after the last renewal
// sent) is shorter than an election (1–2 s with etcd's 1 s election
// timeout).
//
// The promise lasts failsafeWindow from when the secondary answered; the
// primary counts it like a lease renewal sent when it asked, so its
// deadline ends before the promise does. The secondary waits its promises
// out before it takes the key (except for the switchover the primary
// itself asks for), and gives none while it is taking the key.

// failsafeWindow is how long a promise lasts: one lease TTL.
const failsafeWindow = 2 * time.Second

// failsafeAfter: the primary asks once no renewal has succeeded for this
// long past its usual interval.
const failsafeAfter = 300 * time.Millisecond

// Failsafe is the secondary's promise to its primary.
func (n *Node) Failsafe(ctx context.Context, req api.FailsafeRequest) (api.FailsafeResult, error) {
	s := n.State()
	switch {
	case !automatic(s):
		return api.FailsafeResult{}, conflict("%s is not in automatic failover mode", n.cfg.Name)
	case s.Role != state.RoleSecondary:
		return api.FailsafeResult{}, conflict("%s is not a secondary (role %s): it promises nothing", n.cfg.Name, s.Role)
	case req.Term != s.Term:
		return api.FailsafeResult{}, conflict("a promise for term %d asked, but %s is at term %d", req.Term, n.cfg.Name, s.Term)
	}
	status, err := n.receiverStatus(ctx)
	if err != nil {
		return api.FailsafeResult{}, err
	}
	if status != "streaming" {
		return api.FailsafeResult{}, conflict("%s does not stream from its primary (WAL receiver %s): no promise", n.cfg.Name, status)
	}
	n.q.mu.Lock()
	defer n.q.mu.Unlock()
	if n.q.campaigning {
		return api.FailsafeResult{}, conflict("%s is taking the leader key: no promise", n.cfg.Name)
	}
	if until := time.Now().Add(failsafeWindow); until.After(n.q.promiseUntil) {
		n.q.promiseUntil = until
	}
	return api.FailsafeResult{WindowMS: failsafeWindow.Milliseconds()}, nil
}

// beginCampaign waits until no promise of this secondary is in force, and
// from then on gives none until endCampaign; honour false skips the wait
// (a switchover: the primary itself asks this node to take over).
func (n *Node) beginCampaign(ctx context.Context, honour bool) error {
	for {
		n.q.mu.Lock()
		wait := time.Until(n.q.promiseUntil)
		if !honour || wait <= 0 {
			n.q.campaigning = true
			n.q.mu.Unlock()
			return nil
		}
		n.q.mu.Unlock()
		n.log.Info("waiting out the failsafe promise given to the primary before taking the key", "for", wait.Round(time.Millisecond))
		if !n.run.wait(ctx, wait) {
			return ctx.Err()
		}
	}
}

func (n *Node) endCampaign() {
	n.q.mu.Lock()
	n.q.campaigning = false
	n.q.mu.Unlock()
}

// keepByFailsafe runs on the primary for tenure l: while renewals fail, it
// asks the secondary for its promise and counts each one. When the tenure
// took the key back under a new lease (its lease expired while promises
// kept it: quorum's retake), it remembers the new lease, as holdLeadership
// does, for a restart of tandemd to resume.
func (n *Node) keepByFailsafe(ctx context.Context, l *quorum.Leadership, renewEvery time.Duration) {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	kept := false
	lease := l.LeaseID()
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.run.stopping: // shutdown or reload: not a reason to hold Stop for its grace
			return
		case <-l.Lost():
			return
		case <-t.C:
		}
		if now := l.LeaseID(); now != lease && l.Held() {
			old := lease
			lease = now
			if err := n.set(func(s *state.State) { s.Lease = int64(now) }); err != nil {
				n.log.Error("could not remember the leader lease taken back", "err", err)
			}
			msg := fmt.Sprintf("%s's leader lease (%x) expired while its secondary's failsafe promise kept it the only primary; it took the vacant key back under lease %x and stays primary, with no fence and no failover", n.cfg.Name, int64(old), int64(now))
			// Off this loop: the history may be slow, the promises may not.
			n.run.goAttach(func(ctx context.Context) { n.event(ctx, EventLeaseRetaken, n.cfg.Name, msg) })
		}
		if time.Since(l.LastRenewal()) < renewEvery+failsafeAfter {
			if kept {
				n.log.Info("failsafe over: the leader lease is renewed again")
				n.setFailsafe(false)
			}
			kept = false
			continue
		}
		s := n.State()
		if s.Role != state.RolePrimary || s.Cluster == nil || s.Cluster.Peer == nil {
			continue
		}
		sent := time.Now()
		actx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		var res api.FailsafeResult
		err := n.peerOf(memberOf(s.Cluster.Peer)).do(actx, http.MethodPost, "/v1/peer/failsafe", api.FailsafeRequest{Term: s.Term}, &res)
		cancel()
		if err != nil {
			if kept {
				n.log.Warn("failsafe: the secondary gives no promise any more; fencing at the deadline unless a renewal succeeds", "err", err)
				n.setFailsafe(false)
			}
			kept = false
			continue
		}
		l.KeptBy(sent, time.Duration(res.WindowMS)*time.Millisecond)
		if !kept {
			n.log.Warn("failsafe: etcd does not renew the lease; this primary is kept by its secondary's promise not to take over", "since_renewal", time.Since(l.LastRenewal()).Round(time.Millisecond))
			n.setFailsafe(true)
		}
		kept = true
	}
}

func (n *Node) setFailsafe(on bool) {
	n.q.mu.Lock()
	n.q.failsafe = on
	n.q.mu.Unlock()
}
