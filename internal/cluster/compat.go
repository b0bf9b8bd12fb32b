package cluster

import (
	"net/http"

	"github.com/tandem-ha/tandem/internal/api"
	"github.com/tandem-ha/tandem/internal/version"
)

// peerCompatible refuses an operation that changes both nodes when the
// peer's tandemd speaks a protocol this one does not work with
// (version.Compatible): the two could disagree on a step halfway through.
// It is checked on the heartbeat every such operation asks first, before
// anything changes. The steady state (replication, heartbeats, failsafe,
// automatic failover) goes on regardless, and `tandem upgrade` is never
// refused: it is how the pair becomes compatible again.
func (n *Node) peerCompatible(peer string, hb api.Heartbeat) error {
	if version.Compatible(hb.Protocol) {
		return nil
	}
	return api.Errorf(http.StatusConflict, api.CodeIncompatible,
		"%s runs tandem %s (protocol %d) and %s runs tandem %s (protocol %d): tandem nodes work together only at most one protocol apart, so this operation is refused and nothing was changed; upgrade the older node first (tandem upgrade --version …)",
		peer, hb.Version, hb.Protocol, n.cfg.Name, version.Version, version.ProtocolLevel())
}
