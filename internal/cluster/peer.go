package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/tandem-ha/tandem/internal/api"
)

// peerClient calls the other node's API. The server's certificate must
// have the pinned fingerprint; the client presents this node's own
// certificate (mutual TLS) and, while joining, the peer's admin token.
type peerClient struct {
	c      *api.Client
	shared bool // the node's cached client: close leaves its connections open
}

func newAPIClient(addr, fingerprint, token string, cert tls.Certificate, alsoAccept ...string) *api.Client {
	return api.NewClient(api.ClientConfig{
		Addr:        addr,
		Token:       token,
		Fingerprint: fingerprint,
		AlsoAccept:  alsoAccept,
		Cert:        &cert,
		// A heartbeat has two seconds; a dead peer must fail it, not hang.
		DialTimeout:      2 * time.Second,
		HandshakeTimeout: 3 * time.Second,
		TCPKeepAlive:     5 * time.Second,
	})
}

// newPeerClient is a one-off client, closed after use: the assembly's
// calls to the secondary with its admin token.
func newPeerClient(addr, fingerprint, token string, cert tls.Certificate) *peerClient {
	return &peerClient{c: newAPIClient(addr, fingerprint, token, cert)}
}

// peerClients keeps the node's one client to its peer for the node's
// lifetime, so the heartbeat every second reuses a kept-alive TLS
// connection instead of a new handshake. It is rebuilt only when the
// peer's address or pinned certificates change, or this node's own
// certificate does (a rotation: connections made with the old one go).
type peerClients struct {
	mu  sync.Mutex
	key string // addr, fingerprints, and this node's fingerprint
	c   *api.Client
}

func (pc *peerClients) get(addr, fingerprint, next string, cert tls.Certificate, own string) *api.Client {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	key := addr + " " + fingerprint + " " + next + " " + own
	if pc.c == nil || pc.key != key {
		if pc.c != nil {
			// Calls still running on the old client finish; its idle
			// connections go now, the others when they fall idle.
			pc.c.Close()
		}
		var also []string
		if next != "" {
			also = []string{next}
		}
		pc.c, pc.key = newAPIClient(addr, fingerprint, "", cert, also...), key
	}
	return pc.c
}

// peerOf is the mutual-TLS client for the pinned peer, shared by every
// caller.
func (n *Node) peerOf(p *Member) *peerClient {
	addr := net.JoinHostPort(p.IP, strconv.Itoa(p.APIPort))
	n.certMu.RLock()
	cert, own := n.cert, n.certFP
	n.certMu.RUnlock()
	return &peerClient{c: n.peers.get(addr, p.Fingerprint, p.NextFingerprint, cert, own), shared: true}
}

// do sends in (if not nil) and decodes the answer into out (if not nil).
// Error answers come back as *api.Error with the peer's status and code,
// the message naming the peer; no answer at all as a 503.
func (c *peerClient) do(ctx context.Context, method, path string, in, out any) error {
	return peerError(c.c.Addr(), c.c.Do(ctx, method, path, in, out))
}

func peerError(addr string, err error) error {
	var ae *api.Error
	if !errors.As(err, &ae) {
		return err
	}
	switch {
	case ae.Err != nil:
		return &api.Error{Status: http.StatusServiceUnavailable, Code: api.CodeUnavailable, Message: "cannot reach the peer at " + addr + ": " + ae.Err.Error(), Err: ae.Err}
	case ae.Code == "":
		// Not the node API's envelope: whatever answered is no peer.
		return &api.Error{Status: http.StatusBadGateway, Code: api.CodeUnavailable, Message: "peer " + ae.Message}
	}
	return &api.Error{Status: ae.Status, Code: ae.Code, Message: "peer " + addr + ": " + ae.Message}
}

// close ends a one-off client's connections; the shared one stays open.
func (c *peerClient) close() {
	if !c.shared {
		c.c.Close()
	}
}
