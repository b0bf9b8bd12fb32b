package webui

import (
	"crypto/tls"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/tandem-ha/tandem/internal/api"
	"github.com/tandem-ha/tandem/internal/identity"
)

// pair is two web consoles over real TLS with pinned node certificates,
// as on two nodes: a primary, b secondary.
type pair struct {
	a, b   *Server
	fa, fb *fakeNode
	sa, sb *httptest.Server
}

func nodeCert(t *testing.T, name string) (tls.Certificate, string) {
	t.Helper()
	c, err := identity.EnsureCert(t.TempDir(), name, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	return c, identity.Fingerprint(c.Certificate[0])
}

func serve(t *testing.T, h http.Handler, cert tls.Certificate) *httptest.Server {
	t.Helper()
	s := httptest.NewUnstartedServer(h)
	s.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequestClientCert}
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

func member(t *testing.T, name string, s *httptest.Server, fp string) *api.Member {
	host, port, _ := net.SplitHostPort(s.Listener.Addr().String())
	p, _ := strconv.Atoi(port)
	return &api.Member{Name: name, IP: host, APIPort: p, Fingerprint: fp}
}

func newPair(t *testing.T) *pair {
	t.Helper()
	ca, fpa := nodeCert(t, "a")
	cb, fpb := nodeCert(t, "b")
	p := &pair{fa: &fakeNode{cert: &ca, peerFP: fpb}, fb: &fakeNode{cert: &cb, peerFP: fpa}}
	p.a = New(Config{Backend: p.fa, AdminToken: adminTok, ViewerToken: viewerTok})
	p.b = New(Config{Backend: p.fb, AdminToken: adminTok, ViewerToken: viewerTok})
	p.sa, p.sb = serve(t, p.a, ca), serve(t, p.b, cb)
	ma, mb := member(t, "a", p.sa, fpa), member(t, "b", p.sb, fpb)
	p.fa.view = api.ClusterView{
		Node:        api.NodeInfo{Name: "a", IP: ma.IP, APIPort: ma.APIPort, Role: "primary", Term: 1, Cluster: "c", Fingerprint: fpa},
		Record:      &api.Record{Name: "c", Term: 1, Primary: "a", ClusterIP: "127.0.0.2/8"},
		Peer:        mb,
		Replication: &api.ReplicationInfo{State: "streaming"},
	}
	p.fb.view = api.ClusterView{
		Node:   api.NodeInfo{Name: "b", IP: mb.IP, APIPort: mb.APIPort, Role: "secondary", Term: 1, Cluster: "c", Fingerprint: fpb},
		Record: &api.Record{Name: "c", Term: 1, Primary: "a", ClusterIP: "127.0.0.2/8"},
		Peer:   ma,
	}
	return p
}

func TestStatusShowsThePeerAskedOverThePinnedLink(t *testing.T) {
	p := newPair(t)
	cookie, _ := login(t, p.a, adminTok)
	w := do(t, p.a, "GET", "/ui/api/status", nil, map[string]string{"Cookie": cookie})
	var st Status
	if err := json.Unmarshal(w.Body.Bytes(), &st); err != nil || w.Code != http.StatusOK {
		t.Fatalf("status: %d %s", w.Code, w.Body)
	}
	if len(st.Nodes) != 2 || !st.Nodes[1].Reachable || st.Nodes[1].View.Node.Role != "secondary" || st.Nodes[1].Via != "peer API from a" {
		t.Fatalf("nodes %+v: want b reachable as secondary, asked by a", st.Nodes)
	}
	if st.Peer == nil || st.Peer.URL != "https://"+p.sb.Listener.Addr().String()+"/ui/" {
		t.Fatalf("peer ticket %+v: want one for b", st.Peer)
	}
	// The page, with a silent, asks b with the ticket, from its origin.
	w = do(t, p.b, "GET", "/ui/api/status", nil, map[string]string{SessionHeader: st.Peer.Session, "Origin": "https://node"})
	var fromB Status
	_ = json.Unmarshal(w.Body.Bytes(), &fromB)
	if w.Code != http.StatusOK || fromB.AnsweredBy != "b" || fromB.Role != RoleAdmin {
		t.Fatalf("b with the ticket: %d %s", w.Code, w.Body)
	}
}

func TestPeerRoutesRefuseAnotherCertificate(t *testing.T) {
	p := newPair(t)
	stranger, _ := nodeCert(t, "x")
	for _, certs := range [][]tls.Certificate{nil, {stranger}} {
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
			InsecureSkipVerify: true, //nolint:gosec // the test checks the server's refusal, not its certificate
			Certificates:       certs,
		}}}
		resp, err := c.Get(p.sb.URL + "/ui/peer/status")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("with %d certificates not pinned: %d, want 403", len(certs), resp.StatusCode)
		}
		c.CloseIdleConnections()
	}
}

func TestSwitchoverFromTheSecondarysPageRunsOnThePrimary(t *testing.T) {
	p := newPair(t)
	cookie, csrf := login(t, p.b, adminTok)
	w := do(t, p.b, "POST", "/ui/api/run", PlanRequest{Op: OpSwitchover, Confirm: true}, map[string]string{"Cookie": cookie, CSRFHeader: csrf})
	if w.Code != http.StatusOK {
		t.Fatalf("switchover from b: %d %s", w.Code, w.Body)
	}
	if p.fa.switchovers != 1 || p.fb.switchovers != 0 {
		t.Fatalf("switchovers: a %d, b %d; want the primary a to run it", p.fa.switchovers, p.fb.switchovers)
	}
	// And a failover from b is refused while a answers as primary.
	w = do(t, p.b, "POST", "/ui/api/run", PlanRequest{Op: OpFailover, Confirm: true}, map[string]string{"Cookie": cookie, CSRFHeader: csrf})
	if w.Code != http.StatusConflict || p.fb.failovers != 0 {
		t.Fatalf("failover from b with a up: %d %s", w.Code, w.Body)
	}
}
