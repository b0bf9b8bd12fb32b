//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// pairLab is a lab whose nodes a and b are (or are about to be) one
// cluster, assembled by the console from the client host. Every console
// call runs on the client, with a cache dir of the test's own, so later
// commands (status, events, disassemble) know the cluster the test made.
type pairLab struct {
	*testLab
	env   pairEnv
	cache string // TANDEM_CACHE_DIR of every console call
}

// pairEnv is `lab env --json` with the fields only these tests read.
type pairEnv struct {
	labEnv
	ClusterPrefix string `json:"cluster_prefix"`
}

// pairOpts says how to set a pair up.
type pairOpts struct {
	// replication is the mode given to assemble ("" = the default, sync).
	replication string
	// settings are tandemd settings for node a, by dotted path
	// (replication.sync_grace: 5s), written to its config and applied by
	// restarting its tandemd before the assembly.
	settings map[string]string
	// noAssemble leaves both nodes as lab up made them, for the tests of
	// refused assemblies.
	noAssemble bool
}

var labUpHelp struct {
	once       sync.Once
	noAssemble bool
}

// labUpAssembles reports whether `lab up` assembles by default, which it
// does once it offers --no-assemble; these tests then pass that flag and
// assemble themselves, with the settings and cache they need.
func labUpAssembles(l *testLab) bool {
	labUpHelp.once.Do(func() {
		out, _, _ := l.tandem(nil, 30*time.Second, "lab", "up", "--help")
		labUpHelp.noAssemble = strings.Contains(out, "--no-assemble")
	})
	return labUpHelp.noAssemble
}

// upPair brings up a lab with both nodes unassembled, applies o.settings
// on node a, and (unless o.noAssemble) assembles a as primary and b as
// secondary with the console on the client, waiting until b streams.
func upPair(t *testing.T, o pairOpts) *pairLab {
	t.Helper()
	probe := &testLab{t: t, bin: binDir(t)}
	var args []string
	if labUpAssembles(probe) {
		args = append(args, "--no-assemble")
	}
	p := &pairLab{testLab: upLab(t, args...), cache: t.TempDir()}
	p.env = p.readEnv()
	if len(p.env.Nodes) != 2 || p.env.Nodes[0].Name != "a" || p.env.Nodes[1].Name != "b" || p.env.Postgres.Password == "" {
		t.Fatalf("lab env: want nodes a and b and a PostgreSQL password, got %+v", p.env)
	}
	for _, n := range []string{"a", "b"} {
		if r := p.role(n); r != "none" {
			t.Fatalf("after lab up %v node %s has role %q, want none: lab up assembled the nodes although it does not offer --no-assemble; these tests must assemble themselves (with their own settings and console cache)", args, n, r)
		}
	}
	if len(o.settings) > 0 {
		p.configure("a", o.settings)
		p.stopTandemd("a")
		p.startTandemd("a")
	}
	if !o.noAssemble {
		p.assembleOK(o.replication)
	}
	return p
}

// sub is p for a subtest: failures go to t.
func (p *pairLab) sub(t *testing.T) *pairLab {
	l := *p.testLab
	l.t = t
	q := *p
	q.testLab = &l
	return &q
}

func (p *pairLab) readEnv() pairEnv {
	p.t.Helper()
	out, errOut, err := p.tandem(nil, 30*time.Second, "lab", "env", "--name", p.name, "--json")
	if err != nil {
		p.t.Fatalf("lab env --json: %v\n%s", err, errOut)
	}
	var e pairEnv
	if err := json.Unmarshal([]byte(out), &e); err != nil {
		p.t.Fatalf("lab env --json printed no JSON: %v\n%s", err, out)
	}
	return e
}

func (p *pairLab) domain() string          { return p.env.Domain }
func (p *pairLab) fqdn(node string) string { return node + "." + p.env.Domain }
func (p *pairLab) netns(node string) string {
	return p.name + "-" + node
}
func (p *pairLab) nodeDir(node string) string { return filepath.Join(labBase, p.name, node) }

func (p *pairLab) clusterPrefix() string {
	if p.env.ClusterPrefix != "" {
		return p.env.ClusterPrefix
	}
	return p.env.ClusterIP + "/24"
}

func (p *pairLab) token(node string) string {
	for _, n := range p.env.Nodes {
		if n.Name == node {
			return n.Token
		}
	}
	p.t.Fatalf("lab env has no node %s", node)
	return ""
}

func (p *pairLab) nodeIP(node string) string {
	for _, n := range p.env.Nodes {
		if n.Name == node {
			return n.IP
		}
	}
	p.t.Fatalf("lab env has no node %s", node)
	return ""
}

// console runs the tandem console on the client host with the test's
// cache dir and extra environment; it returns stdout, stderr and the exit
// status (-1 when it did not exit by itself).
func (p *pairLab) console(env []string, timeout time.Duration, args ...string) (string, string, int) {
	argv := append([]string{"lab", "exec", "--name", p.name, "client", "--", filepath.Join(p.bin, "tandem")}, args...)
	out, errOut, err := p.tandem(append([]string{"TANDEM_CACHE_DIR=" + p.cache}, env...), timeout, argv...)
	return out, errOut, exitCode(err)
}

// consolePiped is console with stdin an empty pipe instead of the
// harness's /dev/null: another kind of "not a terminal".
func (p *pairLab) consolePiped(env []string, timeout time.Duration, args ...string) (string, string, int) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	argv := append([]string{"lab", "exec", "--name", p.name, "client", "--", filepath.Join(p.bin, "tandem")}, args...)
	cmd := exec.CommandContext(ctx, filepath.Join(p.bin, "tandem"), argv...)
	cmd.Env = append(cleanEnv(), append([]string{"TANDEM_CACHE_DIR=" + p.cache}, env...)...)
	cmd.Stdin = strings.NewReader("")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), exitCode(err)
}

// consoleOK is console, failing the test unless the command exits 0.
func (p *pairLab) consoleOK(env []string, timeout time.Duration, args ...string) string {
	p.t.Helper()
	out, errOut, code := p.console(env, timeout, args...)
	if code != 0 {
		p.t.Fatalf("tandem %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

func (p *pairLab) assembleEnv() []string {
	return []string{"TANDEM_PRIMARY_TOKEN=" + p.token("a"), "TANDEM_SECONDARY_TOKEN=" + p.token("b")}
}

// assembleArgs is `tandem assemble` for primary a and secondary b, plus extra.
func (p *pairLab) assembleArgs(extra ...string) []string {
	return append([]string{"assemble", "--trust-new",
		"--primary", p.fqdn("a"), "--secondary", p.fqdn("b"),
		"--cluster-ip", p.clusterPrefix(), "--dns-name", p.env.DNSName}, extra...)
}

// assembleOK assembles a (primary) and b (secondary) and waits until the
// console shows b streaming.
func (p *pairLab) assembleOK(mode string) {
	p.t.Helper()
	extra := []string{"--yes"}
	if mode != "" {
		extra = append(extra, "--replication", mode)
	}
	start := time.Now()
	out := p.consoleOK(p.assembleEnv(), 5*time.Minute, p.assembleArgs(extra...)...)
	p.t.Logf("assembled in %s:\n%s", time.Since(start).Round(10*time.Millisecond), out)
	p.waitStreaming("after assembly", time.Minute)
}

// waitStreaming waits until a, the primary, sees b streaming.
func (p *pairLab) waitStreaming(what string, limit time.Duration) {
	p.t.Helper()
	p.eventually(limit, "b streams from a "+what, func() (bool, string) {
		st, err := p.statusErr()
		if err != nil {
			return false, err.Error()
		}
		a, b := st.node("a"), st.node("b")
		ok := a != nil && b != nil && a.Role == "primary" && b.Role == "secondary" &&
			a.Replication != nil && a.Replication.State == "streaming" &&
			b.Replication != nil && b.Replication.ReceiverStatus == "streaming"
		return ok, st.String()
	})
}

// consoleStatus is the part of `tandem status -o json` the tests read.
type consoleStatus struct {
	Cluster *struct {
		Name         string `json:"name"`
		State        string `json:"state"`
		Term         int64  `json:"term"`
		Primary      string `json:"primary"`
		ClusterIP    string `json:"cluster_ip"`
		DNSName      string `json:"dns_name"`
		Replication  string `json:"replication"`
		Synchronized bool   `json:"synchronized"`
		Degraded     bool   `json:"degraded"`
	} `json:"cluster"`
	Nodes    []consoleNode `json:"nodes"`
	Warnings []string      `json:"warnings"`
}

type consoleNode struct {
	Name      string `json:"name"`
	Address   string `json:"address"`
	Reachable bool   `json:"reachable"`
	Role      string `json:"role"`
	Term      int64  `json:"term"`
	Cluster   string `json:"cluster"`
	Operation string `json:"operation"`
	Postgres  struct {
		State      string `json:"state"`
		InRecovery bool   `json:"in_recovery"`
		VersionNum int    `json:"version_num"`
	} `json:"postgres"`
	Replication *struct {
		State          string `json:"state"`
		SyncState      string `json:"sync_state"`
		LagBytes       int64  `json:"lag_bytes"`
		Slot           string `json:"slot"`
		SlotWALStatus  string `json:"slot_wal_status"`
		RetainedBytes  int64  `json:"wal_retained_bytes"`
		ReceiverStatus string `json:"receiver_status"`
	} `json:"replication"`
	ClusterIP *struct {
		Address string `json:"address"`
		Held    bool   `json:"held"`
	} `json:"cluster_ip"`
}

func (s consoleStatus) node(name string) *consoleNode {
	for i := range s.Nodes {
		if s.Nodes[i].Name == name {
			return &s.Nodes[i]
		}
	}
	return nil
}

// String is a one-line summary for failure messages.
func (s consoleStatus) String() string {
	var b strings.Builder
	if c := s.Cluster; c != nil {
		fmt.Fprintf(&b, "cluster %s state=%s term=%d primary=%s mode=%s synchronized=%v degraded=%v;", c.Name, c.State, c.Term, c.Primary, c.Replication, c.Synchronized, c.Degraded)
	}
	for _, n := range s.Nodes {
		fmt.Fprintf(&b, " %s: reachable=%v role=%s term=%d pg=%s recovery=%v op=%q", n.Name, n.Reachable, n.Role, n.Term, n.Postgres.State, n.Postgres.InRecovery, n.Operation)
		if r := n.Replication; r != nil {
			fmt.Fprintf(&b, " repl=%s sync=%s slot=%s/%s retained=%d receiver=%s", r.State, r.SyncState, r.Slot, r.SlotWALStatus, r.RetainedBytes, r.ReceiverStatus)
		}
		if c := n.ClusterIP; c != nil {
			fmt.Fprintf(&b, " cluster_ip_held=%v", c.Held)
		}
		b.WriteString(";")
	}
	return b.String()
}

// statusErr is `tandem status -o json` of the cluster the console knows.
func (p *pairLab) statusErr() (consoleStatus, error) {
	out, errOut, code := p.console(nil, 40*time.Second, "status", "-o", "json")
	var st consoleStatus
	if code != 0 {
		return st, fmt.Errorf("tandem status: exit %d: %s%s", code, out, errOut)
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return st, fmt.Errorf("tandem status -o json printed no JSON (%v): %s", err, out)
	}
	return st, nil
}

func (p *pairLab) status() consoleStatus {
	p.t.Helper()
	st, err := p.statusErr()
	if err != nil {
		p.t.Fatal(err)
	}
	return st
}

// nodeStatusErr is `tandem status --endpoint NODE -o json` with the node's
// own token: that node as it sees itself (first in nodes[]).
func (p *pairLab) nodeStatusErr(node string) (consoleNode, error) {
	out, errOut, code := p.console([]string{"TANDEM_TOKEN=" + p.token(node)}, 40*time.Second,
		"status", "--endpoint", p.fqdn(node), "-o", "json", "--trust-new")
	var st consoleStatus
	if code != 0 {
		return consoleNode{}, fmt.Errorf("tandem status --endpoint %s: exit %d: %s%s", p.fqdn(node), code, out, errOut)
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil || len(st.Nodes) == 0 {
		return consoleNode{}, fmt.Errorf("tandem status --endpoint %s -o json: not the expected JSON (%v): %s", p.fqdn(node), err, out)
	}
	return st.Nodes[0], nil
}

func (p *pairLab) nodeStatus(node string) consoleNode {
	p.t.Helper()
	n, err := p.nodeStatusErr(node)
	if err != nil {
		p.t.Fatal(err)
	}
	return n
}

func (p *pairLab) role(node string) string {
	p.t.Helper()
	return p.nodeStatus(node).Role
}

// event is one line of `tandem events -o json`.
type clusterEvent struct {
	At      time.Time `json:"at"`
	Kind    string    `json:"kind"`
	Node    string    `json:"node"`
	Term    int64     `json:"term"`
	Message string    `json:"message"`
}

// eventsErr lists the cluster's events; with a node name, that node's copy
// through --endpoint and its token (for a cluster the console forgot).
func (p *pairLab) eventsErr(endpoint string) ([]clusterEvent, error) {
	args := []string{"events", "-o", "json", "--limit", "1000"}
	var env []string
	if endpoint != "" {
		args = append(args, "--endpoint", p.fqdn(endpoint))
		env = []string{"TANDEM_TOKEN=" + p.token(endpoint)}
	}
	out, errOut, code := p.console(env, 40*time.Second, args...)
	if code != 0 {
		return nil, fmt.Errorf("tandem events: exit %d: %s%s", code, out, errOut)
	}
	var res struct {
		Events []clusterEvent `json:"events"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		return nil, fmt.Errorf("tandem events -o json printed no JSON (%v): %s", err, out)
	}
	return res.Events, nil
}

func (p *pairLab) events() []clusterEvent {
	p.t.Helper()
	ev, err := p.eventsErr("")
	if err != nil {
		p.t.Fatal(err)
	}
	return ev
}

func eventKinds(ev []clusterEvent) []string {
	var out []string
	for _, e := range ev {
		out = append(out, e.Kind)
	}
	return out
}

func countEvents(ev []clusterEvent, kind string) int {
	n := 0
	for _, e := range ev {
		if e.Kind == kind {
			n++
		}
	}
	return n
}

// waitEvent waits until the cluster's events hold kind, and returns them.
func (p *pairLab) waitEvent(kind string, limit time.Duration) []clusterEvent {
	p.t.Helper()
	var ev []clusterEvent
	p.eventually(limit, "event "+kind, func() (bool, string) {
		var err error
		ev, err = p.eventsErr("")
		if err != nil {
			return false, err.Error()
		}
		return slices.Contains(eventKinds(ev), kind), fmt.Sprint(eventKinds(ev))
	})
	return ev
}

// eventually polls check until it reports true, failing the test with
// check's last word when limit passes.
func (p *pairLab) eventually(limit time.Duration, what string, check func() (bool, string)) {
	p.t.Helper()
	start := time.Now()
	for {
		ok, last := check()
		if ok {
			return
		}
		if time.Since(start) > limit {
			p.t.Fatalf("%s: not within %s; last seen: %s", what, limit, last)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// passwords are the PostgreSQL superuser passwords to try on host: node
// a's (the cluster's, which a replica of a shares), then for node b its
// own, from its state dir (b before assembly or after it left).
func (p *pairLab) passwords(host string) []string {
	pws := []string{p.env.Postgres.Password}
	if host == "b" {
		if b, err := os.ReadFile(filepath.Join(p.nodeDir("b"), "state", "postgres-password")); err == nil {
			if pw := strings.TrimSpace(string(b)); pw != "" && pw != pws[0] {
				pws = append(pws, pw)
			}
		}
	}
	return pws
}

// sql runs query with psql on the client against host (db, a or b, in
// the lab's domain) and returns its unaligned, trimmed output.
func (p *pairLab) sql(host, query string) (string, error) {
	var last error
	for _, pw := range p.passwords(host) {
		conn := fmt.Sprintf("host=%s port=%d user=%s password=%s connect_timeout=3 dbname=postgres",
			host+"."+p.domain(), p.env.Postgres.Port, p.env.Postgres.User, pw)
		out, errOut, err := p.execErr("client", nil, "psql", "-X", "-v", "ON_ERROR_STOP=1", conn, "-Atc", query)
		if err == nil {
			return strings.TrimSpace(out), nil
		}
		last = fmt.Errorf("psql on %s: %v: %s", host, err, strings.TrimSpace(errOut))
		if !strings.Contains(errOut, "password authentication failed") {
			break
		}
	}
	return "", last
}

func (p *pairLab) mustSQL(host, query string) string {
	p.t.Helper()
	out, err := p.sql(host, query)
	if err != nil {
		p.t.Fatalf("%s\n(query: %s)", err, query)
	}
	return out
}

// waitSQL waits until query on host returns want.
func (p *pairLab) waitSQL(host, query, want string, limit time.Duration) {
	p.t.Helper()
	p.eventually(limit, fmt.Sprintf("%q on %s returns %q", query, host, want), func() (bool, string) {
		out, err := p.sql(host, query)
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
func (p *pairLab) sqlAsync(host, query string) <-chan sqlResult {
	ch := make(chan sqlResult, 1)
	start := time.Now()
	go func() {
		out, err := p.sql(host, query)
		ch <- sqlResult{out, err, time.Since(start)}
	}()
	return ch
}

// waitingOnSyncRep reports whether a has a backend running a query that
// starts with prefix and waits for synchronous replication.
func (p *pairLab) waitingOnSyncRep(prefix string) (bool, string) {
	out, err := p.sql("a", fmt.Sprintf(`select count(*) from pg_stat_activity where wait_event = 'SyncRep' and query like '%s%%'`, prefix))
	if err != nil {
		return false, err.Error()
	}
	return out == "1", "backends waiting on SyncRep: " + out
}

// configure sets tandemd settings (dotted paths) in node's config file.
func (p *pairLab) configure(node string, settings map[string]string) {
	p.t.Helper()
	path := filepath.Join(p.nodeDir(node), "tandemd.yaml")
	b, err := os.ReadFile(path)
	if err != nil {
		p.t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		p.t.Fatalf("%s: %v", path, err)
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
		p.t.Fatal(err)
	}
	out = append([]byte("# rewritten by the e2e test "+p.t.Name()+"\n"), out...)
	if err := os.WriteFile(path, out, 0o644); err != nil {
		p.t.Fatal(err)
	}
	p.t.Logf("node %s: set %v in %s", node, settings, path)
}

func (p *pairLab) tandemdPid(node string) int {
	p.t.Helper()
	b, err := os.ReadFile(filepath.Join(p.nodeDir(node), "tandemd.pid"))
	if err != nil {
		p.t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid < 2 {
		p.t.Fatalf("tandemd.pid of %s: %q", node, b)
	}
	return pid
}

// running reports whether pid is a live process (a zombie counts as gone).
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

// processesIn lists the pids in node's namespace whose command line
// contains match.
func (p *pairLab) processesIn(node, match string) []int {
	p.t.Helper()
	out, err := exec.Command("ip", "netns", "pids", p.netns(node)).Output()
	if err != nil {
		p.t.Fatalf("ip netns pids %s: %v", p.netns(node), err)
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

// signalTandemd sends SIGTERM to node's tandemd and returns its pid.
func (p *pairLab) signalTandemd(node string) int {
	p.t.Helper()
	pid := p.tandemdPid(node)
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		p.t.Fatalf("SIGTERM to tandemd of %s (pid %d): %v", node, pid, err)
	}
	return pid
}

// waitTandemdGone waits until the tandemd pid and every PostgreSQL process
// of node are gone.
func (p *pairLab) waitTandemdGone(node string, pid int) {
	p.t.Helper()
	p.eventually(60*time.Second, "tandemd and PostgreSQL on "+node+" stop", func() (bool, string) {
		pg := p.processesIn(node, "postgres")
		return !pidLive(pid) && len(pg) == 0, fmt.Sprintf("tandemd running %v, PostgreSQL processes %v", pidLive(pid), pg)
	})
}

// stopTandemd stops node's tandemd with SIGTERM (it stops PostgreSQL
// cleanly) and waits until both are gone: the node is away.
func (p *pairLab) stopTandemd(node string) {
	p.t.Helper()
	start := time.Now()
	p.waitTandemdGone(node, p.signalTandemd(node))
	p.t.Logf("node %s: tandemd and PostgreSQL stopped in %s", node, time.Since(start).Round(10*time.Millisecond))
}

// startTandemd starts node's tandemd again, detached, in its namespace
// with its log appended to tandemd.log and its pid in tandemd.pid (where
// `lab down` finds it), and waits until its API answers with PostgreSQL
// running.
func (p *pairLab) startTandemd(node string) {
	p.t.Helper()
	dir := p.nodeDir(node)
	logf, err := os.OpenFile(filepath.Join(dir, "tandemd.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		p.t.Fatal(err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "\n=== %s: the e2e test %s starts tandemd again\n", time.Now().Format(time.RFC3339Nano), p.t.Name())
	cmd := exec.Command("ip", "netns", "exec", p.netns(node), filepath.Join(p.bin, "tandemd"), "--config", filepath.Join(dir, "tandemd.yaml"))
	cmd.Env = cleanEnv()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("starting tandemd on %s: %v", node, err)
	}
	go cmd.Wait() // reap it whenever it ends (lab down stops it)
	if err := os.WriteFile(filepath.Join(dir, "tandemd.pid"), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		p.t.Fatal(err)
	}
	start := time.Now()
	p.eventually(90*time.Second, "tandemd on "+node+" answers with PostgreSQL running", func() (bool, string) {
		if !pidLive(cmd.Process.Pid) {
			return false, "tandemd exited; see " + filepath.Join(dir, "tandemd.log")
		}
		n, err := p.nodeStatusErr(node)
		if err != nil {
			return false, err.Error()
		}
		return n.Reachable && n.Postgres.State == "running", fmt.Sprintf("role %s, PostgreSQL %s", n.Role, n.Postgres.State)
	})
	p.t.Logf("node %s: tandemd (pid %d) up again in %s", node, cmd.Process.Pid, time.Since(start).Round(10*time.Millisecond))
}

// pauseWALReceiver freezes b's WAL receiver (SIGSTOP) and returns a
// function that lets it go on; a cleanup lets it go on in any case.
func (p *pairLab) pauseWALReceiver() (resume func()) {
	p.t.Helper()
	pids := p.processesIn("b", "postgres: walreceiver")
	if len(pids) != 1 {
		p.t.Fatalf("want one WAL receiver on b, found %v", pids)
	}
	pid := pids[0]
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		p.t.Fatalf("SIGSTOP to the WAL receiver %d: %v", pid, err)
	}
	var once sync.Once
	resume = func() { once.Do(func() { _ = syscall.Kill(pid, syscall.SIGCONT) }) }
	p.t.Cleanup(resume)
	return resume
}

// clusterIPOn reports whether node's namespace holds the cluster IP.
func (p *pairLab) clusterIPOn(node string) bool {
	p.t.Helper()
	out, err := exec.Command("ip", "-n", p.netns(node), "-o", "addr", "show").Output()
	if err != nil {
		p.t.Fatalf("ip -n %s addr: %v", p.netns(node), err)
	}
	return strings.Contains(string(out), " "+p.env.ClusterIP+"/")
}

// noOldDataOn checks that node kept no moved-aside data directory: the
// old data goes once the clone streams.
func (p *pairLab) noOldDataOn(t *testing.T, node string) {
	t.Helper()
	if m, _ := filepath.Glob(filepath.Join(p.nodeDir(node), "pgdata.tandem-old-*")); len(m) > 0 {
		t.Errorf("%s kept old data directories after the clone streamed: %v", node, m)
	}
}

// noReplicationLeftOn checks that node holds nothing of a cluster in
// PostgreSQL: no slot, no replication role, no pg_hba replication entry.
func (p *pairLab) noReplicationLeftOn(t *testing.T, node string) {
	t.Helper()
	for q, want := range map[string]string{
		`select count(*) from pg_replication_slots`:                                                    "0",
		`select count(*) from pg_roles where rolname = 'tandem_replication'`:                           "0",
		`select count(*) from pg_hba_file_rules where 'tandem_replication' = any(user_name)`:           "0",
		`select count(*) from pg_hba_file_rules where 'replication' = any(database) and type = 'host'`: "0",
	} {
		if got, err := p.sql(node, q); err != nil || got != want {
			t.Errorf("on %s, %s = %q (%v), want %s", node, q, got, err, want)
		}
	}
}
