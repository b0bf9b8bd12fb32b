package postgres

// Integration tests: real PostgreSQL binaries, data in t.TempDir().

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tandem-ha/tandem/internal/config"
	"github.com/tandem-ha/tandem/internal/tool"
)

// testLogger sends log lines to t.Log, and drops them once the test is over
// (postmaster output can still arrive from pipe readers).
func testLogger(t *testing.T) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (w *testWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(b), "\n"))
	}
	return len(b), nil
}

// testOptions finds PostgreSQL's binaries and lays out private directories.
func testOptions(t *testing.T) Options {
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
		if os.Getenv("CI") == "true" {
			t.Fatalf("OS user postgres is required in CI when running as root: %v", err)
		}
		t.Skipf("skipping integration test: running as root and there is no OS user postgres")
	}
	dir := t.TempDir()
	// t.TempDir() and its parent are 0700; the OS user must get through.
	for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return Options{
		BinDir:          bin,
		DataDir:         filepath.Join(dir, "data"),
		SocketDir:       filepath.Join(dir, "sock"),
		Port:            freePort(t),
		OSUser:          osUser,
		ListenAddresses: "127.0.0.1",
		Init:            "auto",
		StopTimeout:     10 * time.Second,
		PasswordFile:    filepath.Join(dir, "state", "pgpass"),
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// newSupervisor returns a supervisor with test-sized delays, stopped (and
// any postgres left in its data dir killed) when the test ends.
func newSupervisor(t *testing.T, opts Options) *Supervisor {
	t.Helper()
	s, err := New(opts, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	s.readyTimeout = 30 * time.Second
	s.pollEvery = 50 * time.Millisecond
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.Stop(ctx); err != nil {
			t.Errorf("cleanup: Stop: %v", err)
		}
		killLeftovers(t, opts.DataDir)
	})
	return s
}

// processesIn lists processes working in dataDir: the postmaster and its
// children all run with the data directory as working directory.
func processesIn(dataDir string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
		if err != nil || cwd != dataDir {
			continue
		}
		if st, err := readProcStat(pid); err == nil && st.state != 'Z' {
			pids = append(pids, pid)
		}
	}
	return pids
}

func killLeftovers(t *testing.T, dataDir string) {
	for _, pid := range processesIn(dataDir) {
		t.Errorf("postgres process %d still running in %s after the test; killing it", pid, dataDir)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// waitNoProcesses allows backends a moment to follow their postmaster out.
func waitNoProcesses(t *testing.T, dataDir string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(processesIn(dataDir)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("processes still running in %s: %v", dataDir, processesIn(dataDir))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func startOK(t *testing.T, s *Supervisor) Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	st := s.Status(ctx)
	if st.State != StateRunning || st.PID == 0 || st.Error != "" {
		t.Fatalf("after Start: %+v", st)
	}
	return st
}

func stopOK(t *testing.T, s *Supervisor) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := s.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if st := s.Status(ctx); st.State != StateStopped || st.PID != 0 {
		t.Fatalf("after Stop: %+v", st)
	}
}

func binaryMajor(t *testing.T, opts Options) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(opts.DataDir, "PG_VERSION"))
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func clusterState(t *testing.T, s *Supervisor) string {
	t.Helper()
	cd, err := s.controlData(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return cd["Database cluster state"]
}

func TestInitStartStatusAndCleanStop(t *testing.T) {
	opts := testOptions(t)
	opts.HBA.SuperuserFrom = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	s := newSupervisor(t, opts)
	st := startOK(t, s)

	if st.InRecovery || st.LSN == "" {
		t.Errorf("want a primary with an LSN: %+v", st)
	}
	major := binaryMajor(t, opts)
	if !strings.HasPrefix(st.Version, strconv.Itoa(major)+".") || st.VersionNum/10000 != major {
		t.Errorf("version %q / %d does not match PG_VERSION %d", st.Version, st.VersionNum, major)
	}
	if st.Restarts != 0 {
		t.Errorf("restarts %d, want 0", st.Restarts)
	}

	// Directories private to the OS user, password file private to us.
	u, _ := user.Lookup(opts.OSUser)
	for _, d := range []string{opts.DataDir, opts.SocketDir} {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o700 || strconv.Itoa(int(fi.Sys().(*syscall.Stat_t).Uid)) != u.Uid {
			t.Errorf("%s: mode %v uid %d, want 0700 owned by %s", d, fi.Mode().Perm(), fi.Sys().(*syscall.Stat_t).Uid, opts.OSUser)
		}
	}
	fi, err := os.Stat(opts.PasswordFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 || int(fi.Sys().(*syscall.Stat_t).Uid) != os.Geteuid() {
		t.Errorf("password file: mode %v uid %d, want 0600 owned by us", fi.Mode().Perm(), fi.Sys().(*syscall.Stat_t).Uid)
	}
	if entries, _ := os.ReadDir(opts.SocketDir); len(entries) != 2 { // the socket and its lock file
		t.Errorf("socket dir holds %v; initdb's password file should be gone", entries)
	}
	tandemConf, _ := os.ReadFile(filepath.Join(opts.DataDir, "tandem.conf"))
	if !strings.Contains(string(tandemConf), fmt.Sprintf("port = %d\n", opts.Port)) {
		t.Errorf("tandem.conf:\n%s", tandemConf)
	}

	// The generated password works over TCP (scram-sha-256) from where
	// SuperuserFrom says, a wrong one does not.
	pwb, _ := os.ReadFile(opts.PasswordFile)
	pw := strings.TrimSpace(string(pwb))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tcp := func(pw string) error {
		cfg, err := pgx.ParseConfig(fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres sslmode=disable", opts.Port))
		if err != nil {
			t.Fatal(err)
		}
		cfg.Password = pw
		c, err := pgx.ConnectConfig(ctx, cfg)
		if err == nil {
			c.Close(ctx)
		}
		return err
	}
	if err := tcp(pw); err != nil {
		t.Errorf("TCP login with the generated password: %v", err)
	}
	if err := tcp("wrong"); err == nil {
		t.Error("TCP login with a wrong password succeeded")
	}

	// A held session makes the smart shutdown wait; Stop escalates to fast.
	s.opts.StopTimeout = time.Second
	held, err := s.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close(context.Background())
	began := time.Now()
	stopOK(t, s)
	if took := time.Since(began); took < time.Second {
		t.Errorf("Stop took %s: the smart stage should have waited for the held session", took)
	}
	waitNoProcesses(t, opts.DataDir)
	if got := clusterState(t, s); got != "shut down" {
		t.Errorf("cluster state %q, want \"shut down\"", got)
	}
	if err := s.Stop(ctx); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if _, err := s.Connect(ctx); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Connect after Stop: %v, want ErrNotRunning", err)
	}

	// A second start reuses the cluster: no initdb, the include stays single.
	s2 := newSupervisor(t, opts)
	startOK(t, s2)
	conf, _ := os.ReadFile(filepath.Join(opts.DataDir, "postgresql.conf"))
	if n := strings.Count(string(conf), includeLine); n != 1 {
		t.Errorf("postgresql.conf includes tandem.conf %d times", n)
	}
	if pwb2, _ := os.ReadFile(opts.PasswordFile); string(pwb2) != string(pwb) {
		t.Error("the password file changed on a restart")
	}
	stopOK(t, s2)
	waitNoProcesses(t, opts.DataDir)
}

func TestCrashedPostmasterIsRestarted(t *testing.T) {
	opts := testOptions(t)
	s := newSupervisor(t, opts)
	first := startOK(t, s)

	if err := syscall.Kill(first.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var st Status
	for {
		st = s.Status(ctx)
		if st.State == StateRunning && st.PID != first.PID && st.Error == "" {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("not restarted: %+v", st)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if st.Restarts != 1 {
		t.Errorf("restarts %d, want 1", st.Restarts)
	}
	if st.LSN == "" || st.InRecovery {
		t.Errorf("status after restart: %+v", st)
	}
	conn, err := s.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Errorf("query after restart: %d, %v", one, err)
	}
	conn.Close(ctx)
	stopOK(t, s)
	waitNoProcesses(t, opts.DataDir)
}

func TestAdoptsPostmasterOfPreviousSupervisor(t *testing.T) {
	opts := testOptions(t)
	s1 := newSupervisor(t, opts)
	st1 := startOK(t, s1)
	s1.abandonForTest() // tandemd "crashes"; PostgreSQL keeps running

	s2 := newSupervisor(t, opts)
	st2 := startOK(t, s2)
	if st2.PID != st1.PID {
		t.Fatalf("supervisor 2 runs pid %d, want the adopted %d", st2.PID, st1.PID)
	}
	if st2.LSN == "" {
		t.Errorf("status of adopted postmaster: %+v", st2)
	}
	stopOK(t, s2)
	waitNoProcesses(t, opts.DataDir)
	if got := clusterState(t, s2); got != "shut down" {
		t.Errorf("cluster state %q, want \"shut down\"", got)
	}
}

func TestInitNeverWithEmptyDataDir(t *testing.T) {
	opts := testOptions(t)
	opts.Init = "never"
	opts.PasswordFile = ""
	s := newSupervisor(t, opts)
	err := s.Start(context.Background())
	if !errors.Is(err, ErrNoData) {
		t.Fatalf("Start: %v, want ErrNoData", err)
	}
	st := s.Status(context.Background())
	if st.State != StateNoData || st.PID != 0 || st.Error == "" {
		t.Fatalf("status %+v, want no_data with an error", st)
	}
	if _, err := os.Stat(opts.DataDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("data dir was created: %v", err)
	}
	if _, err := os.Stat(opts.SocketDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket dir was created: %v", err)
	}
	stopOK(t, s)
}

func TestRefusesDataDirOfOtherMajorVersion(t *testing.T) {
	opts := testOptions(t)
	if err := os.Mkdir(opts.DataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{"PG_VERSION": "9.6\n", "postgresql.conf": ""} {
		if err := os.WriteFile(filepath.Join(opts.DataDir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s := newSupervisor(t, opts)
	err := s.Start(context.Background())
	if !errors.Is(err, ErrVersionMismatch) || !strings.Contains(err.Error(), "PostgreSQL 9.6") {
		t.Fatalf("Start: %v, want a version mismatch naming 9.6", err)
	}
	t.Logf("error as the operator sees it: %v", err)
	if st := s.Status(context.Background()); st.State != StateFailed || st.PID != 0 {
		t.Fatalf("status %+v, want failed", st)
	}
	if _, err := os.Stat(filepath.Join(opts.DataDir, "postmaster.pid")); err == nil {
		t.Error("a postmaster was started")
	}
}

// A postmaster that is nobody's child here (started by pg_ctl, reparented
// to init) is adopted; when it crashes, its exit is noticed by polling and
// the supervisor starts its own.
func TestAdoptsForeignPostmasterAndRestartsItAfterCrash(t *testing.T) {
	opts := testOptions(t)
	s1 := newSupervisor(t, opts)
	startOK(t, s1)
	stopOK(t, s1)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	logFile := filepath.Join(opts.SocketDir, "pg_ctl.log")
	_, err := tool.Run(ctx, testLogger(t), tool.Cmd{
		Path: filepath.Join(opts.BinDir, "pg_ctl"),
		Args: []string{"-D", opts.DataDir, "-l", logFile, "-w", "start"},
		User: s1.runAs,
		Dir:  "/",
	})
	if err != nil {
		t.Fatalf("pg_ctl start: %v", err)
	}
	pidb, err := os.ReadFile(filepath.Join(opts.DataDir, "postmaster.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pf, err := parsePidFile(pidb)
	if err != nil {
		t.Fatal(err)
	}

	s2 := newSupervisor(t, opts)
	st := startOK(t, s2)
	if st.PID != pf.PID {
		t.Fatalf("supervisor runs pid %d, want the adopted %d", st.PID, pf.PID)
	}
	if err := syscall.Kill(pf.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for {
		st = s2.Status(ctx)
		if st.State == StateRunning && st.PID != pf.PID && st.Error == "" {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("not restarted: %+v", st)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if st.Restarts != 1 {
		t.Errorf("restarts %d, want 1", st.Restarts)
	}
	stopOK(t, s2)
	waitNoProcesses(t, opts.DataDir)
	if got := clusterState(t, s2); got != "shut down" {
		t.Errorf("cluster state %q, want \"shut down\"", got)
	}
}
