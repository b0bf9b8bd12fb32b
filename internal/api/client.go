package api

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/tandem-ha/tandem/internal/identity"
	"github.com/tandem-ha/tandem/internal/version"
)

// MaxAnswer caps the body of an answer the client reads.
const MaxAnswer = 8 << 20

// ClientConfig builds a Client.
type ClientConfig struct {
	Addr  string // host:port of the node API
	Token string // admin token sent as a bearer token; empty sends none

	// Fingerprint pins the server's certificate ("sha256:…"). Node
	// certificates are self-signed, so they are pinned, not chain-verified.
	// Empty refuses every server with a *CertError naming the certificate
	// it presented: what a console needs to offer trust on first use.
	Fingerprint string
	// AlsoAccept are further certificates to accept: both nodes' when Addr
	// is the cluster IP, which either node may answer.
	AlsoAccept []string

	// Cert is presented for mutual TLS: peer routes answer only the pinned
	// peer node's certificate.
	Cert *tls.Certificate

	DialTimeout      time.Duration // default 3s
	HandshakeTimeout time.Duration // TLS; default 5s
	TCPKeepAlive     time.Duration // probes on an open connection; default 15s
	// IdleTimeout closes a kept-alive connection unused this long. The
	// default, 30s, is below the server's idle timeout (2 min), so the
	// client, not the server, closes idle connections and a request never
	// races the server closing the one it was sent on.
	IdleTimeout time.Duration

	// DialContext, when set, opens the TCP connections (tests dial from
	// inside a lab host's network namespace).
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
}

// CertError says the server's certificate is not the pinned one, or that
// none was pinned. Presented is the fingerprint it showed, to be checked
// and pinned by whoever trusts it.
type CertError struct {
	Addr      string
	Presented string // empty when the server presented no certificate
	Pinned    string // empty when nothing was pinned
}

func (e *CertError) Error() string {
	switch {
	case e.Presented == "":
		return e.Addr + " presented no certificate"
	case e.Pinned == "":
		return fmt.Sprintf("the certificate of %s (%s) is not pinned", e.Addr, e.Presented)
	}
	return fmt.Sprintf("%s presented certificate %s, not the pinned %s", e.Addr, e.Presented, e.Pinned)
}

// Client calls one node's API over pinned TLS. It keeps its connections
// alive across calls, so keep one Client per node for as long as its
// address and certificate stay the same. It is safe for concurrent use.
//
// Every error answer of the node comes back as an *Error with the HTTP
// status and the envelope's code and message (Code is empty when the
// answer had no envelope). A call that got no answer comes back as an
// *Error with status 503, CodeUnavailable and the cause in Err.
type Client struct {
	addr  string
	token string
	tls   *tls.Config
	dial  func(ctx context.Context, network, addr string) (net.Conn, error)
	hsTO  time.Duration
	tr    *http.Transport
	http  *http.Client
}

// NewClient returns a client; it connects on the first call.
func NewClient(cfg ClientConfig) *Client {
	dialTO := orDefault(cfg.DialTimeout, 3*time.Second)
	dial := cfg.DialContext
	if dial == nil {
		dial = (&net.Dialer{Timeout: dialTO, KeepAlive: orDefault(cfg.TCPKeepAlive, 15*time.Second)}).DialContext
	} else {
		custom := dial
		dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			ctx, cancel := context.WithTimeout(ctx, dialTO)
			defer cancel()
			return custom(ctx, network, addr)
		}
	}
	var pins []string
	for _, p := range append([]string{cfg.Fingerprint}, cfg.AlsoAccept...) {
		if p != "" {
			pins = append(pins, p)
		}
	}
	tc := &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Chain verification is replaced by pinning: node certificates are
		// self-signed and trusted by fingerprint, like ssh host keys.
		InsecureSkipVerify: true, //nolint:gosec // pinned in VerifyConnection
		VerifyConnection:   verifyPin(cfg.Addr, cfg.Fingerprint, pins),
	}
	if cfg.Cert != nil {
		tc.Certificates = []tls.Certificate{*cfg.Cert}
	}
	c := &Client{addr: cfg.Addr, token: cfg.Token, tls: tc, dial: dial, hsTO: orDefault(cfg.HandshakeTimeout, 5*time.Second)}
	c.tr = &http.Transport{
		// Proxy stays nil: the node API is reached directly, never through
		// an HTTPS_PROXY from the environment.
		DialContext:         dial,
		TLSClientConfig:     tc,
		TLSHandshakeTimeout: c.hsTO,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     orDefault(cfg.IdleTimeout, 30*time.Second),
	}
	c.http = &http.Client{
		Transport: c.tr,
		// The node API never redirects; an answer that does is returned
		// as the error it is, not followed elsewhere.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return c
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

func verifyPin(addr, pinned string, pins []string) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return &CertError{Addr: addr, Pinned: pinned}
		}
		fp := identity.Fingerprint(cs.PeerCertificates[0].Raw)
		if slices.Contains(pins, fp) {
			return nil
		}
		return &CertError{Addr: addr, Presented: fp, Pinned: pinned}
	}
}

// Addr is the host:port this client calls.
func (c *Client) Addr() string { return c.addr }

// Close closes the connections kept alive. The client stays usable; a
// later call connects again.
func (c *Client) Close() { c.tr.CloseIdleConnections() }

// Handshake opens a TLS connection and closes it, sending nothing: it
// settles whether the server's certificate is trusted before a token goes
// out or a request is made that a refusal would interrupt.
func (c *Client) Handshake(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.hsTO)
	defer cancel()
	raw, err := c.dial(ctx, "tcp", c.addr)
	if err != nil {
		return c.unreachable(err)
	}
	tc := c.tls.Clone()
	if host, _, err := net.SplitHostPort(c.addr); err == nil {
		tc.ServerName = host
	}
	conn := tls.Client(raw, tc)
	if err := conn.HandshakeContext(ctx); err != nil {
		raw.Close()
		return c.unreachable(err)
	}
	return conn.Close()
}

func (c *Client) unreachable(err error) *Error {
	return &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable, Message: fmt.Sprintf("cannot reach the node API at %s: %v", c.addr, err), Err: err}
}

// Do sends in as JSON (when not nil) with method to path, and decodes a 2xx
// answer into out (when not nil).
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	a, err := c.roundTrip(ctx, method, path, in)
	if err != nil {
		return err
	}
	if a.status/100 != 2 {
		return c.answerError(a)
	}
	return c.decode(a, method, path, out)
}

// answer is what the node answered: the status and the body, whole.
type answer struct {
	status int
	text   string // "404 Not Found"
	body   []byte
}

func (c *Client) roundTrip(ctx context.Context, method, path string, in any) (answer, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return answer{}, fmt.Errorf("while encoding the request %s %s: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "https://"+c.addr+path, body)
	if err != nil {
		return answer{}, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	req.Header.Set(ProtocolHeader, version.Protocol)
	res, err := c.http.Do(req)
	if err != nil {
		return answer{}, c.unreachable(err)
	}
	defer res.Body.Close()
	// Read to the end (up to the cap), so the connection can be reused.
	b, err := io.ReadAll(io.LimitReader(res.Body, MaxAnswer+1))
	if err != nil {
		return answer{}, c.unreachable(err)
	}
	return answer{status: res.StatusCode, text: res.Status, body: b}, nil
}

func (c *Client) answerError(a answer) *Error {
	var e ErrorBody
	if len(a.body) <= MaxAnswer && json.Unmarshal(a.body, &e) == nil && e.Error.Code != "" {
		return &Error{Status: a.status, Code: e.Error.Code, Message: e.Error.Message}
	}
	return &Error{Status: a.status, Message: fmt.Sprintf("%s answered %s", c.addr, a.text)}
}

func (c *Client) decode(a answer, method, path string, out any) error {
	if len(a.body) > MaxAnswer {
		return fmt.Errorf("the answer of %s to %s %s is larger than %d bytes", c.addr, method, path, MaxAnswer)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(a.body, out); err != nil {
		return fmt.Errorf("while decoding the answer of %s to %s %s: %w", c.addr, method, path, err)
	}
	return nil
}

func get[T any](ctx context.Context, c *Client, path string) (T, error) {
	var v T
	err := c.Do(ctx, http.MethodGet, path, nil, &v)
	return v, err
}

func post[T any](ctx context.Context, c *Client, path string, in any) (T, error) {
	var v T
	err := c.Do(ctx, http.MethodPost, path, in, &v)
	return v, err
}

// check is a load-balancer check: 200 and 503 are both answers, with the
// same body; anything else is an error.
func check[T any](ctx context.Context, c *Client, path string) (T, bool, error) {
	var v T
	a, err := c.roundTrip(ctx, http.MethodGet, path, nil)
	if err != nil {
		return v, false, err
	}
	switch {
	case a.status == http.StatusOK:
	case a.status == http.StatusServiceUnavailable && c.answerError(a).Code == "":
		// The check's own body, saying no; not the error envelope.
	default:
		return v, false, c.answerError(a)
	}
	if err := c.decode(a, http.MethodGet, path, &v); err != nil {
		return v, false, err
	}
	return v, a.status == http.StatusOK, nil
}

// Health is GET /health. A node whose PostgreSQL is not running answers
// 503 with Status "unavailable": that is an answer, not an error.
func (c *Client) Health(ctx context.Context) (Health, error) {
	h, _, err := check[Health](ctx, c, "/health")
	return h, err
}

// Primary is GET /primary; ok says the node is the primary, read-write.
func (c *Client) Primary(ctx context.Context) (rc RoleCheck, ok bool, err error) {
	return check[RoleCheck](ctx, c, "/primary")
}

// Replica is GET /replica; ok says the node is the secondary, in recovery.
func (c *Client) Replica(ctx context.Context) (rc RoleCheck, ok bool, err error) {
	return check[RoleCheck](ctx, c, "/replica")
}

// Node is GET /v1/node.
func (c *Client) Node(ctx context.Context) (NodeInfo, error) {
	return get[NodeInfo](ctx, c, "/v1/node")
}

// View is GET /v1/cluster.
func (c *Client) View(ctx context.Context) (ClusterView, error) {
	return get[ClusterView](ctx, c, "/v1/cluster")
}

// Events is GET /v1/events: the last limit events (the node's default,
// 100, when limit is 0).
func (c *Client) Events(ctx context.Context, limit int) (EventList, error) {
	path := "/v1/events"
	if limit != 0 {
		path += "?limit=" + strconv.Itoa(limit)
	}
	return get[EventList](ctx, c, path)
}

// Assemble is POST /v1/cluster/assemble, sent to the future primary.
func (c *Client) Assemble(ctx context.Context, req AssembleRequest) (AssembleResult, error) {
	return post[AssembleResult](ctx, c, "/v1/cluster/assemble", req)
}

// Join is POST /v1/cluster/join, sent by the primary to the secondary.
func (c *Client) Join(ctx context.Context, req JoinRequest) (JoinResult, error) {
	return post[JoinResult](ctx, c, "/v1/cluster/join", req)
}

// Disassemble is POST /v1/cluster/disassemble.
func (c *Client) Disassemble(ctx context.Context, req DisassembleRequest) (DisassembleResult, error) {
	return post[DisassembleResult](ctx, c, "/v1/cluster/disassemble", req)
}

// Preflight is POST /v1/preflight.
func (c *Client) Preflight(ctx context.Context, req PreflightRequest) (PreflightResult, error) {
	return post[PreflightResult](ctx, c, "/v1/preflight", req)
}

// Switchover is POST /v1/cluster/switchover, sent to the primary.
func (c *Client) Switchover(ctx context.Context, req SwitchoverRequest) (SwitchoverResult, error) {
	return post[SwitchoverResult](ctx, c, "/v1/cluster/switchover", req)
}

// Failover is POST /v1/cluster/failover, sent to the secondary.
func (c *Client) Failover(ctx context.Context, req FailoverRequest) (FailoverResult, error) {
	return post[FailoverResult](ctx, c, "/v1/cluster/failover", req)
}

// Heartbeat is the peer's GET /v1/peer/heartbeat (mutual TLS).
func (c *Client) Heartbeat(ctx context.Context) (Heartbeat, error) {
	return get[Heartbeat](ctx, c, "/v1/peer/heartbeat")
}

// Promote is the peer's POST /v1/peer/promote (mutual TLS).
func (c *Client) Promote(ctx context.Context, req PromoteRequest) (PromoteResult, error) {
	return post[PromoteResult](ctx, c, "/v1/peer/promote", req)
}

// Leave is the peer's POST /v1/peer/leave (mutual TLS).
func (c *Client) Leave(ctx context.Context) error {
	return c.Do(ctx, http.MethodPost, "/v1/peer/leave", nil, nil)
}

// RecreateSlot is the peer's POST /v1/peer/reseed (mutual TLS): a
// secondary re-seeding asks the primary to drop and recreate the slot.
func (c *Client) RecreateSlot(ctx context.Context) error {
	return c.Do(ctx, http.MethodPost, "/v1/peer/reseed", nil, nil)
}

// PrepareCert is POST /v1/cert/prepare.
func (c *Client) PrepareCert(ctx context.Context) (CertPrepareResult, error) {
	return post[CertPrepareResult](ctx, c, "/v1/cert/prepare", nil)
}

// SwitchCert is POST /v1/cert/switch.
func (c *Client) SwitchCert(ctx context.Context, req CertSwitchRequest) (CertSwitchResult, error) {
	return post[CertSwitchResult](ctx, c, "/v1/cert/switch", req)
}

// PeerCert is POST /v1/peer/cert.
func (c *Client) PeerCert(ctx context.Context, req PeerCertRequest) (PeerCertResult, error) {
	return post[PeerCertResult](ctx, c, "/v1/peer/cert", req)
}

// PeerEvent is the peer's POST /v1/peer/event (mutual TLS).
func (c *Client) PeerEvent(ctx context.Context, e PeerEvent) error {
	return c.Do(ctx, http.MethodPost, "/v1/peer/event", e, nil)
}
