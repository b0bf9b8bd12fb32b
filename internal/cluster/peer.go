package cluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/tandem-ha/tandem/internal/api"
	"github.com/tandem-ha/tandem/internal/identity"
)

// peerClient calls the other node's API. The server's certificate must
// have the pinned fingerprint; the client presents this node's own
// certificate (mutual TLS) and, while joining, the peer's admin token.
type peerClient struct {
	addr  string
	token string
	http  *http.Client
}

func newPeerClient(addr, fingerprint, token string, cert tls.Certificate) *peerClient {
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{
			MinVersion:   tls.VersionTLS12,
			Certificates: []tls.Certificate{cert},
			// Pinned, not chain-verified: node certificates are self-signed.
			InsecureSkipVerify: true, //nolint:gosec // checked in VerifyConnection
			VerifyConnection: func(cs tls.ConnectionState) error {
				if len(cs.PeerCertificates) == 0 {
					return errors.New("the peer presented no certificate")
				}
				if got := identity.Fingerprint(cs.PeerCertificates[0].Raw); got != fingerprint {
					return fmt.Errorf("the peer at %s presented certificate %s, not the pinned %s", addr, got, fingerprint)
				}
				return nil
			},
		},
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 5 * time.Second}).DialContext,
		TLSHandshakeTimeout: 3 * time.Second,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     30 * time.Second,
	}
	return &peerClient{addr: addr, token: token, http: &http.Client{Transport: tr}}
}

// peerOf builds the mutual-TLS client for the pinned peer.
func (n *Node) peerOf(p *Member) *peerClient {
	return newPeerClient(net.JoinHostPort(p.IP, strconv.Itoa(p.APIPort)), p.Fingerprint, "", n.cfg.Cert)
}

// do sends in (if not nil) and decodes the answer into out (if not nil).
// Error answers come back as *api.Error with the peer's status and code.
func (c *peerClient) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "https://"+c.addr+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	res, err := c.http.Do(req)
	if err != nil {
		return unavailable("cannot reach the peer at %s: %v", c.addr, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 8<<20))
	if err != nil {
		return unavailable("while reading the peer's answer: %v", err)
	}
	if res.StatusCode >= 400 {
		var e api.ErrorBody
		if json.Unmarshal(b, &e) == nil && e.Error.Code != "" {
			return &api.Error{Status: res.StatusCode, Code: e.Error.Code, Message: "peer " + c.addr + ": " + e.Error.Message}
		}
		return api.Errorf(http.StatusBadGateway, api.CodeUnavailable, "peer %s answered %s", c.addr, res.Status)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("while decoding the peer's answer: %w", err)
		}
	}
	return nil
}

func (c *peerClient) close() { c.http.CloseIdleConnections() }
