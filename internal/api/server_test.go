package api

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

type fakeBackend struct{ info NodeInfo }

func (f *fakeBackend) Node(context.Context) NodeInfo { return f.info }

const testToken = "0123456789abcdef0123456789abcdef-token"

func newTestServer(state string) (*Server, *fakeBackend) {
	b := &fakeBackend{info: NodeInfo{Name: "a", IP: "10.0.0.11", TandemdVersion: "test", Postgres: PostgresInfo{State: state, Port: 5432, LSN: "0/1000"}}}
	return NewServer(Config{Token: testToken, Backend: b, Log: slog.New(slog.DiscardHandler)}), b
}

func do(t *testing.T, h http.Handler, method, path, auth string) (*http.Response, []byte) {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	res := rec.Result()
	body, _ := io.ReadAll(res.Body)
	return res, body
}

func decodeError(t *testing.T, body []byte) ErrorDetail {
	t.Helper()
	var e ErrorBody
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("error body is not the JSON envelope: %v: %s", err, body)
	}
	if e.Error.Code == "" || e.Error.Message == "" {
		t.Fatalf("error envelope lacks code or message: %s", body)
	}
	return e.Error
}

func TestNodeNeedsTheToken(t *testing.T) {
	s, _ := newTestServer("running")
	h := s.Handler()
	for _, auth := range []string{"", "Bearer wrong", "Basic " + testToken, "Bearer " + testToken + "x", "bearer " + testToken} {
		res, body := do(t, h, "GET", "/v1/node", auth)
		if res.StatusCode != http.StatusUnauthorized {
			t.Errorf("auth %q: status %d, want 401", auth, res.StatusCode)
			continue
		}
		if e := decodeError(t, body); e.Code != CodeUnauthorized {
			t.Errorf("auth %q: code %q, want %q", auth, e.Code, CodeUnauthorized)
		}
		if res.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("auth %q: 401 without WWW-Authenticate", auth)
		}
		if strings.Contains(string(body), testToken) {
			t.Errorf("the token leaked into an error body")
		}
	}
}

func TestNodeWithToken(t *testing.T) {
	s, _ := newTestServer("running")
	res, body := do(t, s.Handler(), "GET", "/v1/node", "Bearer "+testToken)
	if res.StatusCode != 200 {
		t.Fatalf("status %d: %s", res.StatusCode, body)
	}
	var n NodeInfo
	if err := json.Unmarshal(body, &n); err != nil {
		t.Fatal(err)
	}
	if n.Name != "a" || n.IP != "10.0.0.11" || n.Postgres.State != "running" || n.Postgres.LSN != "0/1000" {
		t.Fatalf("unexpected node info %+v", n)
	}
}

func TestHealthFollowsPostgres(t *testing.T) {
	for state, want := range map[string]int{"running": 200, "stopped": 503, "crashed": 503, "starting": 503, "no_data": 503} {
		s, _ := newTestServer(state)
		res, body := do(t, s.Handler(), "GET", "/health", "")
		if res.StatusCode != want {
			t.Errorf("postgres %s: /health answered %d, want %d (%s)", state, res.StatusCode, want, body)
		}
	}
}

func TestUnknownPathAndMethodUseTheEnvelope(t *testing.T) {
	s, _ := newTestServer("running")
	h := s.Handler()
	res, body := do(t, h, "GET", "/v1/nope", "Bearer "+testToken)
	if res.StatusCode != 404 || decodeError(t, body).Code != CodeNotFound {
		t.Errorf("unknown path: %d %s", res.StatusCode, body)
	}
	res, body = do(t, h, "DELETE", "/v1/node", "Bearer "+testToken)
	if res.StatusCode != 405 || decodeError(t, body).Code != CodeMethodNotAllowed || res.Header.Get("Allow") != "GET" {
		t.Errorf("wrong method: %d %s", res.StatusCode, body)
	}
	if ct := res.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("content type %q", ct)
	}
}

func TestInternalErrorsHideDetails(t *testing.T) {
	e := errorFor(io.ErrUnexpectedEOF)
	if e.Status != 500 || e.Code != CodeInternal || strings.Contains(e.Message, "EOF") {
		t.Fatalf("internal error leaked detail: %+v", e)
	}
}

func TestLoadBalancerChecks(t *testing.T) {
	cases := []struct {
		role, state      string
		recovery         bool
		primary, replica int
	}{
		{"primary", "running", false, 200, 503},
		{"secondary", "running", true, 503, 200},
		{"primary", "stopped", false, 503, 503},
		{"secondary", "crashed", true, 503, 503},
		{"none", "running", false, 503, 503},
		// A node that says primary but whose PostgreSQL is in recovery
		// (mid-demotion) must not attract writes.
		{"primary", "running", true, 503, 503},
	}
	for _, c := range cases {
		s, b := newTestServer(c.state)
		b.info.Role, b.info.Postgres.InRecovery = c.role, c.recovery
		for path, want := range map[string]int{"/primary": c.primary, "/replica": c.replica} {
			res, body := do(t, s.Handler(), "GET", path, "")
			if res.StatusCode != want {
				t.Errorf("%s with role %s, postgres %s, recovery %v: %d, want %d (%s)", path, c.role, c.state, c.recovery, res.StatusCode, want, body)
			}
		}
	}
}

func TestMetricsNeedNoToken(t *testing.T) {
	s, _ := newTestServer("running")
	s.cfg.Metrics = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("tandem_term 3\n")) })
	res, body := do(t, s.Handler(), "GET", "/metrics", "")
	if res.StatusCode != 200 || !strings.Contains(string(body), "tandem_term 3") {
		t.Fatalf("/metrics: %d %s", res.StatusCode, body)
	}
}

// A server built with GetCertificate serves whatever it returns at each
// new handshake: a rotated certificate is in force without a restart.
func TestServerServesTheCertificateInForce(t *testing.T) {
	oldC, oldFP := newCert(t, "a")
	newC, newFP := newCert(t, "a")
	var cur atomic.Pointer[tls.Certificate]
	cur.Store(&oldC)
	srv := NewServer(Config{Listen: "127.0.0.1:0", GetCertificate: cur.Load, Token: clientToken, Backend: &fakeBackend{info: NodeInfo{Name: "a"}}, Log: slog.New(slog.DiscardHandler)})
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop(context.Background()) })
	ctx := ctxT(t)
	pin := func(fp string) error {
		c := NewClient(ClientConfig{Addr: srv.Addr(), Fingerprint: fp})
		defer c.Close()
		return c.Handshake(ctx)
	}
	if err := pin(oldFP); err != nil {
		t.Fatalf("before the switch: %v", err)
	}
	cur.Store(&newC)
	if err := pin(newFP); err != nil {
		t.Fatalf("after the switch the new certificate is not served: %v", err)
	}
	if err := pin(oldFP); err == nil {
		t.Fatal("after the switch the old certificate is still served")
	}
}
