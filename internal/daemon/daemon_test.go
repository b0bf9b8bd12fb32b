package daemon

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandem-ha/tandem/internal/api"
	"github.com/tandem-ha/tandem/internal/cluster"
	"github.com/tandem-ha/tandem/internal/config"
	"github.com/tandem-ha/tandem/internal/identity"
)

// The configuration refuses postgres.hba rules for the replication role by
// name; it must be the role the cluster logic creates.
func TestReplicationRoleNamesAgree(t *testing.T) {
	if config.ReplicationRole != cluster.ReplicationUser {
		t.Fatalf("config.ReplicationRole %q, cluster.ReplicationUser %q", config.ReplicationRole, cluster.ReplicationUser)
	}
}

type fakeNode struct{}

func (fakeNode) Node(context.Context) api.NodeInfo { return api.NodeInfo{Name: "a"} }

// TestReloadTokens: SIGHUP's token reload puts a rotated admin token (or
// a new one, when the file was removed) and metrics token in force, and
// keeps the ones in force when a file is refused.
func TestReloadTokens(t *testing.T) {
	dir := t.TempDir()
	metricsFile := filepath.Join(dir, "metrics-token")
	write := func(p, s string, mode os.FileMode) {
		t.Helper()
		if err := os.WriteFile(p, []byte(s+"\n"), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	const admin1, metrics1 = "first-admin-token-0123456789abcdef", "first-metrics-token"
	write(filepath.Join(dir, identity.TokenFile), admin1, 0o600)
	write(metricsFile, metrics1, 0o600)
	cfg := config.Config{StateDir: dir, Metrics: config.Metrics{TokenFile: metricsFile}}
	d := New(cfg, "", slog.New(slog.DiscardHandler))
	if err := d.ReloadTokens(); err == nil {
		t.Error("ReloadTokens before the API exists should say so")
	}
	metricsOK := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {})
	admin, metrics, err := readTokens(cfg)
	if err != nil || admin != admin1 || metrics != metrics1 {
		t.Fatalf("readTokens = %q, %q, %v", admin, metrics, err)
	}
	d.srv = api.NewServer(api.Config{Token: admin, Backend: fakeNode{}, Log: slog.New(slog.DiscardHandler), Metrics: metricsOK, MetricsAccess: api.MetricsAccess{Token: metrics}})
	h := d.srv.Handler()
	status := func(path, token string) int {
		req := httptest.NewRequest("GET", path, nil)
		req.RemoteAddr = "10.0.0.5:4000"
		req.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}

	// Rotation: new files, then SIGHUP.
	const admin2, metrics2 = "second-admin-token-0123456789abcdef", "second-metrics-token"
	write(filepath.Join(dir, identity.TokenFile), admin2, 0o600)
	write(metricsFile, metrics2, 0o600)
	if err := d.ReloadTokens(); err != nil {
		t.Fatal(err)
	}
	if status("/v1/node", admin1) != 401 || status("/v1/node", admin2) != 200 || status("/metrics", metrics1) != 401 || status("/metrics", metrics2) != 200 {
		t.Error("after the reload the old tokens should be refused and the new ones accepted")
	}

	// A removed admin-token file: a new random token, written and in force.
	if err := os.Remove(filepath.Join(dir, identity.TokenFile)); err != nil {
		t.Fatal(err)
	}
	if err := d.ReloadTokens(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, identity.TokenFile))
	admin3 := strings.TrimSpace(string(b))
	if err != nil || len(admin3) < 32 || status("/v1/node", admin3) != 200 || status("/v1/node", admin2) != 401 {
		t.Errorf("a removed admin token should be replaced by a new one in force: %q, %v", admin3, err)
	}

	// A refused metrics token file keeps both tokens in force.
	write(metricsFile, "third-metrics-token", 0o644)
	if err := d.ReloadTokens(); err == nil || !strings.Contains(err.Error(), "metrics.token_file") {
		t.Errorf("a metrics token file readable by others: %v", err)
	}
	if status("/metrics", metrics2) != 200 || status("/v1/node", admin3) != 200 {
		t.Error("after a refused reload the tokens in force should stay")
	}
}
