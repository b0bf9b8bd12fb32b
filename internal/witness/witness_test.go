package witness

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tandem-ha/tandem/internal/api"
	"github.com/tandem-ha/tandem/internal/config"
	"github.com/tandem-ha/tandem/internal/identity"
)

// freePort is a loopback port nothing listens on right now.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "witness.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func runCommand(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := NewCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

// What an operator types before enabling the unit: --check names every
// problem of the file at once, and passes once the file is right.
func TestCommandCheck(t *testing.T) {
	// TANDEMD_* variables of the machine running the test would override
	// the files: unset them for the test (t.Setenv restores them after).
	for _, k := range os.Environ() {
		if name, _, _ := strings.Cut(k, "="); strings.HasPrefix(name, "TANDEMD_") {
			t.Setenv(name, "")
			os.Unsetenv(name)
		}
	}
	_, err := runCommand(t, "--config", writeConfig(t, "node:\n  name: \"\"\n  ip: \"\"\n"), "--check")
	var p *config.Problems
	if !errors.As(err, &p) || !strings.Contains(err.Error(), "node.name is required") || !strings.Contains(err.Error(), "node.ip is required") {
		t.Fatalf("--check on an empty node section: %v, want the problems node.name and node.ip", err)
	}
	state := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	good := writeConfig(t, "node:\n  name: w\n  ip: 127.0.0.1\napi:\n  listen: 127.0.0.1:7400\nstate_dir: "+state+"\n")
	out, err := runCommand(t, "--config", good, "--check")
	if err != nil || !strings.Contains(out, "configuration ok") {
		t.Fatalf("--check on a good config: %v\n%s", err, out)
	}
	out, err = runCommand(t, "--config", good, "--print-config")
	if err != nil || !strings.Contains(out, "name: w") || !strings.Contains(out, state) {
		t.Fatalf("--print-config: %v\n%s", err, out)
	}
	if _, err := runCommand(t, "--config", good, "extra"); err == nil {
		t.Error("an argument was accepted")
	}
}

// A witness run in-process, as tandem-witness runs it: its API answers
// with its own certificate and token, says it is a witness with no
// cluster, refuses a join it cannot accept without changing anything, and
// stops when asked.
func TestRunServesTheWitnessAPI(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	port := freePort(t)
	cfg := config.Defaults()
	cfg.Node.Name, cfg.Node.IP = "w", "127.0.0.1"
	cfg.API.Listen = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cfg.StateDir = state
	cfg.Quorum.PeerPort, cfg.Quorum.ClientPort = freePort(t), freePort(t)
	if err := cfg.ValidateWitness(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("the witness did not stop within 10 s")
		}
	}()

	var c *api.Client
	deadline := time.Now().Add(10 * time.Second)
	for {
		tok, terr := os.ReadFile(filepath.Join(state, identity.TokenFile))
		certPEM, cerr := os.ReadFile(filepath.Join(state, identity.CertFile))
		if terr == nil && cerr == nil {
			b, _ := pem.Decode(certPEM)
			if b == nil {
				t.Fatal("the witness's certificate is not PEM")
			}
			fp := identity.Fingerprint(b.Bytes)
			c = api.NewClient(api.ClientConfig{Addr: cfg.API.Listen, Token: strings.TrimSpace(string(tok)), Fingerprint: fp})
			if _, err := c.Witness(context.Background()); err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the witness API did not answer within 10 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	defer c.Close()
	n, err := c.Node(context.Background())
	if err != nil || n.Role != "witness" || n.Name != "w" || n.Cluster != "" || n.Postgres.State != "none" || n.QuorumMember == nil {
		t.Fatalf("GET /v1/node: %+v, %v", n, err)
	}
	wi, err := c.Witness(context.Background())
	if err != nil || wi.State != "none" || wi.Member.PeerAddr != net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.Quorum.PeerPort)) {
		t.Fatalf("GET /v1/witness: %+v, %v", wi, err)
	}
	_, err = c.WitnessJoin(context.Background(), api.WitnessJoin{Cluster: "bad name!"})
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Status != 400 || !strings.Contains(ae.Message, "cluster name") {
		t.Fatalf("join with a bad cluster name: %v, want a 400 naming the cluster name", err)
	}
	if _, err := os.Stat(filepath.Join(state, witnessFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused join wrote %s: %v", witnessFile, err)
	}
	// A second witness on the same state dir is refused: it is locked.
	if err := Run(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil))); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Errorf("a second witness on the same state dir: %v", err)
	}
}
