package postgres

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestBackoffDoublesCapsAndResets(t *testing.T) {
	b := backoff{min: 500 * time.Millisecond, max: 10 * time.Second}
	want := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second}
	for i, w := range want {
		if got := b.next(); got != w {
			t.Fatalf("step %d: got %s, want %s", i, got, w)
		}
	}
	b.reset()
	if got := b.next(); got != 500*time.Millisecond {
		t.Fatalf("after reset: got %s, want 500ms", got)
	}
}

func TestParsePidFile(t *testing.T) {
	full := "4242\n/var/lib/tandem/pgdata\n1700000000\n5432\n/run/tandem/postgresql\n*\n  5432001    131072\nready   \n"
	pf, err := parsePidFile([]byte(full))
	if err != nil {
		t.Fatal(err)
	}
	want := pidFile{PID: 4242, DataDir: "/var/lib/tandem/pgdata", StartTime: 1700000000, Port: 5432,
		SocketDir: "/run/tandem/postgresql", ListenAddr: "*", Status: "ready"}
	if pf != want {
		t.Fatalf("got %+v\nwant %+v", pf, want)
	}

	// A postmaster that is still starting has written only the first lines.
	pf, err = parsePidFile([]byte("77\n/data\n"))
	if err != nil || pf.PID != 77 || pf.DataDir != "/data" || pf.Port != 0 || pf.Status != "" {
		t.Fatalf("partial file: got %+v, %v", pf, err)
	}

	// Single-user mode writes the negated PID.
	pf, err = parsePidFile([]byte("-99\n/data\n"))
	if err != nil || pf.PID != 99 || !pf.Standalone {
		t.Fatalf("standalone: got %+v, %v", pf, err)
	}

	for _, bad := range []string{"", "\n", "abc\n/data\n", "0\n"} {
		if _, err := parsePidFile([]byte(bad)); err == nil {
			t.Errorf("%q: want an error", bad)
		}
	}
}

func TestParseProcStat(t *testing.T) {
	// The command name may hold spaces and parentheses.
	line := "1234 (post (gres) x) S 1 1234 1234 0 -1 4194560 2000 0 0 0 10 20 0 0 20 0 1 0 987654 229376000 4000 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
	st, err := parseProcStat(line)
	if err != nil {
		t.Fatal(err)
	}
	if st.comm != "post (gres) x" || st.state != 'S' || st.startTick != 987654 {
		t.Fatalf("got %+v", st)
	}
	if _, err := parseProcStat("1234 (x) Z 1"); err == nil {
		t.Fatal("short line: want an error")
	}
}

func TestRenderTandemConf(t *testing.T) {
	got := renderTandemConf(Options{Port: 5433, ListenAddresses: "*", SocketDir: `/run/it's\here`}, nil)
	for _, want := range []string{
		"# Managed by tandemd",
		"\nport = 5433\n",
		"\nlisten_addresses = '*'\n",
		`unix_socket_directories = '/run/it''s\\here'` + "\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("tandem.conf lacks %q:\n%s", want, got)
		}
	}
	for _, l := range strings.Split(strings.TrimSpace(got), "\n") {
		if !strings.HasPrefix(l, "#") && !strings.Contains(l, " = ") {
			t.Errorf("line %q is neither a comment nor a setting", l)
		}
	}
}

func TestEnsureIncludeAppendsOnce(t *testing.T) {
	orig := []byte("max_connections = 100\n#port = 5432")
	once, changed := ensureInclude(orig)
	if !changed {
		t.Fatal("first call: want a change")
	}
	if !strings.HasPrefix(string(once), string(orig)+"\n") {
		t.Fatalf("original text not kept intact:\n%s", once)
	}
	if !strings.HasSuffix(string(once), "\ninclude_if_exists = 'tandem.conf'\n") {
		t.Fatalf("include not at the end:\n%s", once)
	}
	twice, changed := ensureInclude(once)
	if changed || string(twice) != string(once) {
		t.Fatalf("second call changed the file:\n%s", twice)
	}
	// An include someone indented is still recognised.
	if _, changed := ensureInclude([]byte("  include_if_exists = 'tandem.conf'  \n")); changed {
		t.Fatal("indented include not recognised")
	}
}

func TestParseServerVersion(t *testing.T) {
	for in, want := range map[string]string{
		"postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n": "15",
		"postgres (PostgreSQL) 17.2\n":                           "17",
		"postgres (PostgreSQL) 18beta1\n":                        "18",
		"postgres (PostgreSQL) 9.6.24\n":                         "9.6",
	} {
		got, err := parseServerVersion(in)
		if err != nil || got != want {
			t.Errorf("%q: got %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := parseServerVersion("bash: postgres: not found"); err == nil {
		t.Error("garbage: want an error")
	}
}

func TestCanTraverse(t *testing.T) {
	const me, mygrp, other = 101, 104, 0
	cases := []struct {
		perm         os.FileMode
		owner, group uint32
		want         bool
		name         string
	}{
		{0o700, other, other, false, "root-only dir"},
		{0o755, other, other, true, "world-traversable"},
		{0o711, other, other, true, "execute-only for others"},
		{0o750, other, mygrp, true, "group may enter"},
		{0o705, other, mygrp, false, "group class applies, not other"},
		{0o700, me, mygrp, true, "own dir"},
		{0o077, me, mygrp, false, "owner class applies even if others may"},
	}
	for _, c := range cases {
		if got := canTraverse(c.perm, c.owner, c.group, me, mygrp); got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
	}
}

func TestInspectDataDir(t *testing.T) {
	dir := t.TempDir()
	check := func(path string, want dirKind) {
		t.Helper()
		got, err := inspectDataDir(path)
		if err != nil || got != want {
			t.Fatalf("%s: got %v, %v; want %v", path, got, err, want)
		}
	}
	check(filepath.Join(dir, "missing"), dirMissing)
	check(dir, dirEmpty)
	if err := os.WriteFile(filepath.Join(dir, "stray"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	check(dir, dirForeign)
	if err := os.WriteFile(filepath.Join(dir, "PG_VERSION"), []byte("15\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	check(dir, dirCluster)
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "secret")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeFileAtomic(path, []byte("new\n"), 0o600, -1, -1); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil || string(b) != "new\n" {
		t.Fatalf("got %q, %v", b, err)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("temporary files left behind: %v", entries)
	}
}

func TestOptionsCheckListsEveryProblem(t *testing.T) {
	err := Options{DataDir: "rel", SocketDir: "/" + strings.Repeat("s", 120), Port: 0, Init: "sometimes"}.check()
	if err == nil {
		t.Fatal("want an error")
	}
	for _, want := range []string{"BinDir", "DataDir", "too long", "Port", "OSUser", "ListenAddresses", "Init", "StopTimeout"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %s: %v", want, err)
		}
	}
}

func TestQuoteConnValue(t *testing.T) {
	if got := quoteConnValue(`/a b/it's\x`); got != `'/a b/it\'s\\x'` {
		t.Fatalf("got %s", got)
	}
}

func TestJudgePID(t *testing.T) {
	dir := t.TempDir()
	s := &Supervisor{opts: Options{DataDir: dir}}

	// This test process: not a postmaster in dir. Younger than a file
	// written in 1970, so that file is stale; older than one written now.
	if got := s.judgePID(os.Getpid(), time.Unix(0, 0)); got != pidOther {
		t.Errorf("self vs old file: got %v, want pidOther", got)
	}
	if got := s.judgePID(os.Getpid(), time.Now().Add(time.Hour)); got != pidUnknown {
		t.Errorf("self vs new file: got %v, want pidUnknown", got)
	}

	// An exited, unreaped child is a zombie: dead, whatever kill(pid, 0) says.
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Skipf("cannot run true: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if st, err := readProcStat(cmd.Process.Pid); err == nil && st.state == 'Z' {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("child did not become a zombie")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := s.judgePID(cmd.Process.Pid, time.Now()); got != pidZombie {
		t.Errorf("zombie: got %v, want pidZombie", got)
	}
	if alive(cmd.Process) {
		t.Error("alive() says a zombie lives")
	}
	_ = cmd.Wait()
	if got := s.judgePID(cmd.Process.Pid, time.Now()); got != pidGone {
		t.Errorf("reaped: got %v, want pidGone", got)
	}
}

func TestAsideNamesSortByAge(t *testing.T) {
	dir := "/var/lib/tandem/pgdata"
	t0 := time.Date(2025, 3, 9, 23, 59, 59, 999_999_000, time.FixedZone("CET", 3600))
	got := asideName(dir+"/", asideClone, t0)
	if want := "/var/lib/tandem/pgdata.tandem-old-20250309T225959.999999"; got != want {
		t.Fatalf("asideName: %q, want %q (UTC, fixed width)", got, want)
	}
	var names []string
	for _, d := range []time.Duration{0, time.Microsecond, time.Second, 10 * time.Hour, 24 * 400 * time.Hour} {
		names = append(names, asideName(dir, asideClone, t0.Add(d)))
	}
	if !sort.StringsAreSorted(names) {
		t.Fatalf("names do not sort by age: %v", names)
	}
}

func TestAsidesListsOnlyItsTagOldestFirst(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "da[ta]") // a glob character in the name
	t0 := time.Now()
	want := []string{asideName(dir, asideClone, t0), asideName(dir, asideClone, t0.Add(time.Second))}
	others := []string{asideName(dir, asideLeft, t0), asideName(dir, asideTrash, t0), dir, filepath.Join(parent, "other.tandem-old-1")}
	for _, p := range append(append([]string{}, want[1], want[0]), others...) {
		if err := os.Mkdir(p, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if got := asides(dir, asideClone); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("asides: %v, want %v", got, want)
	}
}

func TestCheckAsideRefusesOtherPaths(t *testing.T) {
	dir := "/srv/pg/data"
	ok := []string{"/srv/pg/data.tandem-old-20250101T000000.000000", "/srv/pg/data.tandem-left-x"}
	for _, p := range ok {
		if err := checkAside(dir, p, asideClone, asideLeft); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	bad := []string{
		"", "/srv/pg/data", "/srv/pg/data.tandem-old-", "data.tandem-old-1",
		"/srv/pg/data.tandem-discard-1", "/srv/pg/other.tandem-old-1",
		"/srv/pg/data.tandem-old-1/..", "/srv/data.tandem-old-1", "/srv/pg/x/data.tandem-old-1",
	}
	for _, p := range bad {
		if err := checkAside(dir, p, asideClone, asideLeft); err == nil {
			t.Errorf("%q accepted", p)
		}
	}
}

func TestSourceKeepsItsPasswordOutOfTextAndLogs(t *testing.T) {
	src := Source{Host: "10.0.0.2", Port: 5432, User: "tandem_repl", Password: "s3cret'\\pw"}
	ci := src.conninfo()
	if want := `host='10.0.0.2' port='5432' user='tandem_repl' dbname='postgres' connect_timeout='5' application_name='tandemd'`; ci != want {
		t.Errorf("conninfo:\n%s\nwant\n%s", ci, want)
	}
	var buf strings.Builder
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "source", src)
	for _, text := range []string{ci, src.String(), fmt.Sprint(src), fmt.Sprintf("%+v", src), fmt.Sprintf("%#v", src), buf.String()} {
		if strings.Contains(text, "s3cret") {
			t.Errorf("password in %q", text)
		}
	}
	if !strings.Contains(buf.String(), "source.host=10.0.0.2") {
		t.Errorf("log line lacks the host: %s", buf.String())
	}
	if got := (Source{Host: "fd00::2", Port: 5433, User: "u"}).String(); got != "u@[fd00::2]:5433" {
		t.Errorf("IPv6 source: %s", got)
	}
	quoted := Source{Host: "h", Port: 1, User: "we'ird"}.conninfo()
	if !strings.Contains(quoted, `user='we\'ird'`) {
		t.Errorf("user not quoted: %s", quoted)
	}
}

func TestSourceCheckListsEveryProblem(t *testing.T) {
	if err := (Source{Host: "h", Port: 5432, User: "u"}).check(); err != nil {
		t.Errorf("valid source refused: %v", err)
	}
	err := Source{Port: 70000, Password: "a\x00b"}.check()
	if err == nil {
		t.Fatal("invalid source accepted")
	}
	for _, want := range []string{"host", "port 70000", "user", "NUL"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
}

func TestCheckSlotName(t *testing.T) {
	for _, ok := range []string{"tandem_b", "s1", strings.Repeat("a", 63)} {
		if err := checkSlotName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "Tandem", "a-b", "a b", "--slot=x", strings.Repeat("a", 64)} {
		if err := checkSlotName(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestSampleProgressReportsUntilStopped(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), make([]byte, 1000), 0o600); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var calls [][2]int64
	stop := sampleProgress(dir, func() int64 { return 5000 }, func(done, total int64) {
		mu.Lock()
		calls = append(calls, [2]int64{done, total})
		mu.Unlock()
	})
	time.Sleep(progressEvery + progressEvery/2)
	stop()
	mu.Lock()
	n := len(calls)
	got := append([][2]int64{}, calls...)
	mu.Unlock()
	time.Sleep(progressEvery)
	mu.Lock()
	defer mu.Unlock()
	if len(calls) != n {
		t.Errorf("progress reported after stop")
	}
	if n < 2 || got[0] != [2]int64{0, 5000} || got[1] != [2]int64{1000, 5000} {
		t.Errorf("reports %v, want [0 5000] then [1000 5000]", got)
	}
	sampleProgress(dir, func() int64 { panic("measured without a callback") }, nil)()
}
