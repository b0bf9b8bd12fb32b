package cluster

import (
	"context"
	"net/http"
	"time"

	"github.com/tandem-ha/tandem/internal/api"
)

// Peer is what the cluster logic asks of the other node, over the peer
// API (mutual TLS with the pinned certificates). It is an interface so
// the decisions can be unit-tested with a fake peer.
type Peer interface {
	Heartbeat(ctx context.Context) (api.Heartbeat, error)
	Promote(ctx context.Context, req api.PromoteRequest) (api.PromoteResult, error)
	Leave(ctx context.Context) error
	RecreateSlot(ctx context.Context) error
	PeerEvent(ctx context.Context, e api.PeerEvent) error
	// PeerMaintenance hands the peer a maintenance switch (maintenance.go).
	PeerMaintenance(ctx context.Context, m api.MaintenanceInfo) (api.MaintenanceInfo, error)
	// TakeClusterIP hands a switchover's new primary the cluster IP.
	TakeClusterIP(ctx context.Context, term int64) error
	// PreparePromotion tells the secondary a switchover to term has begun.
	PreparePromotion(ctx context.Context, term int64) error
}

// peer returns the peer API of member (a fake one in unit tests).
func (n *Node) peer(m *api.Member) Peer {
	if n.peerFor != nil {
		return n.peerFor(m)
	}
	return peerCalls{n.peerOf(m)}
}

// peerCalls are the peer routes over the node's client for the peer.
type peerCalls struct{ c *peerClient }

func (p peerCalls) Heartbeat(ctx context.Context) (api.Heartbeat, error) {
	var hb api.Heartbeat
	err := p.c.do(ctx, http.MethodGet, "/v1/peer/heartbeat", nil, &hb)
	return hb, err
}

func (p peerCalls) Promote(ctx context.Context, req api.PromoteRequest) (api.PromoteResult, error) {
	var pr api.PromoteResult
	err := p.c.do(ctx, http.MethodPost, "/v1/peer/promote", req, &pr)
	return pr, err
}

func (p peerCalls) Leave(ctx context.Context) error {
	return p.c.do(ctx, http.MethodPost, "/v1/peer/leave", nil, nil)
}

func (p peerCalls) RecreateSlot(ctx context.Context) error {
	return p.c.do(ctx, http.MethodPost, "/v1/peer/reseed", nil, nil)
}

func (p peerCalls) PeerEvent(ctx context.Context, e api.PeerEvent) error {
	return p.c.do(ctx, http.MethodPost, "/v1/peer/event", e, nil)
}

func (p peerCalls) PeerMaintenance(ctx context.Context, m api.MaintenanceInfo) (api.MaintenanceInfo, error) {
	var got api.MaintenanceInfo
	err := p.c.do(ctx, http.MethodPost, "/v1/peer/maintenance", m, &got)
	return got, err
}

func (p peerCalls) TakeClusterIP(ctx context.Context, term int64) error {
	return p.c.do(ctx, http.MethodPost, "/v1/peer/cluster-ip", api.ClusterIPHandoff{Term: term}, nil)
}

func (p peerCalls) PreparePromotion(ctx context.Context, term int64) error {
	return p.c.do(ctx, http.MethodPost, "/v1/peer/prepare-promotion", api.PromotionPrepare{Term: term}, nil)
}

// askPeer sends the peer a heartbeat, bounded by timeout.
func (n *Node) askPeer(ctx context.Context, peer *api.Member, timeout time.Duration) (api.Heartbeat, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return n.peer(peer).Heartbeat(ctx)
}
