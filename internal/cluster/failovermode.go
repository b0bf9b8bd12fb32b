package cluster

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/tandem-ha/tandem/internal/api"
	"github.com/tandem-ha/tandem/internal/state"
)

// OpFailoverMode changes a running cluster's failover mode (not
// journaled: each step leaves a consistent pair, see below).
const OpFailoverMode state.OpKind = "failover-mode"

// EventFailoverMode records a change of mode.
const EventFailoverMode = "failover_mode_changed"

// SetFailoverMode changes the failover mode of the running cluster, on
// the primary, with the secondary answering. The order keeps the rule
// "only the holder of the key may be primary, and a secondary promotes by
// itself only while the key is held by nobody":
//
//   - to automatic: this primary starts its member, takes the key (with the
//     witness, already given the quorum by the console, that is a
//     majority) and records itself primary; only then the secondary starts
//     its member and its watch, so it never sees a vacant key it could take;
//   - to manual: the secondary first stops watching and leaves the quorum;
//     then this primary marks the quorum retired (no secondary may promote
//     from it), resigns and stops its member.
//
// Both nodes must answer; otherwise nothing changes.
func (n *Node) SetFailoverMode(ctx context.Context, req api.FailoverModeRequest) (api.FailoverModeResult, error) {
	return runOp(n, ctx, OpFailoverMode, byConsole, func(ctx context.Context, _ func(api.FailoverModeResult, error)) (api.FailoverModeResult, error) {
		return n.setFailoverMode(ctx, req)
	})
}

func (n *Node) setFailoverMode(ctx context.Context, req api.FailoverModeRequest) (api.FailoverModeResult, error) {
	s := n.State()
	if s.Role != state.RolePrimary || s.Cluster == nil || s.Cluster.Peer == nil {
		return api.FailoverModeResult{}, conflict("%s is not the primary of a cluster (role %s); send the change to the primary", n.cfg.Name, s.Role)
	}
	if err := n.noPendingJournal(s); err != nil {
		return api.FailoverModeResult{}, err
	}
	cur := s.Cluster.Failover
	if cur == "" {
		cur = FailoverManual
	}
	res := api.FailoverModeResult{Failover: req.Failover}
	switch req.Failover {
	case FailoverManual, FailoverAutomatic:
	default:
		return res, badRequest("failover mode %q must be manual or automatic", req.Failover)
	}
	if req.Failover == cur {
		res.Primary, res.Secondary = "already "+cur, "already "+cur
		return res, nil
	}
	peer := memberOf(s.Cluster.Peer)
	hb, err := n.askPeer(ctx, peer, 3*time.Second)
	if err != nil {
		return res, unavailable("the secondary %s does not answer (%v): the mode changes on both nodes together; nothing was changed", peer.Name, err)
	}
	if err := n.peerCompatible(peer.Name, hb); err != nil {
		return res, err
	}
	if state.Role(hb.Role) != state.RoleSecondary || hb.Term != s.Term || hb.Operation != "" {
		return res, conflict("the secondary %s is not ready (role %s, term %d, operation %q); nothing was changed", peer.Name, hb.Role, hb.Term, hb.Operation)
	}
	pc := n.peerOf(peer)
	switch req.Failover {
	case FailoverAutomatic:
		if req.Quorum == nil {
			return res, badRequest("automatic failover needs a quorum: give a witness or an external etcd")
		}
		if err := n.checkQuorumMembers(ctx, *req.Quorum, n.self(""), *peer); err != nil {
			return res, err
		}
		if err := n.startQuorum(*req.Quorum); err != nil {
			return res, err
		}
		with := s.Clone()
		with.Cluster.Failover, with.Cluster.Quorum = FailoverAutomatic, req.Quorum
		l, err := n.takeKeyFor(ctx, with, s.Term, 30*time.Second)
		if err != nil {
			n.closeQuorum(true, true)
			return res, fmt.Errorf("the quorum did not form (is the witness up and given this cluster, or the external etcd up?); nothing was changed: %w", err)
		}
		if err := n.set(func(st *state.State) { st.Cluster.Failover, st.Cluster.Quorum = FailoverAutomatic, req.Quorum }); err != nil {
			_ = l.Resign(context.WithoutCancel(ctx))
			n.closeQuorum(false, true)
			return res, err
		}
		n.holdLeadership(l)
		res.Primary = n.cfg.Name + " holds the leader key"
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err = pc.do(pctx, http.MethodPost, "/v1/peer/failover-mode", api.FailoverModeRequest{Failover: FailoverAutomatic, Quorum: req.Quorum, Term: s.Term}, nil)
		cancel()
		if err != nil {
			// Back to manual here too; the secondary never started watching.
			n.retireQuorum(ctx)
			_ = n.set(func(st *state.State) { st.Cluster.Failover, st.Cluster.Quorum, st.Lease = FailoverManual, nil, 0 })
			return res, fmt.Errorf("the secondary %s did not take the quorum (%w); %s is back in manual mode", peer.Name, err, n.cfg.Name)
		}
		res.Secondary = peer.Name + " watches the leader key"
	case FailoverManual:
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := pc.do(pctx, http.MethodPost, "/v1/peer/failover-mode", api.FailoverModeRequest{Failover: FailoverManual, Term: s.Term}, nil)
		cancel()
		if err != nil {
			return res, fmt.Errorf("the secondary %s did not leave the quorum (%w); nothing was changed", peer.Name, err)
		}
		res.Secondary = peer.Name + " left the quorum"
		n.retireQuorum(ctx)
		if err := n.set(func(st *state.State) { st.Cluster.Failover, st.Cluster.Quorum, st.Lease = FailoverManual, nil, 0 }); err != nil {
			return res, err
		}
		res.Primary = n.cfg.Name + " left the quorum"
	}
	n.event(ctx, EventFailoverMode, n.cfg.Name, fmt.Sprintf("failover mode of %s changed from %s to %s", s.Cluster.Name, cur, req.Failover))
	return res, nil
}

// PeerFailoverMode is the secondary's side of a change of mode.
func (n *Node) PeerFailoverMode(ctx context.Context, req api.FailoverModeRequest) error {
	_, err := runOp(n, ctx, OpFailoverMode, byPeer, func(ctx context.Context, _ func(struct{}, error)) (struct{}, error) {
		s := n.State()
		if s.Role != state.RoleSecondary || s.Cluster == nil || s.Cluster.Peer == nil {
			return struct{}{}, conflict("%s is not a secondary (role %s)", n.cfg.Name, s.Role)
		}
		if req.Term != s.Term {
			return struct{}{}, conflict("a change of mode at term %d asked, but %s is at term %d", req.Term, n.cfg.Name, s.Term)
		}
		switch req.Failover {
		case FailoverAutomatic:
			if req.Quorum == nil {
				return struct{}{}, badRequest("automatic failover needs a quorum")
			}
			if err := n.checkQuorumMembers(ctx, *req.Quorum, *memberOf(s.Cluster.Peer), n.self("")); err != nil {
				return struct{}{}, err
			}
			if err := n.startQuorum(*req.Quorum); err != nil {
				return struct{}{}, err
			}
			return struct{}{}, n.set(func(st *state.State) { st.Cluster.Failover, st.Cluster.Quorum = FailoverAutomatic, req.Quorum })
		case FailoverManual:
			// The mode first, so the watch idles, then the member goes.
			if err := n.set(func(st *state.State) { st.Cluster.Failover, st.Cluster.Quorum = FailoverManual, nil }); err != nil {
				return struct{}{}, err
			}
			n.closeQuorum(false, true)
			return struct{}{}, nil
		}
		return struct{}{}, badRequest("failover mode %q must be manual or automatic", req.Failover)
	})
	return err
}
