package cluster

// Integration tests of the node over a real PostgreSQL: binaries found as
// tandemd finds them, data in t.TempDir(), run as the OS user postgres
// (PostgreSQL refuses root), as in internal/postgres.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tandem-ha/tandem/internal/api"
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
	s, opts, w := newRealPG(t, extra, logs)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatalf("PostgreSQL did not start: %v\n%s", err, w.String())
	}
	return s, opts
}

// newRealPG is realPG without the start: for a node that boots it.
func newRealPG(t *testing.T, extra map[string]string, logs *logBuffer) (*postgres.Supervisor, postgres.Options, *logBuffer) {
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
		HBA:             postgres.HBA{ReplicationUser: ReplicationUser},
	}
	w := logs
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
	return s, opts, w
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
	w := logs
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

	if err := n.setHBA([]string{"127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	if err := pg.Reload(ctx); err != nil {
		t.Fatal(err)
	}
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

// TestScrapesOpenNoConnections: a node over a real PostgreSQL, hit by 200
// scrapes of /metrics at once and then 200 load-balancer checks at once,
// opens no PostgreSQL connection for any of them: the connections counted
// in pg_stat_activity do not grow.
func TestScrapesOpenNoConnections(t *testing.T) {
	logs := &logBuffer{}
	pg, opts, _ := newRealPG(t, nil, logs)
	n := realNode(t, pg, opts, logs)
	n.Start() // boot (initdb, start), the monitor and the metrics collector

	reg := prometheus.NewRegistry()
	reg.MustRegister(n)
	srv := api.NewServer(api.Config{Backend: n, Log: slog.New(slog.NewTextHandler(logs, nil)), Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{})})
	web := httptest.NewServer(srv.Handler())
	defer web.Close()
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 0, MaxIdleConnsPerHost: 256}, Timeout: 30 * time.Second}
	get := func(path string) (int, string) {
		res, err := client.Get(web.URL + path)
		if err != nil {
			return 0, err.Error()
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		code, body := get("/metrics")
		if code == 200 && strings.Contains(body, "\ntandem_postgres_up 1\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the node's metrics never showed PostgreSQL up: %d\n%s", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	counter, err := pg.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer counter.Close(context.Background())
	// count samples the client connections every 5 ms until stop, and
	// returns the most it saw (this counting connection among them).
	count := func(stop <-chan struct{}) int {
		most := 0
		for {
			var c int
			if err := counter.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'`).Scan(&c); err != nil {
				t.Errorf("counting connections: %v", err)
				return most
			}
			most = max(most, c)
			select {
			case <-stop:
				return most
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	quiet := func(d time.Duration) int {
		stop := make(chan struct{})
		time.AfterFunc(d, func() { close(stop) })
		return count(stop)
	}
	storm := func(path string) (most int, codes map[int]int) {
		stop, got := make(chan struct{}), make(chan int, 1)
		go func() { got <- count(stop) }()
		codes = map[int]int{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range 200 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				code, body := get(path)
				mu.Lock()
				defer mu.Unlock()
				codes[code]++
				if path == "/metrics" && code == 200 && !strings.Contains(body, "\ntandem_postgres_up 1\n") {
					t.Errorf("a scrape served stale or empty metrics:\n%s", body)
				}
			}()
		}
		close(start)
		wg.Wait()
		close(stop)
		return <-got, codes
	}

	before := quiet(2 * time.Second) // the collector's own connection, once a second, included
	during, codes := storm("/metrics")
	after := quiet(time.Second)
	t.Logf("client connections: at most %d before, %d during 200 parallel scrapes of /metrics (answers %v), %d after", before, during, codes, after)
	if during > before+1 || after > before+1 {
		t.Errorf("scrapes of /metrics opened PostgreSQL connections: at most %d before, %d during, %d after", before, during, after)
	}
	if codes[200] == 0 || codes[200]+codes[503] != 200 {
		t.Errorf("answers to 200 parallel scrapes: %v; want 200 (served) or 503 (over the bound) only", codes)
	}

	during, codes = storm("/health")
	after = quiet(time.Second)
	t.Logf("client connections: at most %d during 200 parallel GET /health (answers %v), %d after", during, codes, after)
	if during > before+1 || after > before+1 {
		t.Errorf("GET /health opened PostgreSQL connections: at most %d before, %d during, %d after", before, during, after)
	}
	if codes[200] != 200 {
		t.Errorf("answers to 200 parallel GET /health: %v", codes)
	}
}
