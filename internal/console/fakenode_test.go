package console

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandem-ha/tandem/internal/api"
	"github.com/tandem-ha/tandem/internal/identity"
)

// fakeNode is a node API as the console sees it: TLS with a real node
// certificate, bearer token, the JSON error envelope, canned answers. It
// records every request so tests can assert what was (not) sent.
type fakeNode struct {
	t     *testing.T
	addr  string
	token string
	fp    string
	srv   *http.Server
	ln    net.Listener

	mu          sync.Mutex
	info        api.NodeInfo
	record      *api.Record
	replication *api.ReplicationInfo
	clusterIP   api.ClusterIPInfo
	peer        *api.Member
	contact     *api.PeerContact
	events      []api.Event
	checks      api.PreflightResult
	assemble    api.AssembleResult
	disassemble api.DisassembleResult
	failover    api.FailoverResult
	failWith    map[string]*api.Error // path → error answer
	requests    []fakeRequest

	// A certificate rotation: the state dir, the certificate served (the
	// switch replaces it), and the fake whose view of its peer follows.
	dir          string
	cert         atomic.Pointer[tls.Certificate]
	rotationPeer *fakeNode
	maintenance  api.MaintenanceResult // answers POST /v1/cluster/maintenance
}

type fakeRequest struct {
	Method, Path string
	Body         []byte
}

func newFakeNode(t *testing.T, name, ip string, versionNum int) *fakeNode {
	t.Helper()
	dir := t.TempDir()
	cert, err := identity.EnsureCert(dir, name, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	token, err := identity.EnsureToken(dir)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeNode{t: t, addr: ln.Addr().String(), token: token, fp: identity.Fingerprint(cert.Certificate[0]), ln: ln, failWith: map[string]*api.Error{}, dir: dir}
	f.cert.Store(&cert)
	_, port, _ := net.SplitHostPort(f.addr)
	apiPort, _ := strconv.Atoi(port)
	f.info = api.NodeInfo{
		Name: name, IP: ip, APIPort: apiPort, TandemdVersion: "test", Fingerprint: f.fp, Role: roleNone,
		Postgres: api.PostgresInfo{State: "running", Port: 5432, LSN: "0/3000148", VersionNum: versionNum, Version: strconv.Itoa(versionNum/10000) + "." + strconv.Itoa(versionNum%100)},
	}
	// Handshakes the console refuses on purpose would be logged.
	f.srv = &http.Server{Handler: http.HandlerFunc(f.serve), ReadHeaderTimeout: 5 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	getCert := func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return f.cert.Load(), nil }
	go f.srv.Serve(tls.NewListener(ln, &tls.Config{GetCertificate: getCert, MinVersion: tls.VersionTLS12}))
	t.Cleanup(f.stop)
	return f
}

// stop makes the node unreachable: connections are refused.
func (f *fakeNode) stop() {
	f.srv.Close()
}

func (f *fakeNode) member() api.Member {
	return api.Member{Name: f.info.Name, IP: f.info.IP, APIPort: f.info.APIPort, PGPort: f.info.Postgres.Port, Fingerprint: f.fp}
}

func (f *fakeNode) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, fakeRequest{Method: r.Method, Path: r.URL.Path, Body: body})
	reply := func(status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(v)
	}
	fail := func(e *api.Error) {
		reply(e.Status, api.ErrorBody{Error: api.ErrorDetail{Code: e.Code, Message: e.Message}})
	}
	if tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); tok != f.token {
		fail(api.Errorf(http.StatusUnauthorized, api.CodeUnauthorized, "missing or wrong admin token"))
		return
	}
	if e := f.failWith[r.URL.Path]; e != nil {
		fail(e)
		return
	}
	want := map[string]string{
		"/v1/node": http.MethodGet, "/v1/cluster": http.MethodGet, "/v1/events": http.MethodGet,
		"/v1/preflight": http.MethodPost, "/v1/cluster/assemble": http.MethodPost, "/v1/cluster/disassemble": http.MethodPost,
		"/v1/cert/prepare": http.MethodPost, "/v1/cert/switch": http.MethodPost,
		"/v1/cluster/failover": http.MethodPost, "/v1/cluster/maintenance": http.MethodPost,
	}
	m, ok := want[r.URL.Path]
	switch {
	case !ok:
		fail(api.Errorf(http.StatusNotFound, api.CodeNotFound, "no endpoint %s", r.URL.Path))
		return
	case m != r.Method:
		fail(api.Errorf(http.StatusMethodNotAllowed, api.CodeMethodNotAllowed, "use %s", m))
		return
	case m == http.MethodPost && r.Header.Get("Content-Type") != "application/json" && r.URL.Path != "/v1/cert/prepare":
		fail(api.Errorf(http.StatusBadRequest, api.CodeBadRequest, "send JSON"))
		return
	}
	switch r.URL.Path {
	case "/v1/node":
		reply(http.StatusOK, f.info)
	case "/v1/cluster":
		reply(http.StatusOK, api.ClusterView{Node: f.info, Record: f.record, Replication: f.replication, ClusterIP: f.clusterIP, Peer: f.peer, PeerContact: f.contact})
	case "/v1/events":
		n, err := strconv.Atoi(r.URL.Query().Get("limit"))
		if err != nil {
			fail(api.Errorf(http.StatusBadRequest, api.CodeBadRequest, "limit"))
			return
		}
		// The latest n, newest first: the console must not rely on order.
		ev := append([]api.Event{}, f.events...)
		sort.Slice(ev, func(i, j int) bool { return ev[i].ID > ev[j].ID })
		if len(ev) > n {
			ev = ev[:n]
		}
		reply(http.StatusOK, api.EventList{Events: ev})
	case "/v1/preflight":
		reply(http.StatusOK, f.checks)
	case "/v1/cluster/assemble":
		reply(http.StatusOK, f.assemble)
	case "/v1/cluster/disassemble":
		reply(http.StatusOK, f.disassemble)
	case "/v1/cert/prepare":
		next, err := identity.PrepareNext(f.dir, f.info.Name, []string{"127.0.0.1"})
		if err != nil {
			fail(api.Errorf(http.StatusInternalServerError, api.CodeInternal, "%v", err))
			return
		}
		f.info.NextFingerprint = identity.FingerprintOf(next)
		if p := f.rotationPeer; p != nil {
			p.mu.Lock()
			p.peer.NextFingerprint = f.info.NextFingerprint
			p.mu.Unlock()
		}
		reply(http.StatusOK, api.CertPrepareResult{Node: f.info.Name, Fingerprint: f.fp, NextFingerprint: f.info.NextFingerprint})
	case "/v1/cert/switch":
		var req api.CertSwitchRequest
		_ = json.Unmarshal(body, &req)
		if req.Fingerprint != f.info.NextFingerprint {
			fail(api.Errorf(http.StatusConflict, api.CodeConflict, "not the prepared certificate"))
			return
		}
		cert, err := identity.SwitchToNext(f.dir, nil)
		if err != nil {
			fail(api.Errorf(http.StatusInternalServerError, api.CodeInternal, "%v", err))
			return
		}
		old := f.fp
		f.cert.Store(&cert)
		f.fp, f.info.Fingerprint, f.info.NextFingerprint = req.Fingerprint, req.Fingerprint, ""
		if p := f.rotationPeer; p != nil {
			p.mu.Lock()
			p.peer.Fingerprint, p.peer.NextFingerprint = req.Fingerprint, ""
			p.mu.Unlock()
		}
		reply(http.StatusOK, api.CertSwitchResult{Node: f.info.Name, Old: old, Fingerprint: req.Fingerprint, Peer: "b", PeerConfirmed: true, RecordUpdated: true})
	case "/v1/cluster/failover":
		reply(http.StatusOK, f.failover)
	case "/v1/cluster/maintenance":
		reply(http.StatusOK, f.maintenance)
	}
}

// posts lists the paths POSTed to the node.
func (f *fakeNode) posts() []fakeRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []fakeRequest
	for _, r := range f.requests {
		if r.Method == http.MethodPost {
			out = append(out, r)
		}
	}
	return out
}

func (f *fakeNode) requestCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.requests)
}

func (f *fakeNode) set(fn func(f *fakeNode)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// runIn runs the console with stdin, as a test operator.
func runIn(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	root := NewRootCommand()
	root.SetIn(strings.NewReader(stdin))
	code = execute(root, args, &out, &errb)
	return code, out.String(), errb.String()
}

// onTerminal makes the console believe it may ask questions.
func onTerminal(t *testing.T) {
	old := canAsk
	canAsk = func(io.Reader) bool { return true }
	t.Cleanup(func() { canAsk = old })
}

func decode[T any](t *testing.T, s string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("not the expected JSON (%v):\n%s", err, s)
	}
	return v
}

// useCacheDir gives the console a cache directory of the test's own, 0700
// as the console wants it (t.TempDir is 0755).
func useCacheDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TANDEM_CACHE_DIR", dir)
	return dir
}
