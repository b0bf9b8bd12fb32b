//go:build e2e

package e2e

// The fixture's nodes: tandemd (start, stop, kill, restart, its pid), the
// power, the config file, processes, the cluster IP, and PostgreSQL as the
// client reaches it.

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// nodeDir is where the lab keeps a node's files: tandemd.yaml,
// tandemd.log, tandemd.pid, state/, pgdata/.
func (l *testLab) nodeDir(node string) string { return filepath.Join(labBase, l.name, node) }

// tandemdPid is the pid of the tandemd running on node, from the pid file
// the lab (or startTandemd) wrote. It fails the test when no tandemd runs
// there: no pid file, or the process it names is gone or is no tandemd of
// this node.
func (l *testLab) tandemdPid(node string) int {
	l.t.Helper()
	path := filepath.Join(l.nodeDir(node), "tandemd.pid")
	b, err := os.ReadFile(path)
	if err != nil {
		l.t.Fatalf("no tandemd pid file for %s: %v", node, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid < 2 {
		l.t.Fatalf("%s: %q is no pid", path, b)
	}
	cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if !pidLive(pid) || !strings.Contains(string(cmd), l.nodeDir(node)+"/") {
		l.t.Fatalf("no tandemd runs on %s: %s names pid %d, which is gone or another program (%q)", node, path, pid, strings.ReplaceAll(string(cmd), "\x00", " "))
	}
	return pid
}

// pidLive reports whether pid is a live process (a zombie counts as gone).
func pidLive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 || i+2 >= len(b) {
		return false
	}
	return b[i+2] != 'Z' && b[i+2] != 'X'
}

// startTandemd starts node's tandemd (tandem-witness on w) as `lab up`
// does: detached, in the node's namespace, with the lab's minimal
// environment plus env, its log appended to tandemd.log and its pid in
// tandemd.pid (where `lab down` finds it). It does not wait (see
// waitReady): a test of what a booting tandemd does looks at once.
func (l *testLab) startTandemd(node string, env ...string) {
	l.t.Helper()
	dir := l.nodeDir(node)
	logf, err := os.OpenFile(filepath.Join(dir, "tandemd.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		l.t.Fatal(err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "\n=== %s: the e2e test %s starts tandemd %v\n", time.Now().Format(time.RFC3339Nano), l.t.Name(), env)
	exe := filepath.Join(l.bin, "tandemd")
	if node == "w" {
		// The lab's witness host runs the witness's program, never a node.
		exe = filepath.Join(l.bin, "tandem-witness")
	}
	args := []string{"netns", "exec", l.netnsOf(node), exe, "--config", filepath.Join(dir, "tandemd.yaml")}
	if b, ok := l.private[node]; ok {
		// `ip netns exec` runs the command in a mount namespace of its
		// own: a bind mount made there is this tandemd's (and its
		// PostgreSQL's) alone. sh execs tandemd, so the pid stays.
		args = append([]string{"netns", "exec", l.netnsOf(node), "sh", "-c", `mount --bind "$1" "$2" && shift 2 && exec "$@"`, "sh", b[0], b[1]}, args[3:]...)
	}
	cmd := exec.Command("ip", args...)
	cmd.Env = append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C", "LC_ALL=C"}, env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		l.t.Fatalf("starting tandemd on %s: %v", node, err)
	}
	go func() { _ = cmd.Wait() }() // reaps it whenever it ends
	if err := os.WriteFile(filepath.Join(dir, "tandemd.pid"), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		l.t.Fatal(err)
	}
}

// waitReady waits until node's tandemd answers with PostgreSQL running.
func (l *testLab) waitReady(node string, timeout time.Duration) {
	l.t.Helper()
	took := eventually(l.t, "tandemd on "+node+" answers with PostgreSQL running", timeout, func() (bool, string) {
		n, err := l.nodeStatusErr(node)
		if err != nil {
			return false, err.Error() + "; see " + filepath.Join(l.nodeDir(node), "tandemd.log")
		}
		return n.Postgres.State == "running", fmt.Sprintf("role %s, PostgreSQL %s", n.Role, n.Postgres.State)
	})
	l.t.Logf("node %s: tandemd answers with PostgreSQL running after %s", node, took.Round(10*time.Millisecond))
}

// signalTandemd sends sig to node's tandemd and returns its pid.
func (l *testLab) signalTandemd(node string, sig syscall.Signal) int {
	l.t.Helper()
	pid := l.tandemdPid(node)
	if err := syscall.Kill(pid, sig); err != nil {
		l.t.Fatalf("%v to tandemd of %s (pid %d): %v", sig, node, pid, err)
	}
	return pid
}

// waitTandemdGone waits until the tandemd pid and every PostgreSQL process
// of node are gone.
func (l *testLab) waitTandemdGone(node string, pid int) {
	l.t.Helper()
	eventually(l.t, "tandemd and PostgreSQL on "+node+" stop", 60*time.Second, func() (bool, string) {
		pg := l.processesIn(node, "postgres")
		return !pidLive(pid) && len(pg) == 0, fmt.Sprintf("tandemd running %v, PostgreSQL processes %v", pidLive(pid), pg)
	})
}

// stopTandemd stops node's tandemd with SIGTERM (it stops PostgreSQL
// cleanly) and waits until both are gone: the node is away.
func (l *testLab) stopTandemd(node string) {
	l.t.Helper()
	start := time.Now()
	l.waitTandemdGone(node, l.signalTandemd(node, syscall.SIGTERM))
	l.t.Logf("node %s: tandemd and PostgreSQL stopped in %s", node, time.Since(start).Round(10*time.Millisecond))
}

// killTandemd kills node's tandemd with SIGKILL and waits until it is
// gone. Its PostgreSQL is left running, as after a crash of tandemd alone.
func (l *testLab) killTandemd(node string) {
	l.t.Helper()
	pid := l.signalTandemd(node, syscall.SIGKILL)
	eventually(l.t, "tandemd on "+node+" dies of SIGKILL", 60*time.Second, func() (bool, string) {
		return !pidLive(pid), fmt.Sprintf("pid %d still runs", pid)
	})
}

// restartTandemd stops node's tandemd and starts it again with env; it
// does not wait for the new one (see waitReady).
func (l *testLab) restartTandemd(node string, env ...string) {
	l.t.Helper()
	l.stopTandemd(node)
	l.startTandemd(node, env...)
}

// powerOff cuts node's power: every process in its namespace is killed at
// once, then its link goes down, so its addresses vanish from the wire.
// It is done here rather than with `tandem lab power-off` because powerOn
// must be able to boot tandemd with extra environment (a crash hook, a
// webhook), which `lab power-on` does not pass on; `lab env` does not list
// these cuts.
func (l *testLab) powerOff(node string) {
	l.t.Helper()
	ns := l.netnsOf(node)
	eventually(l.t, "every process on "+node+" dies of SIGKILL", 10*time.Second, func() (bool, string) {
		out, err := exec.Command("ip", "netns", "pids", ns).Output()
		if err != nil {
			return false, fmt.Sprintf("ip netns pids %s: %v", ns, err)
		}
		var live []int
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil && pid != os.Getpid() && pidLive(pid) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
				live = append(live, pid)
			}
		}
		return len(live) == 0, fmt.Sprintf("still running: %v", live)
	})
	l.ipRun(node, "link", "set", "eth0", "down")
	l.t.Logf("node %s: power off", node)
}

// powerOn boots node again: the cluster IP, an address added at run
// time, does not survive the reboot; the link comes up and tandemd starts
// with env (startTandemd: it does not wait).
func (l *testLab) powerOn(node string, env ...string) {
	l.t.Helper()
	_ = exec.Command("ip", "-n", l.netnsOf(node), "addr", "del", l.env.ClusterPrefix, "dev", "eth0").Run()
	l.ipRun(node, "link", "set", "eth0", "up")
	// In a cross-subnet lab the default route, which went down with the
	// link, comes back as at boot: without it the node reaches nothing
	// beyond its own subnet.
	for _, h := range l.env.Hosts {
		if h.Name == node && h.Gateway != "" {
			l.ipRun(node, "route", "replace", "default", "via", h.Gateway, "dev", "eth0")
		}
	}
	l.startTandemd(node, env...)
	l.t.Logf("node %s: power on", node)
}

// partition drops the traffic between two lab hosts (`tandem lab
// partition`, with flags such as --oneway); heal undoes partitions.
func (l *testLab) partition(h1, h2 string, flags ...string) {
	l.t.Helper()
	l.labCommand("partition", append([]string{h1, h2}, flags...)...)
}

// heal undoes the partitions and netem between hosts (all with none).
func (l *testLab) heal(hosts ...string) {
	l.t.Helper()
	l.labCommand("heal", hosts...)
}

// configure sets tandemd settings in node's config file, by dotted path
// (replication.sync_grace) or top-level key (services).
func (l *testLab) configure(node string, settings map[string]any) {
	l.t.Helper()
	path := filepath.Join(l.nodeDir(node), "tandemd.yaml")
	b, err := os.ReadFile(path)
	if err != nil {
		l.t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		l.t.Fatalf("%s: %v", path, err)
	}
	for key, val := range settings {
		parts := strings.Split(key, ".")
		m := doc
		for _, part := range parts[:len(parts)-1] {
			sub, ok := m[part].(map[string]any)
			if !ok {
				sub = map[string]any{}
				m[part] = sub
			}
			m = sub
		}
		m[parts[len(parts)-1]] = val
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		l.t.Fatal(err)
	}
	out = append([]byte("# rewritten by the e2e test "+l.t.Name()+"\n"), out...)
	if err := os.WriteFile(path, out, 0o644); err != nil {
		l.t.Fatal(err)
	}
	l.t.Logf("node %s: set %v in %s", node, settings, path)
}

// processesIn lists the pids in node's namespace whose command line
// contains match.
func (l *testLab) processesIn(node, match string) []int {
	l.t.Helper()
	out, err := exec.Command("ip", "netns", "pids", l.netnsOf(node)).Output()
	if err != nil {
		l.t.Fatalf("ip netns pids %s: %v", l.netnsOf(node), err)
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || !pidLive(pid) {
			continue
		}
		if strings.Contains(strings.ReplaceAll(string(b), "\x00", " "), match) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// postmasterPid is the pid in node's postmaster.pid.
func (l *testLab) postmasterPid(node string) int {
	l.t.Helper()
	path := filepath.Join(l.nodeDir(node), "pgdata", "postmaster.pid")
	b, err := os.ReadFile(path)
	if err != nil {
		l.t.Fatal(err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil {
		l.t.Fatalf("%s: %q is no pid", path, first)
	}
	return pid
}

// pauseWALReceiver freezes node's WAL receiver (SIGSTOP) and returns its
// pid and a function that lets it go on; a cleanup lets it go on in any
// case.
func (l *testLab) pauseWALReceiver(node string) (pid int, resume func()) {
	l.t.Helper()
	pids := l.processesIn(node, "postgres: walreceiver")
	if len(pids) != 1 {
		l.t.Fatalf("want one WAL receiver on %s, found %v", node, pids)
	}
	pid = pids[0]
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		l.t.Fatalf("SIGSTOP to the WAL receiver %d: %v", pid, err)
	}
	var once sync.Once
	resume = func() { once.Do(func() { _ = syscall.Kill(pid, syscall.SIGCONT) }) }
	l.t.Cleanup(resume)
	return pid, resume
}

// startIn starts argv on a lab host (in its namespace, so `lab down` ends
// it) without waiting, its output to out (nil: none).
func (l *testLab) startIn(host string, out io.Writer, argv ...string) *exec.Cmd {
	l.t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", l.netnsOf(host)}, argv...)...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	return cmd
}

// holdsClusterIP reports whether node has the cluster IP on an interface
// that is up (a powered-off node's link is down: its addresses are off
// the wire).
func (l *testLab) holdsClusterIP(node string) bool {
	l.t.Helper()
	held, err := hasAddrUp(l.netnsOf(node), l.env.ClusterIP)
	if err != nil {
		l.t.Fatal(err)
	}
	return held
}

// hasAddrUp reports whether namespace ns has ip on an interface that is
// up; it never fails the test, for goroutines that sample.
func hasAddrUp(ns, ip string) (bool, error) {
	out, err := exec.Command("ip", "-n", ns, "-o", "addr", "show", "up").Output()
	if err != nil {
		return false, fmt.Errorf("ip -n %s addr show up: %v", ns, err)
	}
	return strings.Contains(string(out), " "+ip+"/"), nil
}

// clusterIPHolders names the nodes that hold the cluster IP now.
func (l *testLab) clusterIPHolders() []string {
	l.t.Helper()
	var out []string
	for _, n := range []string{"a", "b"} {
		if l.holdsClusterIP(n) {
			out = append(out, n)
		}
	}
	return out
}

// waitWrites waits until the cluster DNS name reaches a read-write
// PostgreSQL and node holds the cluster IP.
func (l *testLab) waitWrites(node string, timeout time.Duration) time.Duration {
	l.t.Helper()
	return eventually(l.t, "writes through "+l.env.DNSName+" on "+node, timeout, func() (bool, string) {
		out, err := l.sql(l.env.DNSName, "SELECT pg_is_in_recovery()")
		if err != nil {
			return false, err.Error()
		}
		held := l.holdsClusterIP(node)
		return out == "f" && held, fmt.Sprintf("in recovery %s; cluster IP held by %v", out, l.clusterIPHolders())
	})
}

// passwords are the PostgreSQL superuser passwords to try on target: node
// a's (the cluster's, which a replica of a shares), then, when target is
// node b, b's own from its state dir (b before assembly or after it left).
func (l *testLab) passwords(target string) []string {
	pws := []string{l.env.Postgres.Password}
	if target == "b" || target == l.fqdn("b") || target == l.env.nodeIP("b") {
		if b, err := os.ReadFile(filepath.Join(l.nodeDir("b"), "state", "postgres-password")); err == nil {
			if pw := strings.TrimSpace(string(b)); pw != "" && pw != pws[0] {
				pws = append(pws, pw)
			}
		}
	}
	return pws
}

// sql runs query with psql on the client against target as the lab's
// superuser and returns its unaligned, trimmed output. target is a lab
// host's short name (db, a, b: in the lab's domain), a full name or an
// address.
func (l *testLab) sql(target, query string) (string, error) {
	host := target
	if !strings.ContainsAny(target, ".:") {
		host = l.fqdn(target)
	}
	var last error
	for _, pw := range l.passwords(target) {
		conn := fmt.Sprintf("host=%s port=%d user=%s password=%s connect_timeout=3 dbname=postgres",
			host, l.env.Postgres.Port, l.env.Postgres.User, pw)
		out, errOut, err := l.execErr("client", nil, "psql", "-X", "-v", "ON_ERROR_STOP=1", conn, "-Atc", query)
		if err == nil {
			return strings.TrimSpace(out), nil
		}
		last = fmt.Errorf("psql on %s: %v: %s", target, err, strings.TrimSpace(errOut))
		if !strings.Contains(errOut, "password authentication failed") {
			break
		}
	}
	return "", last
}

func (l *testLab) mustSQL(target, query string) string {
	l.t.Helper()
	out, err := l.sql(target, query)
	if err != nil {
		l.t.Fatalf("%s\n(query: %s)", err, query)
	}
	return out
}

// waitSQL waits until query on target returns want.
func (l *testLab) waitSQL(target, query, want string, timeout time.Duration) {
	l.t.Helper()
	eventually(l.t, fmt.Sprintf("%q on %s returns %q", query, target, want), timeout, func() (bool, string) {
		out, err := l.sql(target, query)
		if err != nil {
			return false, err.Error()
		}
		return out == want, out
	})
}

// sqlResult is the outcome of a query run in the background.
type sqlResult struct {
	out  string
	err  error
	took time.Duration
}

// sqlAsync runs query in the background; the channel gets its outcome.
func (l *testLab) sqlAsync(target, query string) <-chan sqlResult {
	ch := make(chan sqlResult, 1)
	start := time.Now()
	go func() {
		out, err := l.sql(target, query)
		ch <- sqlResult{out, err, time.Since(start)}
	}()
	return ch
}

// noOldDataOn checks that node kept no moved-aside data directory: the
// old data goes once the clone streams.
func (l *testLab) noOldDataOn(t *testing.T, node string) {
	t.Helper()
	if m, _ := filepath.Glob(filepath.Join(l.nodeDir(node), "pgdata.tandem-old-*")); len(m) > 0 {
		t.Errorf("%s kept old data directories after the clone streamed: %v", node, m)
	}
}
