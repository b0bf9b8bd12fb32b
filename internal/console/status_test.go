package console

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandem-ha/tandem/internal/api"
	"github.com/tandem-ha/tandem/internal/identity"
)

type backend struct{}

func (backend) Node(context.Context) api.NodeInfo {
	return api.NodeInfo{Name: "a", IP: "127.0.0.1", TandemdVersion: "test", Postgres: api.PostgresInfo{State: "running", LSN: "0/3000148", Version: "15.18", Port: 5432}}
}

// startNode runs a real node API (TLS with a self-signed node certificate)
// on loopback and returns its address and token.
func startNode(t *testing.T, stateDir string) (addr, token string) {
	t.Helper()
	cert, err := identity.EnsureCert(stateDir, "a", []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	token, err = identity.EnsureToken(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	s := api.NewServer(api.Config{Listen: "127.0.0.1:0", Cert: cert, Token: token, Backend: backend{}, Log: slog.New(slog.DiscardHandler)})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop(context.Background()) })
	return s.Addr(), token
}

func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Main(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestStatusPinsOnFirstContactOnlyWhenAllowed(t *testing.T) {
	useCacheDir(t)
	addr, token := startNode(t, t.TempDir())
	t.Setenv("TANDEM_TOKEN", token)

	code, _, stderr := run(t, "status", "--endpoint", addr)
	if code != ExitRefused || !strings.Contains(stderr, "not trusted yet") || !strings.Contains(stderr, "--fingerprint sha256:") {
		t.Fatalf("first contact without consent: code %d, stderr %q", code, stderr)
	}
	c, _ := LoadCache()
	if len(c.Pins) != 0 {
		t.Fatalf("a refused certificate was pinned: %v", c.Pins)
	}

	code, stdout, stderr := run(t, "status", "--endpoint", "https://"+addr, "--trust-new", "-o", "json")
	if code != 0 {
		t.Fatalf("code %d: %s", code, stderr)
	}
	var s StatusOutput
	if err := json.Unmarshal([]byte(stdout), &s); err != nil {
		t.Fatalf("%v: %s", err, stdout)
	}
	if len(s.Nodes) != 1 || !s.Nodes[0].Reachable || s.Nodes[0].Name != "a" || s.Nodes[0].Postgres.State != "running" || s.Nodes[0].Postgres.LSN != "0/3000148" {
		t.Fatalf("unexpected status %+v", s)
	}
	c, _ = LoadCache()
	if !strings.HasPrefix(c.Pins[addr], "sha256:") {
		t.Fatalf("certificate not pinned: %v", c.Pins)
	}
	if fi, err := os.Stat(filepath.Join(os.Getenv("TANDEM_CACHE_DIR"), cacheFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("cache file mode: %v %v", fi.Mode(), err)
	}

	// Pinned now: no flag needed, table output.
	code, stdout, stderr = run(t, "status", "--endpoint", addr)
	if code != 0 || !strings.Contains(stdout, "running") || !strings.Contains(stdout, "0/3000148") {
		t.Fatalf("pinned status: %d %q %q", code, stdout, stderr)
	}
}

func TestStatusFingerprintFlag(t *testing.T) {
	useCacheDir(t)
	dir := t.TempDir()
	addr, token := startNode(t, dir)
	t.Setenv("TANDEM_TOKEN", token)
	cert, _ := identity.EnsureCert(dir, "a", nil)
	fp := identity.Fingerprint(cert.Certificate[0])

	code, _, stderr := run(t, "status", "--endpoint", addr, "--fingerprint", "sha256:"+strings.Repeat("0", 64))
	if code != ExitRefused || !strings.Contains(stderr, "not the sha256:000") {
		t.Fatalf("wrong fingerprint: %d %q", code, stderr)
	}
	code, _, stderr = run(t, "status", "--endpoint", addr, "--fingerprint", fp)
	if code != 0 {
		t.Fatalf("right fingerprint: %d %q", code, stderr)
	}
}

func TestChangedCertificateIsRefused(t *testing.T) {
	useCacheDir(t)
	addr, token := startNode(t, t.TempDir())
	t.Setenv("TANDEM_TOKEN", token)
	c, _ := LoadCache()
	c.Pins[addr] = "sha256:" + strings.Repeat("ab", 32)
	if err := c.Save(); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := run(t, "status", "--endpoint", addr, "--trust-new")
	if code != ExitRefused || !strings.Contains(stderr, "CHANGED") || !strings.Contains(stderr, "tandem trust forget "+addr) {
		t.Fatalf("changed certificate: %d %q", code, stderr)
	}
	if code, _, _ := run(t, "trust", "forget", addr); code != 0 {
		t.Fatal("forget failed")
	}
	if code, _, stderr := run(t, "status", "--endpoint", addr, "--trust-new"); code != 0 {
		t.Fatalf("after forget: %d %s", code, stderr)
	}
}

func TestWrongTokenIsRefused(t *testing.T) {
	useCacheDir(t)
	addr, _ := startNode(t, t.TempDir())
	t.Setenv("TANDEM_TOKEN", "not-the-token-but-long-enough-to-look-real")
	code, _, stderr := run(t, "status", "--endpoint", addr, "--trust-new")
	if code != ExitRefused || !strings.Contains(stderr, "unauthorized") {
		t.Fatalf("wrong token: %d %q", code, stderr)
	}
}

func TestUnreachableAndUsageErrors(t *testing.T) {
	useCacheDir(t)
	t.Setenv("TANDEM_TOKEN", "x")
	code, stdout, _ := run(t, "status", "--endpoint", "127.0.0.1:1", "-o", "json")
	if code != ExitUnreachable {
		t.Fatalf("unreachable: code %d", code)
	}
	var s StatusOutput
	if err := json.Unmarshal([]byte(stdout), &s); err != nil || s.Nodes[0].Reachable {
		t.Fatalf("unreachable node must still be reported: %v %s", err, stdout)
	}
	for _, args := range [][]string{
		{"status", "--endpoint", "http://127.0.0.1:7400"},
		{"status", "--endpoint", "127.0.0.1:99999"},
		{"status", "--endpoint", "127.0.0.1", "-o", "yaml"},
		{"status", "--bogus"},
		{"status", "--endpoint", "127.0.0.1", "--fingerprint", "md5:aa"},
	} {
		if code, _, stderr := run(t, args...); code != ExitUsage {
			t.Errorf("%v: code %d, want %d (%s)", args, code, ExitUsage, stderr)
		}
	}
	t.Setenv("TANDEM_TOKEN", "")
	if code, _, stderr := run(t, "status", "--endpoint", "127.0.0.1"); code != ExitUsage || !strings.Contains(stderr, "TANDEM_TOKEN") {
		t.Errorf("missing token: %d %q", code, stderr)
	}
}

func TestNormalizeEndpoint(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.1":               "10.0.0.1:7400",
		"10.0.0.1:8443":          "10.0.0.1:8443",
		"https://db.example:123": "db.example:123",
		"https://db.example":     "db.example:7400",
		"fd00::1":                "[fd00::1]:7400",
		"[fd00::1]:9":            "[fd00::1]:9",
	} {
		got, err := NormalizeEndpoint(in)
		if err != nil || got != want {
			t.Errorf("%q → %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestOperationNotesShowTheOperationInFlightAndTheLastOne(t *testing.T) {
	started := time.Now().Add(-1500 * time.Millisecond)
	finished := time.Now().Add(-30 * time.Second)
	n := api.NodeInfo{
		Op: "switchover:promote-peer",
		Running: &api.OperationInfo{Kind: "switchover", By: "console", Step: "promote-peer", StartedAt: started, Outcome: api.OutcomeRunning,
			Steps: []api.Step{{Name: "checks", MS: 3}, {Name: "shutdown", MS: 120}}},
		Last: &api.OperationInfo{Kind: "failover", By: "console", StartedAt: finished.Add(-200 * time.Millisecond), FinishedAt: &finished, Outcome: api.OutcomeFailed, Error: "the promotion did not finish"},
	}
	notes := strings.Join(operationNotes("a", n), "\n")
	for _, want := range []string{"a: operation in progress: switchover:promote-peer, started by console 1.5s ago", "; done: checks 3 ms, shutdown 120 ms", "a: last operation: failover (by console) FAILED", "the promotion did not finish"} {
		if !strings.Contains(notes, want) {
			t.Errorf("notes lack %q:\n%s", want, notes)
		}
	}
	// A last operation long ago, and boot, are not worth a line.
	old := time.Now().Add(-time.Hour)
	n = api.NodeInfo{Last: &api.OperationInfo{Kind: "switchover", StartedAt: old, FinishedAt: &old, Outcome: api.OutcomeSucceeded}}
	if got := operationNotes("a", n); len(got) != 0 {
		t.Errorf("notes for an operation an hour ago: %v", got)
	}
}

// Nodes two protocols apart are named loudly, with the node to upgrade;
// one apart (a rolling update) is not an alarm.
func TestProtocolGap(t *testing.T) {
	node := func(name, ver string, proto int) NodeStatus {
		var n NodeStatus
		n.Name, n.TandemdVersion, n.Protocol, n.Reachable = name, ver, proto, true
		return n
	}
	if msg := protocolGap([]NodeStatus{node("a", "1.0", 1), node("b", "1.1", 2)}); msg != "" {
		t.Errorf("N and N+1: %q, want nothing", msg)
	}
	msg := protocolGap([]NodeStatus{node("a", "3.0", 3), node("b", "1.0", 1)})
	if !strings.Contains(msg, "INCOMPATIBLE") || !strings.Contains(msg, "b speaks protocol 1, a protocol 3") || !strings.Contains(msg, "until b is upgraded (tandem upgrade --version 3.0)") {
		t.Errorf("two protocols apart: %q", msg)
	}
	down := node("a", "3.0", 3)
	down.Reachable = false
	if msg := protocolGap([]NodeStatus{down, node("b", "1.0", 1)}); msg != "" {
		t.Errorf("with a unreachable: %q, want nothing", msg)
	}
	if notes := versionsNote([]NodeStatus{node("a", "3.0", 3), node("b", "1.0", 1)}); len(notes) < 2 || !strings.Contains(notes[1], "INCOMPATIBLE") {
		t.Errorf("versionsNote: %q, want the versions line then the incompatibility", notes)
	}
}
