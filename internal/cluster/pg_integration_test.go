package cluster

// Integration tests of the node over a real PostgreSQL: binaries found as
// tandemd finds them, data in t.TempDir(), run as the OS user postgres
// (PostgreSQL refuses root), as in internal/postgres.

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tandem-ha/tandem/internal/config"
	"github.com/tandem-ha/tandem/internal/postgres"
	"github.com/tandem-ha/tandem/internal/state"
)

// logBuffer keeps every log line of a test, PostgreSQL's own among them
// (the supervisor streams the postmaster's output into the log).
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// realPG starts a real PostgreSQL (initdb on first start) with tandem's
// base settings plus extra, and stops it when the test ends.
func realPG(t *testing.T, extra map[string]string, logs *logBuffer) (*postgres.Supervisor, postgres.Options) {
	t.Helper()
	bin, err := config.FindPostgresBinDir()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("PostgreSQL binaries are required in CI: %v", err)
		}
		t.Skipf("skipping integration test: %v", err)
	}
	osUser := "postgres"
	if os.Geteuid() != 0 {
		u, err := user.Current()
		if err != nil {
			t.Fatal(err)
		}
		osUser = u.Username
	} else if _, err := user.Lookup(osUser); err != nil {
		t.Skipf("skipping integration test: running as root and there is no OS user postgres")
	}
	dir := t.TempDir()
	for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	settings := baseSettings("1GB")
	for k, v := range extra {
		settings[k] = v
	}
	opts := postgres.Options{
		BinDir:          bin,
		DataDir:         filepath.Join(dir, "data"),
		SocketDir:       filepath.Join(dir, "sock"),
		Port:            port,
		OSUser:          osUser,
		ListenAddresses: "127.0.0.1",
		Init:            "auto",
		StopTimeout:     10 * time.Second,
		PasswordFile:    filepath.Join(dir, "state", "pgpass"),
		Settings:        settings,
	}
	var w = logs
	if w == nil {
		w = &logBuffer{}
	}
	s, err := postgres.New(opts, slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.Stop(ctx); err != nil {
			t.Errorf("cleanup: stopping PostgreSQL: %v", err)
		}
		if t.Failed() {
			t.Logf("log of the test:\n%s", w.String())
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatalf("PostgreSQL did not start: %v\n%s", err, w.String())
	}
	return s, opts
}

// realNode is a node without a cluster over a real PostgreSQL; it is not
// started (no boot, no monitor) unless the test starts it.
func realNode(t *testing.T, pg *postgres.Supervisor, opts postgres.Options, logs *logBuffer) *Node {
	t.Helper()
	dir := t.TempDir()
	st := state.State{Node: "a", Role: state.RoleNone}
	if err := state.Save(dir, st); err != nil {
		t.Fatal(err)
	}
	var w = logs
	if w == nil {
		w = &logBuffer{}
	}
	n := New(Config{Name: "a", IP: "127.0.0.1", APIPort: 7400, PGPort: opts.Port, StateDir: dir},
		st, pg, &fakeVIP{}, slog.New(slog.NewTextHandler(w, nil)))
	t.Cleanup(func() { n.Stop(5 * time.Second) })
	return n
}

// tcpConnect logs in over TCP as user, from the local address from.
func tcpConnect(ctx context.Context, opts postgres.Options, from, user, password, db string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=%s sslmode=disable connect_timeout=5", opts.Port, user, db))
	if err != nil {
		return nil, err
	}
	cfg.Password = password
	d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	cfg.DialFunc = d.DialContext
	return pgx.ConnectConfig(ctx, cfg)
}

// TestReplicationRolePasswordNeverReachesPostgres: the replication role is
// created with a SCRAM verifier computed by tandemd, so PostgreSQL, logging
// every statement, never sees the password, and a login with it works.
func TestReplicationRolePasswordNeverReachesPostgres(t *testing.T) {
	logs := &logBuffer{}
	pg, opts := realPG(t, map[string]string{"log_statement": "all"}, logs)
	n := realNode(t, pg, opts, logs)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	password := randomPassword()
	for range 2 { // create, then update (ALTER) the existing role
		if err := n.withConn(ctx, func(c *pgx.Conn) error { return createReplicationRole(ctx, c, password) }); err != nil {
			t.Fatal(err)
		}
	}
	var stored string
	if err := n.withConn(ctx, func(c *pgx.Conn) error {
		return c.QueryRow(ctx, `SELECT rolpassword FROM pg_authid WHERE rolname = $1`, ReplicationUser).Scan(&stored)
	}); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(stored, "SCRAM-SHA-256$4096:") {
		t.Errorf("PostgreSQL stored %q, want a SCRAM-SHA-256 verifier", stored)
	}
	c, err := tcpConnect(ctx, opts, "127.0.0.1", ReplicationUser, password, "postgres")
	if err != nil {
		t.Fatalf("PostgreSQL refused the replication role's password after it was set as a verifier: %v", err)
	}
	c.Close(ctx)
	if c, err := tcpConnect(ctx, opts, "127.0.0.1", ReplicationUser, password+"x", "postgres"); err == nil {
		c.Close(ctx)
		t.Error("a wrong password was accepted")
	}

	// PostgreSQL logged the statement (with the verifier), never the password.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "ALTER ROLE "+ReplicationUser) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	out := logs.String()
	if !strings.Contains(out, "statement: DO $$BEGIN") {
		t.Fatalf("PostgreSQL did not log the role's statement (log_statement = all); the test proves nothing:\n%s", out)
	}
	if strings.Contains(out, password) {
		t.Errorf("the replication password reached PostgreSQL's log")
	}
	if !strings.Contains(out, "PASSWORD 'SCRAM-SHA-256$4096:") {
		t.Errorf("the logged statement does not set the password as a SCRAM verifier")
	}
	if strings.Contains(roleSQL(stored), password) {
		t.Errorf("the statement holds the password")
	}
}
