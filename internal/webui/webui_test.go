package webui

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandem-ha/tandem/internal/api"
)

const (
	adminTok  = "admin-token-0123456789abcdef0123456789"
	viewerTok = "viewer-token-0123456789abcdef012345678"
)

type fakeNode struct {
	mu          sync.Mutex
	view        api.ClusterView
	cert        *tls.Certificate
	peerFP      string
	views       int
	switchovers int
	failovers   int
}

func (f *fakeNode) View(context.Context) (api.ClusterView, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.views++
	return f.view, nil
}
func (f *fakeNode) Events(context.Context, int) (api.EventList, error) {
	return api.EventList{Events: []api.Event{{ID: 1, Kind: "assembled", Message: "hello"}}}, nil
}
func (f *fakeNode) Switchover(context.Context, api.SwitchoverRequest) (api.SwitchoverResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.switchovers++
	return api.SwitchoverResult{From: "a", To: "b", Term: 2, Took: "1s"}, nil
}
func (f *fakeNode) Failover(context.Context, api.FailoverRequest) (api.FailoverResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failovers++
	return api.FailoverResult{}, nil
}
func (f *fakeNode) PeerFingerprints() []string {
	if f.peerFP != "" {
		return []string{f.peerFP}
	}
	return []string{"sha256:peer"}
}
func (f *fakeNode) Certificate() *tls.Certificate { return f.cert }

// primaryView: node a, primary, with a peer b that nothing answers for
// (port 1 on loopback refuses at once).
func primaryView() api.ClusterView {
	return api.ClusterView{
		Node:        api.NodeInfo{Name: "a", IP: "127.0.0.1", APIPort: 7400, Role: "primary", Term: 1, Cluster: "c"},
		Record:      &api.Record{Name: "c", Term: 1, Primary: "a"},
		Peer:        &api.Member{Name: "b", IP: "127.0.0.1", APIPort: 1, Fingerprint: "sha256:peer"},
		Replication: &api.ReplicationInfo{State: "streaming", LagBytes: 0},
	}
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newTestServer(t *testing.T) (*Server, *fakeNode, *clock) {
	t.Helper()
	f := &fakeNode{view: primaryView()}
	c := &clock{t: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	s := New(Config{Backend: f, AdminToken: adminTok, ViewerToken: viewerTok, IdleTimeout: 10 * time.Minute, Lifetime: time.Hour, Now: c.now})
	return s, f, c
}

func do(t *testing.T, h http.Handler, method, path string, body any, hdr map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	var b bytes.Buffer
	if body != nil {
		_ = json.NewEncoder(&b).Encode(body)
	}
	r := httptest.NewRequest(method, "https://node"+path, &b)
	if body != nil {
		r.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// login returns the session cookie header value and the CSRF token.
func login(t *testing.T, h http.Handler, tok string) (cookie, csrf string) {
	t.Helper()
	w := do(t, h, "POST", "/ui/login", LoginRequest{Token: tok}, nil)
	if w.Code != http.StatusOK {
		t.Fatalf("login: %d %s", w.Code, w.Body)
	}
	var res LoginResult
	if err := json.Unmarshal(w.Body.Bytes(), &res); err != nil {
		t.Fatal(err)
	}
	cs := w.Result().Cookies()
	if len(cs) != 1 {
		t.Fatalf("login set %d cookies, want 1", len(cs))
	}
	return cs[0].Name + "=" + cs[0].Value, res.CSRF
}

func TestLoginSetsSessionCookieWithFlags(t *testing.T) {
	s, _, _ := newTestServer(t)
	w := do(t, s, "POST", "/ui/login", LoginRequest{Token: adminTok}, nil)
	if w.Code != http.StatusOK {
		t.Fatalf("login: %d %s", w.Code, w.Body)
	}
	var res LoginResult
	_ = json.Unmarshal(w.Body.Bytes(), &res)
	if res.Role != RoleAdmin || res.CSRF == "" {
		t.Fatalf("login answered %+v, want role admin and a CSRF token", res)
	}
	c := w.Result().Cookies()[0]
	if c.Name != CookieName || !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteStrictMode || c.Path != "/ui/" || c.MaxAge <= 0 {
		t.Fatalf("session cookie %+v lacks HttpOnly, Secure, SameSite=Strict, Path=/ui/ or an expiry", c)
	}
	if strings.Contains(w.Body.String(), c.Value) {
		t.Fatal("the session id is in the body; it must travel only in the HttpOnly cookie")
	}
}

func TestBadOrMissingTokenRefused(t *testing.T) {
	s, _, _ := newTestServer(t)
	for _, tok := range []string{"", "wrong", adminTok + "x", adminTok[:len(adminTok)-1]} {
		w := do(t, s, "POST", "/ui/login", LoginRequest{Token: tok}, nil)
		if w.Code != http.StatusUnauthorized || len(w.Result().Cookies()) != 0 {
			t.Errorf("token %q: %d with %d cookies, want 401 and none", tok, w.Code, len(w.Result().Cookies()))
		}
	}
	// Not JSON: a cross-site form post cannot log anyone in.
	r := httptest.NewRequest("POST", "https://node/ui/login", strings.NewReader("token="+adminTok))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := httptest.NewRecorder()
	s.ServeHTTP(w, r)
	if w.Code != http.StatusUnsupportedMediaType {
		t.Errorf("form login: %d, want 415", w.Code)
	}
}

func TestStatusNeedsSession(t *testing.T) {
	s, _, _ := newTestServer(t)
	for _, c := range []string{"", CookieName + "=forged"} {
		w := do(t, s, "GET", "/ui/api/status", nil, map[string]string{"Cookie": c})
		if w.Code != http.StatusUnauthorized {
			t.Errorf("cookie %q: %d, want 401", c, w.Code)
		}
	}
	cookie, _ := login(t, s, adminTok)
	w := do(t, s, "GET", "/ui/api/status", nil, map[string]string{"Cookie": cookie})
	if w.Code != http.StatusOK {
		t.Fatalf("status: %d %s", w.Code, w.Body)
	}
	var st Status
	_ = json.Unmarshal(w.Body.Bytes(), &st)
	if st.AnsweredBy != "a" || len(st.Nodes) != 2 || st.Nodes[0].View.Node.Role != "primary" {
		t.Fatalf("status %+v: want answered by a, two nodes, a primary", st)
	}
	// The peer does not answer: it is shown, unreachable, with why.
	if b := st.Nodes[1]; b.Name != "b" || b.Reachable || b.Error == "" {
		t.Fatalf("peer %+v: want b, unreachable, with the error", b)
	}
}

func TestPostWithoutCSRFRefused(t *testing.T) {
	s, _, _ := newTestServer(t)
	cookie, csrf := login(t, s, adminTok)
	body := PlanRequest{Op: OpFailover}
	for _, h := range []map[string]string{{"Cookie": cookie}, {"Cookie": cookie, CSRFHeader: "wrong"}} {
		if w := do(t, s, "POST", "/ui/api/plan", body, h); w.Code != http.StatusForbidden {
			t.Errorf("headers %v: %d, want 403", h, w.Code)
		}
	}
	// Another session's CSRF token does not do either.
	_, other := login(t, s, adminTok)
	if w := do(t, s, "POST", "/ui/api/plan", body, map[string]string{"Cookie": cookie, CSRFHeader: other}); w.Code != http.StatusForbidden {
		t.Errorf("another session's CSRF token: %d, want 403", w.Code)
	}
	if w := do(t, s, "POST", "/ui/api/plan", body, map[string]string{"Cookie": cookie, CSRFHeader: csrf}); w.Code != http.StatusOK {
		t.Errorf("with the CSRF token: %d %s, want 200", w.Code, w.Body)
	}
	if w := do(t, s, "POST", "/ui/logout", struct{}{}, map[string]string{"Cookie": cookie}); w.Code != http.StatusForbidden {
		t.Errorf("logout without CSRF: %d, want 403", w.Code)
	}
}

func TestViewerMayOnlyRead(t *testing.T) {
	s, f, _ := newTestServer(t)
	cookie, csrf := login(t, s, viewerTok)
	hdr := map[string]string{"Cookie": cookie, CSRFHeader: csrf}
	if w := do(t, s, "GET", "/ui/api/status", nil, hdr); w.Code != http.StatusOK {
		t.Fatalf("viewer status: %d", w.Code)
	}
	w := do(t, s, "POST", "/ui/api/run", PlanRequest{Op: OpSwitchover, Confirm: true}, hdr)
	if w.Code != http.StatusForbidden || f.switchovers != 0 {
		t.Fatalf("viewer switchover: %d, %d switchovers; want 403 and none", w.Code, f.switchovers)
	}
}

func TestSessionExpires(t *testing.T) {
	s, _, c := newTestServer(t)
	cookie, _ := login(t, s, adminTok)
	hdr := map[string]string{"Cookie": cookie}
	// Used every 9 minutes (idle limit 10), it lives until its lifetime.
	for range 6 {
		c.add(9 * time.Minute)
		if w := do(t, s, "GET", "/ui/api/status", nil, hdr); w.Code != http.StatusOK {
			t.Fatalf("at %s: %d, want 200 within the lifetime", c.now(), w.Code)
		}
	}
	c.add(9 * time.Minute) // 63 minutes after login
	if w := do(t, s, "GET", "/ui/api/status", nil, hdr); w.Code != http.StatusUnauthorized {
		t.Fatalf("past the lifetime: %d, want 401", w.Code)
	}
	cookie, _ = login(t, s, adminTok)
	c.add(11 * time.Minute)
	if w := do(t, s, "GET", "/ui/api/status", nil, map[string]string{"Cookie": cookie}); w.Code != http.StatusUnauthorized {
		t.Fatalf("idle past the limit: %d, want 401", w.Code)
	}
}

func TestRotatedTokenEndsItsSessions(t *testing.T) {
	s, _, _ := newTestServer(t)
	adminCookie, _ := login(t, s, adminTok)
	viewerCookie, _ := login(t, s, viewerTok)
	s.SetTokens("new-admin-token-0123456789abcdef01234", viewerTok)
	if w := do(t, s, "GET", "/ui/api/status", nil, map[string]string{"Cookie": adminCookie}); w.Code != http.StatusUnauthorized {
		t.Errorf("session of the rotated admin token: %d, want 401", w.Code)
	}
	if w := do(t, s, "GET", "/ui/api/status", nil, map[string]string{"Cookie": viewerCookie}); w.Code != http.StatusOK {
		t.Errorf("session of the viewer token kept: %d, want 200", w.Code)
	}
	if w := do(t, s, "POST", "/ui/login", LoginRequest{Token: adminTok}, nil); w.Code != http.StatusUnauthorized {
		t.Errorf("login with the old admin token: %d, want 401", w.Code)
	}
}

func TestFailoverRefusedOnThePrimary(t *testing.T) {
	s, f, _ := newTestServer(t)
	cookie, csrf := login(t, s, adminTok)
	hdr := map[string]string{"Cookie": cookie, CSRFHeader: csrf}
	w := do(t, s, "POST", "/ui/api/run", PlanRequest{Op: OpFailover, Confirm: true}, hdr)
	if w.Code != http.StatusConflict || f.failovers != 0 {
		t.Fatalf("failover on the primary: %d (%d failovers), want 409 and none", w.Code, f.failovers)
	}
	if !strings.Contains(w.Body.String(), "answers as primary") || !strings.Contains(w.Body.String(), "node API") {
		t.Fatalf("refusal %s does not say the primary answers, and on which path", w.Body)
	}
}

func TestSwitchoverRefusedWithoutPeerAndNeedsConfirm(t *testing.T) {
	s, f, _ := newTestServer(t)
	cookie, csrf := login(t, s, adminTok)
	hdr := map[string]string{"Cookie": cookie, CSRFHeader: csrf}
	w := do(t, s, "POST", "/ui/api/run", PlanRequest{Op: OpSwitchover}, hdr)
	if w.Code != http.StatusBadRequest {
		t.Fatalf("unconfirmed: %d, want 400", w.Code)
	}
	w = do(t, s, "POST", "/ui/api/run", PlanRequest{Op: OpSwitchover, Confirm: true}, hdr)
	if w.Code != http.StatusConflict || f.switchovers != 0 || !strings.Contains(w.Body.String(), "does not answer") {
		t.Fatalf("peer down: %d %s (%d switchovers), want 409 saying the peer does not answer", w.Code, w.Body, f.switchovers)
	}
	if w := do(t, s, "POST", "/ui/api/plan", PlanRequest{Op: "drop"}, hdr); w.Code != http.StatusBadRequest {
		t.Fatalf("unknown op: %d, want 400", w.Code)
	}
}

func TestSwitchoverPlanChecksCatchUp(t *testing.T) {
	peer := &PeerStatus{View: api.ClusterView{Node: api.NodeInfo{Name: "b", Role: "secondary"}}}
	pv := pairView{self: primaryView(), peer: peer, selfPrimary: true}
	if p := switchoverPlan(pv, false); p.Refused != "" || p.Question == "" || p.On != "a" {
		t.Fatalf("caught up: %+v, want a question, run on a", p)
	}
	pv.self.Replication = &api.ReplicationInfo{State: "disconnected"}
	if p := switchoverPlan(pv, false); !strings.Contains(p.Refused, "not caught up") {
		t.Fatalf("disconnected: %+v, want refused as not caught up", p)
	}
	if p := switchoverPlan(pv, true); p.Refused != "" || len(p.Warnings) == 0 || !strings.Contains(p.Warnings[0], "WILL BE LOST") {
		t.Fatalf("allow data loss: %+v, want the data-loss warning", p)
	}
}

func TestPeerRoutesNeedThePeerCertificate(t *testing.T) {
	s, _, _ := newTestServer(t)
	cookie, csrf := login(t, s, adminTok)
	// Not even an admin session opens the peer routes.
	hdr := map[string]string{"Cookie": cookie, CSRFHeader: csrf}
	if w := do(t, s, "GET", "/ui/peer/status", nil, hdr); w.Code != http.StatusForbidden {
		t.Errorf("peer status without the certificate: %d, want 403", w.Code)
	}
	if w := do(t, s, "POST", "/ui/peer/switchover", api.SwitchoverRequest{}, hdr); w.Code != http.StatusForbidden {
		t.Errorf("peer switchover without the certificate: %d, want 403", w.Code)
	}
}

func TestPageIsEmbedded(t *testing.T) {
	s, _, _ := newTestServer(t)
	for _, p := range []string{"/ui/", "/ui/app.js", "/ui/style.css"} {
		w := do(t, s, "GET", p, nil, nil)
		if w.Code != http.StatusOK || w.Body.Len() == 0 {
			t.Fatalf("%s: %d (%d bytes)", p, w.Code, w.Body.Len())
		}
		if !strings.Contains(w.Header().Get("Content-Security-Policy"), "default-src 'self'") {
			t.Errorf("%s: CSP %q", p, w.Header().Get("Content-Security-Policy"))
		}
		if strings.Contains(w.Body.String(), "http://") && p != "/ui/app.js" || strings.Contains(w.Body.String(), "https://") {
			t.Errorf("%s refers to another site: the page must load nothing from elsewhere", p)
		}
	}
}

func TestHistoryKeepsTheLastHour(t *testing.T) {
	h := newHistory(historySlots)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	v := primaryView()
	for i := range historySlots + 50 {
		v.Node.Postgres.LSN = "0/" + strings.ToUpper(strconvHex(uint64(i)*1000))
		v.Replication.LagBytes = int64(i)
		commits := func() (int64, bool) { return int64(i) * 50, true }
		h.observe(t0.Add(time.Duration(i)*sampleEvery), v, commits)
		// A poll in between adds nothing, and counts nothing.
		h.observe(t0.Add(time.Duration(i)*sampleEvery+time.Second), v, func() (int64, bool) { t.Fatal("commits counted between samples"); return 0, false })
	}
	got := h.samples()
	if len(got) != historySlots {
		t.Fatalf("%d samples, want %d", len(got), historySlots)
	}
	if got[0].LagBytes != 50 || got[len(got)-1].LagBytes != historySlots+49 {
		t.Fatalf("oldest %d newest %d: want the newest hour, oldest first", got[0].LagBytes, got[len(got)-1].LagBytes)
	}
	if r := got[len(got)-1].WALRate; r != 100 {
		t.Fatalf("WAL rate %v, want 1000 bytes per 10 s = 100/s", r)
	}
	if r := got[len(got)-1].CommitRate; r != 5 {
		t.Fatalf("commit rate %v, want 50 commits per 10 s = 5/s", r)
	}
	// A new role is sampled at once, however soon.
	at := t0.Add(time.Duration(historySlots+50) * sampleEvery)
	v.Node.Role = "secondary"
	h.observe(at.Add(time.Second), v, func() (int64, bool) { return 0, false })
	if s := h.samples(); s[len(s)-1].Role != "secondary" {
		t.Fatalf("the new role was not sampled at once: newest %+v", s[len(s)-1])
	}
}

func strconvHex(n uint64) string { return strconv.FormatUint(n, 16) }

func TestPeerOpenedSessionOnlyByHeaderFromItsOrigin(t *testing.T) {
	s, _, _ := newTestServer(t)
	// As the peer b asks over the pinned link, for the page it served.
	w := httptest.NewRecorder()
	r := httptest.NewRequest("POST", "https://a/ui/peer/session", strings.NewReader(`{"role":"viewer","origin":"https://127.0.0.1:1"}`))
	r.Header.Set("Content-Type", "application/json")
	s.peerSession(w, r)
	if w.Code != http.StatusOK {
		t.Fatalf("peer session: %d %s", w.Code, w.Body)
	}
	var tk PeerTicket
	_ = json.Unmarshal(w.Body.Bytes(), &tk)
	status := func(hdr map[string]string) int { return do(t, s, "GET", "/ui/api/status", nil, hdr).Code }
	if c := status(map[string]string{SessionHeader: tk.Session, "Origin": "https://127.0.0.1:1"}); c != http.StatusOK {
		t.Errorf("from its origin: %d, want 200", c)
	}
	if c := status(map[string]string{SessionHeader: tk.Session, "Origin": "https://evil.example"}); c != http.StatusUnauthorized {
		t.Errorf("from another origin: %d, want 401", c)
	}
	if c := status(map[string]string{SessionHeader: tk.Session}); c != http.StatusUnauthorized {
		t.Errorf("without an origin: %d, want 401", c)
	}
	if c := status(map[string]string{"Cookie": CookieName + "=" + tk.Session}); c != http.StatusUnauthorized {
		t.Errorf("as a cookie: %d, want 401", c)
	}
	// A viewer ticket stays a viewer.
	hdr := map[string]string{SessionHeader: tk.Session, "Origin": "https://127.0.0.1:1", CSRFHeader: tk.CSRF}
	if w := do(t, s, "POST", "/ui/api/run", PlanRequest{Op: OpSwitchover, Confirm: true}, hdr); w.Code != http.StatusForbidden {
		t.Errorf("viewer ticket runs a switchover: %d, want 403", w.Code)
	}
}

func TestCORSOnlyForThePeersOrigins(t *testing.T) {
	s, _, _ := newTestServer(t)
	pre := func(origin string) *httptest.ResponseRecorder {
		return do(t, s, "OPTIONS", "/ui/api/status", nil, map[string]string{"Origin": origin, "Access-Control-Request-Method": "GET"})
	}
	if w := pre("https://127.0.0.1:1"); w.Code != http.StatusNoContent || w.Header().Get("Access-Control-Allow-Origin") != "https://127.0.0.1:1" {
		t.Errorf("the peer's origin: %d, allow %q", w.Code, w.Header().Get("Access-Control-Allow-Origin"))
	}
	if w := pre("https://evil.example"); w.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("another origin was granted CORS: %q", w.Header().Get("Access-Control-Allow-Origin"))
	}
}

func TestPageMayConnectOnlyToThePeer(t *testing.T) {
	s, _, _ := newTestServer(t)
	csp := do(t, s, "GET", "/ui/", nil, nil).Header().Get("Content-Security-Policy")
	if !strings.Contains(csp, "connect-src 'self' https://127.0.0.1:1;") {
		t.Fatalf("CSP %q: the page must be allowed to ask the peer, and nothing else", csp)
	}
}

func TestPagesShareOneViewPerHalfSecond(t *testing.T) {
	s, f, _ := newTestServer(t)
	cookie, csrf := login(t, s, adminTok)
	f.mu.Lock()
	f.views = 0
	f.mu.Unlock()
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() { do(t, s, "GET", "/ui/api/status", nil, map[string]string{"Cookie": cookie}) })
	}
	wg.Wait()
	f.mu.Lock()
	n := f.views
	f.mu.Unlock()
	if n > 2 {
		t.Fatalf("20 polls at once asked the node for its view %d times, want one (two at a half-second edge)", n)
	}
	// A plan looks afresh.
	do(t, s, "POST", "/ui/api/plan", PlanRequest{Op: OpFailover}, map[string]string{"Cookie": cookie, CSRFHeader: csrf})
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.views != n+1 {
		t.Fatalf("a plan took %d views, want a fresh one", f.views-n)
	}
}
