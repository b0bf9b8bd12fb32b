package cluster

import (
	"context"
	"net/http"
	"time"

	"github.com/tandem-ha/tandem/internal/api"
)

// askPeer sends the peer a heartbeat, bounded by timeout.
func (n *Node) askPeer(ctx context.Context, peer *api.Member, timeout time.Duration) (api.Heartbeat, error) {
	p := n.peerOf(peer)
	defer p.close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var hb api.Heartbeat
	err := p.do(ctx, http.MethodGet, "/v1/peer/heartbeat", nil, &hb)
	return hb, err
}
