package api

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandem-ha/tandem/internal/identity"
)

// fakeCluster is a ClusterBackend that records what was called.
type fakeCluster struct {
	fakeBackend
	peerFP   string
	peerNext []string // also accepted (a rotation)

	mu       sync.Mutex
	calls    []string
	fail     error  // returned by Switchover
	joinFrom string // the client certificate Join saw
}

func (f *fakeCluster) record(format string, a ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf(format, a...))
}

func (f *fakeCluster) called() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.calls, ", ")
}

func (f *fakeCluster) Node(context.Context) NodeInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.info
}

func (f *fakeCluster) View(ctx context.Context) (ClusterView, error) {
	f.record("view")
	return ClusterView{Node: f.Node(ctx)}, nil
}

func (f *fakeCluster) Events(_ context.Context, limit int) (EventList, error) {
	f.record("events %d", limit)
	return EventList{Events: []Event{{ID: 1, Kind: "assembled"}}}, nil
}

func (f *fakeCluster) Assemble(_ context.Context, req AssembleRequest) (AssembleResult, error) {
	f.record("assemble %s", req.Name)
	return AssembleResult{Record: Record{Name: req.Name}}, nil
}

func (f *fakeCluster) Join(ctx context.Context, req JoinRequest) (JoinResult, error) {
	f.record("join")
	f.mu.Lock()
	defer f.mu.Unlock()
	f.joinFrom = ClientFingerprint(ctx)
	return JoinResult{}, nil
}

func (f *fakeCluster) Disassemble(_ context.Context, req DisassembleRequest) (DisassembleResult, error) {
	f.record("disassemble force=%v", req.Force)
	return DisassembleResult{Primary: "standalone"}, nil
}

func (f *fakeCluster) Preflight(_ context.Context, req PreflightRequest) (PreflightResult, error) {
	f.record("preflight %s", req.Peer.Name)
	return PreflightResult{Node: f.info.Name}, nil
}

func (f *fakeCluster) Switchover(_ context.Context, req SwitchoverRequest) (SwitchoverResult, error) {
	f.record("switchover")
	f.mu.Lock()
	defer f.mu.Unlock()
	return SwitchoverResult{}, f.fail
}

func (f *fakeCluster) Failover(_ context.Context, req FailoverRequest) (FailoverResult, error) {
	f.record("failover force=%v", req.Force)
	return FailoverResult{}, nil
}

func (f *fakeCluster) PeerFingerprints() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string{f.peerFP}, f.peerNext...)
}

func (f *fakeCluster) PrepareCert(context.Context) (CertPrepareResult, error) {
	f.record("prepare-cert")
	return CertPrepareResult{Node: f.info.Name, NextFingerprint: "sha256:next"}, nil
}

func (f *fakeCluster) SwitchCert(_ context.Context, req CertSwitchRequest) (CertSwitchResult, error) {
	f.record("switch-cert %s", req.Fingerprint)
	return CertSwitchResult{Node: f.info.Name, Fingerprint: req.Fingerprint}, nil
}

func (f *fakeCluster) PeerCert(ctx context.Context, req PeerCertRequest) (PeerCertResult, error) {
	f.record("peer-cert %s", req.Fingerprint)
	return PeerCertResult{Pinned: ClientFingerprint(ctx)}, nil
}

func (f *fakeCluster) Heartbeat(context.Context) Heartbeat {
	f.record("heartbeat")
	return Heartbeat{Name: f.info.Name, Role: f.info.Role, Term: 3}
}

func (f *fakeCluster) Leave(context.Context) error {
	f.record("leave")
	return nil
}

func (f *fakeCluster) RecreateSlot(context.Context) error {
	f.record("reseed")
	return nil
}

func (f *fakeCluster) PeerEvent(_ context.Context, e PeerEvent) error {
	f.record("event %s", e.Kind)
	return nil
}

func (f *fakeCluster) Promote(_ context.Context, req PromoteRequest) (PromoteResult, error) {
	f.record("promote term=%d", req.Term)
	return PromoteResult{}, nil
}

const clientToken = "client-test-token-0123456789abcdef"

// testNode is a node API over TLS with a real node certificate, counting
// connections and TLS handshakes.
type testNode struct {
	addr       string
	fp         string
	backend    *fakeCluster
	requests   atomic.Int32
	conns      atomic.Int32
	handshakes atomic.Int32
	srv        *httptest.Server
}

func newCert(t *testing.T, name string) (tls.Certificate, string) {
	t.Helper()
	cert, err := identity.EnsureCert(t.TempDir(), name, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	return cert, identity.Fingerprint(cert.Certificate[0])
}

// startNode serves h, or the real API handler over a fakeCluster when h is
// nil. peerFP is the client certificate the peer routes accept.
func startNode(t *testing.T, h http.Handler, peerFP string) *testNode {
	t.Helper()
	cert, fp := newCert(t, "a")
	n := &testNode{fp: fp, backend: &fakeCluster{fakeBackend: fakeBackend{info: NodeInfo{Name: "a", Role: "primary", Postgres: PostgresInfo{State: "running"}}}, peerFP: peerFP}}
	if h == nil {
		h = NewServer(Config{Token: clientToken, Backend: n.backend, Log: slog.New(slog.DiscardHandler)}).Handler()
	}
	n.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.requests.Add(1)
		h.ServeHTTP(w, r)
	}))
	n.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			n.conns.Add(1)
		}
	}
	n.srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequestClientCert,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			n.handshakes.Add(1)
			return nil, nil
		},
	}
	n.srv.StartTLS()
	t.Cleanup(n.srv.Close)
	n.addr = n.srv.Listener.Addr().String()
	return n
}

func (n *testNode) client(t *testing.T, cfg ClientConfig) *Client {
	cfg.Addr = n.addr
	c := NewClient(cfg)
	t.Cleanup(c.Close)
	return c
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestClientAcceptsOnlyThePinnedCertificate(t *testing.T) {
	n := startNode(t, nil, "")
	ctx := ctxT(t)

	if info, err := n.client(t, ClientConfig{Token: clientToken, Fingerprint: n.fp}).Node(ctx); err != nil || info.Name != "a" {
		t.Fatalf("pinned: %+v %v", info, err)
	}
	if _, err := n.client(t, ClientConfig{Token: clientToken, Fingerprint: "sha256:other", AlsoAccept: []string{n.fp}}).Node(ctx); err != nil {
		t.Fatalf("accepted as the other node's: %v", err)
	}
	before := n.requests.Load()

	wrong := "sha256:" + strings.Repeat("0", 64)
	for pin, want := range map[string]string{wrong: wrong, "": ""} {
		c := n.client(t, ClientConfig{Token: clientToken, Fingerprint: pin})
		for call, err := range map[string]error{"Node": func() error { _, err := c.Node(ctx); return err }(), "Handshake": c.Handshake(ctx)} {
			var ce *CertError
			if !errors.As(err, &ce) || ce.Presented != n.fp || ce.Pinned != want || ce.Addr != n.addr {
				t.Errorf("pin %q, %s: %v; want a *CertError presenting %s", pin, call, err, n.fp)
			}
			var ae *Error
			if !errors.As(err, &ae) || ae.Status != http.StatusServiceUnavailable || ae.Code != CodeUnavailable || !strings.Contains(ae.Message, n.addr) {
				t.Errorf("pin %q, %s: %#v; want a 503 naming %s", pin, call, err, n.addr)
			}
		}
	}
	if got := n.requests.Load(); got != before {
		t.Errorf("%d requests reached a server whose certificate was refused", got-before)
	}
	if err := n.client(t, ClientConfig{Fingerprint: n.fp}).Handshake(ctx); err != nil {
		t.Errorf("handshake with the right pin: %v", err)
	}
}

func TestClientPresentsItsCertificate(t *testing.T) {
	cert, fp := newCert(t, "b")
	n := startNode(t, nil, fp)
	ctx := ctxT(t)

	hb, err := n.client(t, ClientConfig{Fingerprint: n.fp, Cert: &cert}).Heartbeat(ctx)
	if err != nil || hb.Name != "a" || hb.Term != 3 {
		t.Fatalf("heartbeat with the peer's certificate: %+v %v", hb, err)
	}
	other, _ := newCert(t, "c")
	for name, c := range map[string]*Client{
		"no certificate":     n.client(t, ClientConfig{Fingerprint: n.fp, Token: clientToken}),
		"another's":          n.client(t, ClientConfig{Fingerprint: n.fp, Cert: &other}),
		"the node's own pin": n.client(t, ClientConfig{Fingerprint: n.fp}),
	} {
		_, err := c.Heartbeat(ctx)
		var ae *Error
		if !errors.As(err, &ae) || ae.Status != http.StatusForbidden || ae.Code != CodeForbidden || ae.Err != nil {
			t.Errorf("%s: %v; want 403 forbidden", name, err)
		}
	}
}

// The backend learns which certificate the caller presented (Join binds
// to it); a caller without one leaves it empty.
func TestTheClientCertificateReachesTheBackend(t *testing.T) {
	cert, fp := newCert(t, "b")
	n := startNode(t, nil, "")
	ctx := ctxT(t)
	joinFrom := func() string {
		n.backend.mu.Lock()
		defer n.backend.mu.Unlock()
		return n.backend.joinFrom
	}
	if _, err := n.client(t, ClientConfig{Fingerprint: n.fp, Token: clientToken, Cert: &cert}).Join(ctx, JoinRequest{}); err != nil {
		t.Fatal(err)
	}
	if got := joinFrom(); got != fp {
		t.Fatalf("Join saw client certificate %q, want %s", got, fp)
	}
	if _, err := n.client(t, ClientConfig{Fingerprint: n.fp, Token: clientToken}).Join(ctx, JoinRequest{}); err != nil {
		t.Fatal(err)
	}
	if got := joinFrom(); got != "" {
		t.Fatalf("Join without a client certificate saw %q", got)
	}
}

func TestClientDecodesTheErrorEnvelope(t *testing.T) {
	n := startNode(t, nil, "")
	ctx := ctxT(t)

	_, err := n.client(t, ClientConfig{Fingerprint: n.fp, Token: "wrong"}).View(ctx)
	var ae *Error
	if !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized || ae.Code != CodeUnauthorized || !strings.Contains(ae.Message, "admin token") || ae.Err != nil {
		t.Errorf("wrong token: %#v", err)
	}

	n.backend.mu.Lock()
	n.backend.fail = Errorf(http.StatusConflict, CodeConflict, "an assembly is in progress")
	n.backend.mu.Unlock()
	_, err = n.client(t, ClientConfig{Fingerprint: n.fp, Token: clientToken}).Switchover(ctx, SwitchoverRequest{})
	if !errors.As(err, &ae) || ae.Status != http.StatusConflict || ae.Code != CodeConflict || ae.Message != "an assembly is in progress" {
		t.Errorf("conflict: %#v", err)
	}
	if err.Error() != "conflict: an assembly is in progress" {
		t.Errorf("conflict reads %q", err)
	}

	plain := startNode(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "upstream down", http.StatusBadGateway)
	}), "")
	_, err = plain.client(t, ClientConfig{Fingerprint: plain.fp}).Node(ctx)
	if !errors.As(err, &ae) || ae.Status != http.StatusBadGateway || ae.Code != "" || ae.Err != nil || err.Error() != plain.addr+" answered 502 Bad Gateway" {
		t.Errorf("an answer without the envelope: %#v (%v)", err, err)
	}
}

func TestClientKeepsItsConnection(t *testing.T) {
	cert, fp := newCert(t, "b")
	n := startNode(t, nil, fp)
	ctx := ctxT(t)
	c := n.client(t, ClientConfig{Fingerprint: n.fp, Cert: &cert})
	for i := range 3 {
		if _, err := c.Heartbeat(ctx); err != nil {
			t.Fatalf("heartbeat %d: %v", i, err)
		}
	}
	// Error answers leave the connection reusable too.
	if err := c.Do(ctx, http.MethodGet, "/v1/nope", nil, nil); err == nil {
		t.Fatal("GET /v1/nope succeeded")
	}
	if err := c.PeerEvent(ctx, PeerEvent{Kind: "test"}); err != nil {
		t.Fatal(err)
	}
	if h, k := n.handshakes.Load(), n.conns.Load(); h != 1 || k != 1 {
		t.Errorf("five calls made %d TLS handshakes over %d connections; want one", h, k)
	}
	c.Close()
	if _, err := c.Heartbeat(ctx); err != nil {
		t.Fatalf("heartbeat after Close: %v", err)
	}
	if h := n.handshakes.Load(); h != 2 {
		t.Errorf("after Close, %d handshakes; want a second one", h)
	}
}

func TestClientOnAClosedPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c := NewClient(ClientConfig{Addr: addr, Fingerprint: "sha256:any"})
	ctx := ctxT(t)
	_, herr := c.Heartbeat(ctx)
	for name, err := range map[string]error{"heartbeat": herr, "handshake": c.Handshake(ctx)} {
		var ae *Error
		if !errors.As(err, &ae) || ae.Status != http.StatusServiceUnavailable || ae.Code != CodeUnavailable || !strings.Contains(ae.Message, addr) || ae.Err == nil {
			t.Errorf("%s: %#v; want 503 unavailable naming %s", name, err, addr)
		}
		var ce *CertError
		if errors.As(err, &ce) {
			t.Errorf("%s: a closed port reported as a certificate problem: %v", name, err)
		}
	}
}

func TestClientRequests(t *testing.T) {
	type seen struct{ method, path, query, ctype, auth string }
	var mu sync.Mutex
	var got []seen
	n := startNode(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, seen{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("Content-Type"), r.Header.Get("Authorization")})
		mu.Unlock()
		w.Write([]byte("{}"))
	}), "")
	ctx := ctxT(t)
	c := n.client(t, ClientConfig{Fingerprint: n.fp, Token: "tok"})
	c.Node(ctx)
	c.Events(ctx, 7)
	c.Preflight(ctx, PreflightRequest{})
	c.Leave(ctx)
	n.client(t, ClientConfig{Fingerprint: n.fp}).Heartbeat(ctx)
	want := []seen{
		{"GET", "/v1/node", "", "", "Bearer tok"},
		{"GET", "/v1/events", "limit=7", "", "Bearer tok"},
		{"POST", "/v1/preflight", "", "application/json", "Bearer tok"},
		{"POST", "/v1/peer/leave", "", "", "Bearer tok"},
		{"GET", "/v1/peer/heartbeat", "", "", ""},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("requests\n %v\nwant\n %v", got, want)
	}
}

func TestClientCapsTheAnswer(t *testing.T) {
	n := startNode(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"name":"`))
		w.Write([]byte(strings.Repeat("x", MaxAnswer)))
		w.Write([]byte(`"}`))
	}), "")
	_, err := n.client(t, ClientConfig{Fingerprint: n.fp}).Node(ctxT(t))
	if err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("a 8 MiB answer: %v", err)
	}
}

// TestTypedCallsReachTheirRoutes checks every typed call against the
// server's own router: a path or method that drifted would fail here.
func TestTypedCallsReachTheirRoutes(t *testing.T) {
	cert, fp := newCert(t, "b")
	n := startNode(t, nil, fp)
	ctx := ctxT(t)
	admin := n.client(t, ClientConfig{Fingerprint: n.fp, Token: clientToken})
	peer := n.client(t, ClientConfig{Fingerprint: n.fp, Cert: &cert})

	calls := []struct {
		name string
		call func() error
		want string
	}{
		{"View", func() error { v, err := admin.View(ctx); return check1(v.Node.Name == "a", err) }, "view"},
		{"Events", func() error { v, err := admin.Events(ctx, 7); return check1(len(v.Events) == 1, err) }, "events 7"},
		{"Events default", func() error { _, err := admin.Events(ctx, 0); return err }, "events 100"},
		{"Assemble", func() error {
			v, err := admin.Assemble(ctx, AssembleRequest{Name: "db"})
			return check1(v.Record.Name == "db", err)
		}, "assemble db"},
		{"Join", func() error { _, err := admin.Join(ctx, JoinRequest{}); return err }, "join"},
		{"Disassemble", func() error {
			v, err := admin.Disassemble(ctx, DisassembleRequest{Force: true})
			return check1(v.Primary == "standalone", err)
		}, "disassemble force=true"},
		{"Preflight", func() error { _, err := admin.Preflight(ctx, PreflightRequest{Peer: Member{Name: "b"}}); return err }, "preflight b"},
		{"Switchover", func() error { _, err := admin.Switchover(ctx, SwitchoverRequest{}); return err }, "switchover"},
		{"Failover", func() error { _, err := admin.Failover(ctx, FailoverRequest{Force: true}); return err }, "failover force=true"},
		{"Heartbeat", func() error { v, err := peer.Heartbeat(ctx); return check1(v.Term == 3, err) }, "heartbeat"},
		{"Promote", func() error { _, err := peer.Promote(ctx, PromoteRequest{Term: 4}); return err }, "promote term=4"},
		{"Leave", func() error { return peer.Leave(ctx) }, "leave"},
		{"RecreateSlot", func() error { return peer.RecreateSlot(ctx) }, "reseed"},
		{"PeerEvent", func() error { return peer.PeerEvent(ctx, PeerEvent{Kind: "k"}) }, "event k"},
		{"PrepareCert", func() error { v, err := admin.PrepareCert(ctx); return check1(v.NextFingerprint == "sha256:next", err) }, "prepare-cert"},
		{"SwitchCert", func() error {
			v, err := admin.SwitchCert(ctx, CertSwitchRequest{Fingerprint: "sha256:x"})
			return check1(v.Fingerprint == "sha256:x", err)
		}, "switch-cert sha256:x"},
		{"PeerCert", func() error {
			v, err := peer.PeerCert(ctx, PeerCertRequest{Fingerprint: "sha256:y"})
			return check1(v.Pinned == fp, err)
		}, "peer-cert sha256:y"},
	}
	for _, c := range calls {
		n.backend.mu.Lock()
		n.backend.calls = nil
		n.backend.mu.Unlock()
		if err := c.call(); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
		if got := n.backend.called(); got != c.want {
			t.Errorf("%s reached %q, want %q", c.name, got, c.want)
		}
	}
	if info, err := admin.Node(ctx); err != nil || info.Name != "a" {
		t.Errorf("Node: %+v %v", info, err)
	}
}

func check1(ok bool, err error) error {
	if err == nil && !ok {
		return errors.New("unexpected answer")
	}
	return err
}

func TestClientLoadBalancerChecks(t *testing.T) {
	n := startNode(t, nil, "")
	ctx := ctxT(t)
	c := n.client(t, ClientConfig{Fingerprint: n.fp})

	if h, err := c.Health(ctx); err != nil || h.Status != "ok" {
		t.Errorf("health of a running node: %+v %v", h, err)
	}
	if rc, ok, err := c.Primary(ctx); err != nil || !ok || rc.Role != "primary" {
		t.Errorf("primary check on the primary: %+v %v %v", rc, ok, err)
	}
	if rc, ok, err := c.Replica(ctx); err != nil || ok || rc.Role != "primary" {
		t.Errorf("replica check on the primary: %+v %v %v", rc, ok, err)
	}
	n.backend.mu.Lock()
	n.backend.info.Postgres.State = "stopped"
	n.backend.mu.Unlock()
	if h, err := c.Health(ctx); err != nil || h.Status != "unavailable" || h.Postgres != "stopped" {
		t.Errorf("health with PostgreSQL stopped is an answer: %+v %v", h, err)
	}
	if err := c.Do(ctx, http.MethodGet, "/health", nil, nil); err == nil {
		t.Error("Do on a 503 /health returned no error")
	}
}

func TestClientCheckWithTheEnvelopeIsAnError(t *testing.T) {
	n := startNode(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusServiceUnavailable, ErrorBody{Error: ErrorDetail{Code: CodeUnavailable, Message: "shutting down"}})
	}), "")
	_, err := n.client(t, ClientConfig{Fingerprint: n.fp}).Health(ctxT(t))
	var ae *Error
	if !errors.As(err, &ae) || ae.Status != http.StatusServiceUnavailable || ae.Message != "shutting down" || ae.Err != nil {
		t.Fatalf("a 503 envelope on /health: %#v", err)
	}
}

// While the peer rotates its certificate both are let in on the peer
// routes; the token routes of a rotation need the admin token, not a
// peer certificate.
func TestPeerRoutesDuringARotation(t *testing.T) {
	oldCert, oldFP := newCert(t, "b")
	newC, newFP := newCert(t, "b")
	other, _ := newCert(t, "c")
	n := startNode(t, nil, oldFP)
	ctx := ctxT(t)
	hb := func(c *tls.Certificate) error {
		_, err := n.client(t, ClientConfig{Fingerprint: n.fp, Cert: c}).Heartbeat(ctx)
		return err
	}
	if err := hb(&newC); err == nil {
		t.Fatal("the next certificate was let in before the peer announced it")
	}
	n.backend.mu.Lock()
	n.backend.peerNext = []string{newFP}
	n.backend.mu.Unlock()
	for name, c := range map[string]*tls.Certificate{"old": &oldCert, "new": &newC} {
		if err := hb(c); err != nil {
			t.Errorf("during the rotation the %s certificate is refused: %v", name, err)
		}
	}
	if err := hb(&other); err == nil {
		t.Error("a third certificate is let in during a rotation")
	}
	for _, path := range []string{"/v1/cert/prepare", "/v1/cert/switch"} {
		err := n.client(t, ClientConfig{Fingerprint: n.fp, Cert: &oldCert}).Do(ctx, http.MethodPost, path, CertSwitchRequest{}, nil)
		var ae *Error
		if !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized {
			t.Errorf("%s with the peer's certificate and no token: %v, want 401", path, err)
		}
	}
	if got := n.backend.called(); strings.Contains(got, "cert") {
		t.Errorf("refused calls reached the backend: %s", got)
	}
}
