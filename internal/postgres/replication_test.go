package postgres

// Integration tests of the requests that change the server's role or its
// data directory: two supervisors, two ports, real PostgreSQL.

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	replUser     = "tandem_repl"
	replPassword = "repl-pw-Zq7"
)

// replSettings are what a pair needs from the first start: wal_log_hints
// (for pg_rewind) takes effect only at server start.
func replSettings() map[string]string {
	return map[string]string{
		"wal_level":                   "replica",
		"wal_log_hints":               "on",
		"hot_standby":                 "on",
		"max_wal_senders":             "10",
		"max_replication_slots":       "10",
		"wal_sender_timeout":          "5s",
		"wal_receiver_timeout":        "5s",
		"wal_retrieve_retry_interval": "200ms",
	}
}

// followSettings make a standby stream from the server on port through slot.
func followSettings(port int, slot, name string) map[string]string {
	m := replSettings()
	m["primary_conninfo"] = fmt.Sprintf("host=127.0.0.1 port=%d user=%s password=%s application_name=%s connect_timeout=2", port, replUser, replPassword, name)
	m["primary_slot_name"] = slot
	return m
}

// recorder keeps the messages a supervisor logs, besides sending them to t.Log.
type recorder struct {
	mu   sync.Mutex
	text strings.Builder
	next *testWriter
}

func (r *recorder) Write(b []byte) (int, error) {
	r.mu.Lock()
	r.text.Write(b)
	r.mu.Unlock()
	return r.next.Write(b)
}

func (r *recorder) contains(s string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Contains(r.text.String(), s)
}

// node is one supervised server of a test pair.
type node struct {
	name string
	opts Options
	s    *Supervisor
	log  *recorder
}

// newNode makes a supervisor whose crash restarts wait an hour, so a test
// that kills PostgreSQL sees it stay down.
func newNode(t *testing.T, name string) *node {
	t.Helper()
	opts := testOptions(t)
	opts.Settings = replSettings()
	opts.HBA = HBA{ReplicationUser: replUser}
	n := &node{name: name, opts: opts}
	n.newSupervisor(t)
	return n
}

// newSupervisor replaces n's supervisor, as a restarted tandemd would.
func (n *node) newSupervisor(t *testing.T) {
	t.Helper()
	n.log = &recorder{next: &testWriter{t: t}}
	t.Cleanup(func() {
		n.log.next.mu.Lock()
		n.log.next.done = true
		n.log.next.mu.Unlock()
	})
	s := newSupervisor(t, n.opts)
	s.log = slogTo(n.log).With("node", n.name, "data_dir", n.opts.DataDir)
	s.backoffMin, s.backoffMax = time.Hour, time.Hour
	n.s = s
}

func (n *node) source() Source {
	return Source{Host: "127.0.0.1", Port: n.opts.Port, User: replUser, Password: replPassword}
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func (n *node) exec(t *testing.T, sql string, args ...any) {
	t.Helper()
	ctx := ctxFor(t, 30*time.Second)
	c, err := n.s.Connect(ctx)
	if err != nil {
		t.Fatalf("%s: %v", n.name, err)
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %s: %v", n.name, sql, err)
	}
}

func (n *node) queryString(t *testing.T, sql string, args ...any) string {
	t.Helper()
	ctx := ctxFor(t, 30*time.Second)
	c, err := n.s.Connect(ctx)
	if err != nil {
		t.Fatalf("%s: %v", n.name, err)
	}
	defer c.Close(context.Background())
	var out string
	if err := c.QueryRow(ctx, sql, args...).Scan(&out); err != nil {
		t.Fatalf("%s: %s: %v", n.name, sql, err)
	}
	return out
}

// eventually polls sql until it returns want.
func (n *node) eventually(t *testing.T, want, sql string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := n.s.Connect(ctx)
		if err == nil {
			err = c.QueryRow(ctx, sql, args...).Scan(&last)
			c.Close(context.Background())
		}
		cancel()
		if err == nil && last == want {
			return
		} else if err != nil {
			last = err.Error()
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: %s gave %q, want %q", n.name, sql, last, want)
}

func (n *node) waitStreaming(t *testing.T) {
	t.Helper()
	n.eventually(t, "streaming", `SELECT coalesce((SELECT status FROM pg_stat_wal_receiver), 'not started')`)
}

func (n *node) pid(t *testing.T) int {
	t.Helper()
	st := n.s.Status(context.Background())
	if st.State != StateRunning {
		t.Fatalf("%s: PostgreSQL is %s (%s)", n.name, st.State, st.Error)
	}
	return st.PID
}

// startPrimary starts n read-write (initdb on the first start), ready to
// serve clones and rewinds: the replication role with what pg_rewind
// needs, and pg_hba allowing it in from 127.0.0.1.
func (n *node) startPrimary(t *testing.T) {
	t.Helper()
	startOK(t, n.s)
	n.exec(t, `CREATE ROLE `+replUser+` WITH REPLICATION LOGIN PASSWORD '`+replPassword+`'`)
	for _, fn := range []string{"pg_ls_dir(text, boolean, boolean)", "pg_stat_file(text, boolean)", "pg_read_binary_file(text)", "pg_read_binary_file(text, bigint, bigint, boolean)"} {
		n.exec(t, `GRANT EXECUTE ON FUNCTION pg_catalog.`+fn+` TO `+replUser)
	}
	n.exec(t, `GRANT pg_checkpoint TO `+replUser)
	if err := n.s.SetReplicationPeers([]string{"127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	if err := n.s.Reload(ctxFor(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
}

func (n *node) createSlot(t *testing.T, slot string) {
	t.Helper()
	n.exec(t, `SELECT pg_create_physical_replication_slot($1, true) WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)`, slot)
}

func (n *node) controlState(t *testing.T) string {
	t.Helper()
	cd, err := n.s.ControlData(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return cd["Database cluster state"]
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// digest describes every file under dir (path, mode, owner, content), to
// tell whether data was put back exactly.
func digest(t *testing.T, dir string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		line := fmt.Sprintf("%s %v uid=%d", rel, fi.Mode(), fi.Sys().(*syscall.Stat_t).Uid)
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			line += fmt.Sprintf(" %x", sha256.Sum256(b))
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// A secondary is cloned from the primary and streams; a switchover hands
// the primary role over with nothing lost; a failover leaves the old
// primary diverged and crashed, and Rewind brings it back as a standby.
func TestCloneSwitchoverFailoverRewind(t *testing.T) {
	a, b := newNode(t, "a"), newNode(t, "b")
	a.startPrimary(t)
	a.createSlot(t, "tandem_b")
	startOK(t, b.s) // b's own, unrelated cluster, which the clone replaces
	b.exec(t, `CREATE TABLE b_own (x int)`)
	ctx := ctxFor(t, 5*time.Minute)

	// Clone: b's data moves aside, the copy comes through the slot.
	a.exec(t, `CREATE TABLE t (v text)`)
	a.exec(t, `INSERT INTO t SELECT 'before clone ' || i FROM generate_series(1, 10000) i`)
	var mu sync.Mutex
	var reports [][2]int64
	aside, err := b.s.Clone(ctx, a.source(), "tandem_b", func(done, total int64) {
		mu.Lock()
		reports = append(reports, [2]int64{done, total})
		mu.Unlock()
	})
	if err != nil {
		t.Fatalf("Clone: %v", err)
	}
	if !strings.HasPrefix(aside, b.opts.DataDir+asideClone) || !exists(filepath.Join(aside, "PG_VERSION")) {
		t.Fatalf("Clone returned aside %q, which does not hold the old data", aside)
	}
	if st := b.s.Status(ctx); st.State != StateStopped {
		t.Errorf("after Clone: %+v, want stopped", st)
	}
	if !exists(filepath.Join(b.opts.DataDir, standbySignal)) {
		t.Error("the clone has no standby.signal")
	}
	mu.Lock()
	if len(reports) == 0 || reports[0][1] <= 0 {
		t.Errorf("progress reports %v: want at least the first, with the source's size", reports)
	}
	t.Logf("clone progress reports: %v", reports)
	mu.Unlock()
	if b.log.contains(replPassword) || a.log.contains(replPassword) {
		t.Error("the replication password was logged")
	}

	if err := b.s.StartStandby(ctx, followSettings(a.opts.Port, "tandem_b", "b")); err != nil {
		t.Fatalf("StartStandby: %v", err)
	}
	b.waitStreaming(t)
	a.exec(t, `INSERT INTO t VALUES ('streamed')`)
	b.eventually(t, "1", `SELECT count(*)::text FROM t WHERE v = 'streamed'`)
	if got := b.queryString(t, `SELECT count(*)::text FROM pg_class WHERE relname = 'b_own'`); got != "0" {
		t.Error("b still has its own table after the clone")
	}
	if err := b.s.DiscardAside(ctx, aside); err != nil {
		t.Fatalf("DiscardAside: %v", err)
	}
	if exists(aside) || len(asides(b.opts.DataDir, asideTrash)) > 0 {
		t.Errorf("the old data is still there after DiscardAside")
	}

	// Asking for what already is changes nothing; a standby is no primary.
	pid := b.pid(t)
	if err := b.s.StartStandby(ctx, followSettings(a.opts.Port, "tandem_b", "b")); err != nil || b.pid(t) != pid {
		t.Errorf("StartStandby on a running standby: %v, pid %d → %d; want a reload", err, pid, b.pid(t))
	}
	if err := b.s.StartPrimary(ctx, replSettings(), false); !errors.Is(err, ErrInRecovery) {
		t.Errorf("StartPrimary on a standby: %v, want ErrInRecovery", err)
	}
	if _, err := b.s.ShutdownForSwitchover(ctx); !errors.Is(err, ErrInRecovery) || b.pid(t) != pid {
		t.Errorf("ShutdownForSwitchover on a standby: %v; want ErrInRecovery and it still running", err)
	}
	if err := a.s.Promote(ctx); !errors.Is(err, ErrNotInRecovery) {
		t.Errorf("Promote on a primary: %v, want ErrNotInRecovery", err)
	}
	apid := a.pid(t)
	if err := a.s.StartPrimary(ctx, replSettings(), false); err != nil || a.pid(t) != apid {
		t.Errorf("StartPrimary on a running primary: %v, pid %d → %d; want a reload", err, apid, a.pid(t))
	}

	// Switchover: a shuts down, b replays a's shutdown checkpoint and
	// promotes, a follows b.
	a.exec(t, `INSERT INTO t VALUES ('last on a')`)
	lsn, err := a.s.ShutdownForSwitchover(ctx)
	if err != nil {
		t.Fatalf("ShutdownForSwitchover: %v", err)
	}
	t.Logf("shutdown checkpoint at %s", lsn)
	if st := a.s.Status(ctx); st.State != StateStopped {
		t.Errorf("after ShutdownForSwitchover: %+v, want stopped", st)
	}
	if got := a.controlState(t); got != stateShutDown {
		t.Errorf("a's control file says %q", got)
	}
	b.eventually(t, "true", `SELECT coalesce(pg_last_wal_replay_lsn() > $1::pg_lsn, false)::text`, lsn)
	began := time.Now()
	if err := b.s.Promote(ctx); err != nil {
		t.Fatalf("Promote: %v", err)
	}
	t.Logf("promotion took %s", time.Since(began))
	if got := b.queryString(t, `SELECT pg_is_in_recovery()::text`); got != "false" {
		t.Fatalf("b is in recovery after Promote")
	}
	if got := b.queryString(t, `SELECT count(*)::text FROM t WHERE v = 'last on a'`); got != "1" {
		t.Error("the last write on a is missing on b after the switchover")
	}
	b.exec(t, `INSERT INTO t VALUES ('first on b')`)
	b.createSlot(t, "tandem_a")
	if err := a.s.StartStandby(ctx, followSettings(b.opts.Port, "tandem_a", "a")); err != nil {
		t.Fatalf("StartStandby of the old primary: %v", err)
	}
	a.waitStreaming(t)
	a.eventually(t, "1", `SELECT count(*)::text FROM t WHERE v = 'first on b'`)

	// Failover while b still runs: a is promoted, b writes what will be
	// lost, then dies without a shutdown checkpoint.
	if err := a.s.Promote(ctx); err != nil {
		t.Fatalf("Promote of a: %v", err)
	}
	b.exec(t, `INSERT INTO t SELECT 'lost ' || i FROM generate_series(1, 100) i`)
	b.exec(t, `CREATE TABLE lost_table (x int)`)
	a.exec(t, `INSERT INTO t VALUES ('after failover')`)
	if err := syscall.Kill(b.pid(t), sigImmediate); err != nil {
		t.Fatal(err)
	}
	for st := b.s.Status(ctx); st.State != StateCrashed; st = b.s.Status(ctx) {
		if ctx.Err() != nil {
			t.Fatalf("b did not crash: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := b.controlState(t); got != "in production" {
		t.Fatalf("b's control file says %q after an immediate shutdown, want \"in production\"", got)
	}
	a.createSlot(t, "tandem_b")
	if err := b.s.Rewind(ctx, a.source()); err != nil {
		t.Fatalf("Rewind: %v", err)
	}
	if !b.log.contains("running crash recovery in single-user mode") {
		t.Error("Rewind did not run crash recovery first")
	}
	if st := b.s.Status(ctx); st.State != StateStopped {
		t.Errorf("after Rewind: %+v, want stopped", st)
	}
	if !exists(filepath.Join(b.opts.DataDir, standbySignal)) || exists(filepath.Join(b.opts.DataDir, "postmaster.pid")) {
		t.Error("after Rewind: want standby.signal and no postmaster.pid")
	}
	if b.log.contains(replPassword) {
		t.Error("the replication password was logged")
	}
	if err := b.s.StartStandby(ctx, followSettings(a.opts.Port, "tandem_b", "b")); err != nil {
		t.Fatalf("StartStandby after Rewind: %v", err)
	}
	b.waitStreaming(t)
	b.eventually(t, "1", `SELECT count(*)::text FROM t WHERE v = 'after failover'`)
	if got := b.queryString(t, `SELECT count(*)::text FROM t WHERE v LIKE 'lost%'`); got != "0" {
		t.Errorf("%s divergent rows survived the rewind", got)
	}
	if got := b.queryString(t, `SELECT count(*)::text FROM pg_class WHERE relname = 'lost_table'`); got != "0" {
		t.Error("the divergent table survived the rewind")
	}
	a.exec(t, `INSERT INTO t VALUES ('after rewind')`)
	b.eventually(t, "1", `SELECT count(*)::text FROM t WHERE v = 'after rewind'`)
}

// A clone that cannot work puts the old data back exactly, whether
// pg_basebackup fails or the request is cancelled while it runs.
func TestFailedCloneRestoresTheOldData(t *testing.T) {
	a, b := newNode(t, "a"), newNode(t, "b")
	a.startPrimary(t)
	a.createSlot(t, "tandem_b")
	startOK(t, b.s)
	b.exec(t, `CREATE TABLE b_own (x int)`)
	ctx := ctxFor(t, 5*time.Minute)
	if err := b.s.Halt(ctx, true); err != nil {
		t.Fatal(err)
	}
	before := digest(t, b.opts.DataDir)

	// A listener that accepts and never answers: pg_basebackup waits.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	wrongPassword := a.source()
	wrongPassword.Password = "wrong"
	wrongPort := a.source()
	wrongPort.Port = freePort(t)
	hanging := a.source()
	hanging.Port = silent.Addr().(*net.TCPAddr).Port
	for _, c := range []struct {
		name    string
		src     Source
		timeout time.Duration
	}{
		{"wrong password", wrongPassword, time.Minute},
		{"wrong port", wrongPort, time.Minute},
		{"cancelled", hanging, time.Second},
	} {
		t.Run(c.name, func(t *testing.T) {
			cctx, cancel := context.WithTimeout(ctx, c.timeout)
			defer cancel()
			began := time.Now()
			aside, err := b.s.Clone(cctx, c.src, "tandem_b", func(int64, int64) {})
			if err == nil || aside != "" {
				t.Fatalf("Clone: %q, %v; want an error", aside, err)
			}
			t.Logf("Clone failed as expected after %s: %v", time.Since(began), err)
			if c.name == "cancelled" {
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("want the cancellation in the error: %v", err)
				}
				// The owner answers the next request only once it has put
				// the data back.
				if err := b.s.Halt(ctx, true); err != nil {
					t.Fatal(err)
				}
				if took := time.Since(began); took > 4*time.Second {
					t.Errorf("the cancelled clone took %s: pg_basebackup was not killed", took)
				}
			}
			if after := digest(t, b.opts.DataDir); after != before {
				t.Errorf("the old data was not put back exactly")
			}
			if left := asides(b.opts.DataDir, asideClone); len(left) > 0 {
				t.Errorf("copies left aside: %v", left)
			}
			if st := b.s.Status(ctx); st.State != StateStopped || (st.Error == "" && c.name != "cancelled") {
				t.Errorf("after a failed clone: %+v, want stopped with the error", st)
			}
		})
	}

	// A clone that worked but is not wanted after all: the caller puts the
	// old data back, which stops the copy first.
	aside, err := b.s.Clone(ctx, a.source(), "tandem_b", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.s.StartStandby(ctx, followSettings(a.opts.Port, "tandem_b", "b")); err != nil {
		t.Fatal(err)
	}
	b.waitStreaming(t)
	if err := b.s.RestoreAside(ctx, b.opts.DataDir+".tandem-old-nonexistent"); err == nil || b.s.Status(ctx).State != StateRunning {
		t.Errorf("RestoreAside of a missing copy: %v; want an error and nothing changed", err)
	}
	if err := b.s.RestoreAside(ctx, aside); err != nil {
		t.Fatalf("RestoreAside: %v", err)
	}
	if st := b.s.Status(ctx); st.State != StateStopped {
		t.Errorf("after RestoreAside: %+v, want stopped", st)
	}
	if after := digest(t, b.opts.DataDir); after != before || exists(aside) {
		t.Errorf("RestoreAside did not put the old data back exactly")
	}
	if err := b.s.StartPrimary(ctx, replSettings(), false); err != nil {
		t.Fatalf("StartPrimary on the old data: %v", err)
	}
	if got := b.queryString(t, `SELECT count(*)::text FROM pg_class WHERE relname = 'b_own'`); got != "1" {
		t.Error("b's own table is missing")
	}

	// tandemd dies after a clone started streaming but before the old data
	// was discarded: the next tandemd stops that postmaster and puts the
	// old data back.
	if _, err := b.s.Clone(ctx, a.source(), "tandem_b", nil); err != nil {
		t.Fatal(err)
	}
	if err := b.s.StartStandby(ctx, followSettings(a.opts.Port, "tandem_b", "b")); err != nil {
		t.Fatal(err)
	}
	orphan := b.pid(t)
	b.s.abandonForTest()
	b.newSupervisor(t)
	restored, err := b.s.RecoverInterruptedClone(ctx)
	if err != nil || !strings.HasPrefix(restored, b.opts.DataDir+asideClone) {
		t.Fatalf("RecoverInterruptedClone: %q, %v", restored, err)
	}
	if exists(restored) || len(asides(b.opts.DataDir, asideClone)) > 0 {
		t.Error("the copy put back is still aside")
	}
	if alive := syscall.Kill(orphan, 0) == nil; alive {
		if st, err := readProcStat(orphan); err == nil && st.state != 'Z' {
			t.Errorf("the postmaster left running on the clone (pid %d) was not stopped", orphan)
		}
	}
	startOK(t, b.s)
	if got := b.queryString(t, `SELECT count(*)::text FROM pg_class WHERE relname = 'b_own'`); got != "1" {
		t.Error("b's own table is missing after the recovery")
	}
	if got := b.queryString(t, `SELECT pg_is_in_recovery()::text`); got != "false" {
		t.Error("b's own data came back as a standby")
	}
}

// Simulated crash in the middle of a clone: the data dir holds a partial
// copy, the old data is aside. Both ways of calling the recovery put the
// old data back exactly.
func TestRecoverInterruptedClone(t *testing.T) {
	n := newNode(t, "b")
	startOK(t, n.s)
	n.exec(t, `CREATE TABLE own (x int)`)
	stopOK(t, n.s)
	before := digest(t, n.opts.DataDir)
	interrupt := func() string {
		t.Helper()
		aside := asideName(n.opts.DataDir, asideClone, time.Now())
		if err := os.Rename(n.opts.DataDir, aside); err != nil {
			t.Fatal(err)
		}
		for _, d := range []string{n.opts.DataDir, filepath.Join(n.opts.DataDir, "base", "1"), asideName(n.opts.DataDir, asideTrash, time.Now())} {
			if err := os.MkdirAll(d, 0o700); err != nil {
				t.Fatal(err)
			}
		}
		for _, f := range []string{"PG_VERSION", "base/1/1259"} {
			if err := os.WriteFile(filepath.Join(n.opts.DataDir, f), []byte("partial"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return aside
	}
	check := func(restored, aside string, err error) {
		t.Helper()
		if err != nil || restored != aside {
			t.Fatalf("RecoverInterruptedClone: %q, %v; want %q", restored, err, aside)
		}
		if after := digest(t, n.opts.DataDir); after != before {
			t.Error("the old data was not put back exactly")
		}
		if left := append(asides(n.opts.DataDir, asideClone), asides(n.opts.DataDir, asideTrash)...); len(left) > 0 {
			t.Errorf("left beside the data dir: %v", left)
		}
	}
	ctx := ctxFor(t, 2*time.Minute)

	// Before the supervisor starts.
	aside := interrupt()
	n.newSupervisor(t)
	restored, err := n.s.RecoverInterruptedClone(ctx)
	check(restored, aside, err)
	if restored, err := n.s.RecoverInterruptedClone(ctx); restored != "" || err != nil {
		t.Errorf("second RecoverInterruptedClone: %q, %v; want nothing to do", restored, err)
	}

	// Through the owner, after StartHalted.
	aside = interrupt()
	if err := n.s.StartHalted(); err != nil {
		t.Fatal(err)
	}
	restored, err = n.s.RecoverInterruptedClone(ctx)
	check(restored, aside, err)
	if err := n.s.StartPrimary(ctx, replSettings(), false); err != nil {
		t.Fatal(err)
	}
	if got := n.queryString(t, `SELECT count(*)::text FROM pg_class WHERE relname = 'own'`); got != "1" {
		t.Error("the table is missing after the recovery")
	}
	if _, err := n.s.RecoverInterruptedClone(ctx); err == nil {
		t.Error("RecoverInterruptedClone while PostgreSQL runs: want an error")
	}
}

// A secondary leaving its cluster moves its data aside and starts a
// fresh, empty cluster; the copy aside is not taken for an interrupted
// clone.
func TestMoveDataAsideThenFreshCluster(t *testing.T) {
	n := newNode(t, "b")
	startOK(t, n.s)
	n.exec(t, `CREATE TABLE own (x int)`)
	ctx := ctxFor(t, 2*time.Minute)
	aside, err := n.s.MoveDataAside(ctx)
	if err != nil || !strings.HasPrefix(aside, n.opts.DataDir+asideLeft) {
		t.Fatalf("MoveDataAside: %q, %v", aside, err)
	}
	if exists(n.opts.DataDir) || !exists(filepath.Join(aside, "PG_VERSION")) {
		t.Fatal("the data was not moved aside")
	}
	if st := n.s.Status(ctx); st.State != StateStopped {
		t.Errorf("after MoveDataAside: %+v", st)
	}
	if restored, err := n.s.RecoverInterruptedClone(ctx); restored != "" || err != nil {
		t.Errorf("RecoverInterruptedClone took the data of a leave for a clone's: %q, %v", restored, err)
	}
	if err := n.s.StartStandby(ctx, replSettings()); !errors.Is(err, ErrNoData) {
		t.Errorf("StartStandby without data: %v, want ErrNoData", err)
	}
	if err := n.s.StartPrimary(ctx, replSettings(), true); err != nil {
		t.Fatalf("StartPrimary with initdb: %v", err)
	}
	if got := n.queryString(t, `SELECT count(*)::text FROM pg_class WHERE relname = 'own'`); got != "0" {
		t.Error("the fresh cluster holds the old table")
	}
	for _, bad := range []string{"/etc", n.opts.DataDir, filepath.Dir(n.opts.DataDir)} {
		if err := n.s.DiscardAside(ctx, bad); err == nil {
			t.Errorf("DiscardAside(%q) accepted", bad)
		}
	}
	if err := n.s.DiscardAside(ctx, aside); err != nil {
		t.Fatalf("DiscardAside: %v", err)
	}
	if exists(aside) || len(asides(n.opts.DataDir, asideTrash)) > 0 {
		t.Error("the copy aside is still there")
	}
	if err := n.s.DiscardAside(ctx, aside); err != nil {
		t.Errorf("second DiscardAside: %v; want nothing to do", err)
	}

	// Fenced: the primary restarts in recovery, and only Promote ends it.
	pid := n.pid(t)
	if err := n.s.StartStandby(ctx, replSettings()); err != nil {
		t.Fatalf("StartStandby on a primary: %v", err)
	}
	if n.pid(t) == pid || n.queryString(t, `SELECT pg_is_in_recovery()::text`) != "true" {
		t.Fatal("the primary was not restarted as a standby")
	}
	if err := n.s.StartPrimary(ctx, replSettings(), false); !errors.Is(err, ErrInRecovery) {
		t.Errorf("StartPrimary on the fenced standby: %v, want ErrInRecovery", err)
	}
	if err := n.s.Promote(ctx); err != nil {
		t.Fatalf("Promote: %v", err)
	}
	if exists(filepath.Join(n.opts.DataDir, standbySignal)) {
		t.Error("standby.signal is still there after the promotion")
	}
}

// A postmaster an earlier tandemd left running is adopted and judged by
// its role: a primary asked to be a standby is restarted in recovery.
func TestStartJudgesALeftoverPostmaster(t *testing.T) {
	n := newNode(t, "a")
	orphan := startOK(t, n.s).PID
	n.s.abandonForTest()
	n.newSupervisor(t)
	if err := n.s.StartHalted(); err != nil {
		t.Fatal(err)
	}
	ctx := ctxFor(t, time.Minute)
	if err := n.s.StartPrimary(ctx, replSettings(), false); err != nil || n.pid(t) != orphan {
		t.Fatalf("StartPrimary with a leftover primary: %v, pid %d; want it adopted (pid %d)", err, n.pid(t), orphan)
	}
	n.s.abandonForTest()
	n.newSupervisor(t)
	if err := n.s.StartHalted(); err != nil {
		t.Fatal(err)
	}
	if err := n.s.StartStandby(ctx, replSettings()); err != nil {
		t.Fatalf("StartStandby with a leftover primary: %v", err)
	}
	if n.pid(t) == orphan || n.queryString(t, `SELECT pg_is_in_recovery()::text`) != "true" {
		t.Fatal("the leftover primary was not restarted as a standby")
	}
}

func slogTo(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// A start asked for while a crash restart waits out its backoff is that
// restart: it is answered once the restart settles (starting at once would
// meet the crashed postmaster's children still holding its shared
// memory), and nothing starts twice or takes the new postmaster for
// someone else's.
func TestStartAfterCrashJoinsThePendingRestart(t *testing.T) {
	n := newNode(t, "a")
	n.s.backoffMin, n.s.backoffMax = time.Second, time.Second
	pid := startOK(t, n.s).PID
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ctx := ctxFor(t, time.Minute)
	for st := n.s.Status(ctx); st.State != StateCrashed; st = n.s.Status(ctx) {
		if ctx.Err() != nil {
			t.Fatalf("not crashed: %+v", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := n.s.StartPrimary(ctx, replSettings(), false); err != nil {
		t.Fatalf("StartPrimary after a crash: %v", err)
	}
	restarted := n.pid(t)
	time.Sleep(2 * time.Second) // past the backoff
	if n.pid(t) != restarted || n.log.contains("adopting the running PostgreSQL") {
		t.Errorf("the crash restart fired after the start (pid %d → %d)", restarted, n.pid(t))
	}
}
