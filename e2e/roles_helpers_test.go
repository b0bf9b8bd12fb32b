//go:build e2e

package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tandem-ha/tandem/internal/console"
)

// cluster is an assembled lab with a console on the client that knows it.
type cluster struct {
	*testLab
	e     labEnv
	cache string // the client's console cache dir
}

// assembledLab brings a lab up and makes sure it is assembled (by `lab
// up` itself, or else through the console from the client).
// extraEnv restarts those nodes' tandemd with more environment (TANDEMD_*
// settings) before the assembly.
func assembledLab(t *testing.T, mode string, extraEnv map[string][]string) *cluster {
	t.Helper()
	return assembledLabWith(t, mode, func(c *cluster) {
		for node, env := range extraEnv {
			c.restartTandemd(node, env)
			c.waitFor(node+" runs PostgreSQL after its restart", 60*time.Second, func() bool { return c.node(node).Postgres.State == "running" })
		}
	})
}

// assembledLabWith runs prepare on the unassembled lab, then assembles.
func assembledLabWith(t *testing.T, mode string, prepare func(*cluster)) *cluster {
	t.Helper()
	l := upLab(t)
	c := &cluster{testLab: l, e: l.env(), cache: t.TempDir()}
	prepare(c)
	if c.nodeRole("a") == "none" {
		args := []string{filepath.Join(l.bin, "tandem"), "assemble", "--yes", "--trust-new",
			"--primary", "a." + c.e.Domain, "--secondary", "b." + c.e.Domain,
			"--cluster-ip", c.e.ClusterIP + "/24", "--dns-name", c.e.DNSName}
		if mode != "" {
			args = append(args, "--replication", mode)
		}
		env := append(c.consoleEnv(), "TANDEM_PRIMARY_TOKEN="+c.token("a"), "TANDEM_SECONDARY_TOKEN="+c.token("b"))
		out, errOut, err := l.execErr("client", env, args...)
		if err != nil {
			t.Fatalf("assemble: %v\n%s\n%s", err, out, errOut)
		}
	}
	c.waitFor("both nodes streaming", 30*time.Second, func() bool {
		s := c.status()
		return s.Cluster != nil && s.Cluster.Synchronized || (mode == "async" && s.Cluster != nil && c.streaming(s))
	})
	return c
}

func (c *cluster) streaming(s console.StatusOutput) bool {
	for _, n := range s.Nodes {
		if n.Role == "primary" && n.Replication != nil && n.Replication.State == "streaming" {
			return true
		}
	}
	return false
}

func (c *cluster) token(node string) string {
	for _, n := range c.e.Nodes {
		if n.Name == node {
			return n.Token
		}
	}
	c.t.Fatalf("no node %s in lab env", node)
	return ""
}

func (c *cluster) consoleEnv() []string {
	return []string{"TANDEM_CACHE_DIR=" + c.cache}
}

// console runs the console on the client host.
func (c *cluster) console(args ...string) (string, string, error) {
	return c.execErr("client", c.consoleEnv(), append([]string{filepath.Join(c.bin, "tandem")}, args...)...)
}

func (c *cluster) status() console.StatusOutput {
	c.t.Helper()
	out, errOut, err := c.console("status", "-o", "json")
	var s console.StatusOutput
	if jerr := json.Unmarshal([]byte(out), &s); jerr != nil {
		c.t.Fatalf("status -o json: %v / %v\n%s\n%s", err, jerr, out, errOut)
	}
	return s
}

// nodeRole asks one node directly (no cluster needed in the cache).
func (c *cluster) nodeRole(node string) string {
	c.t.Helper()
	n := c.node(node)
	if !n.Reachable {
		return "unreachable"
	}
	return n.Role
}

// node asks one node directly for its status.
func (c *cluster) node(node string) console.NodeStatus {
	c.t.Helper()
	out, errOut, err := c.execErr("client", append(c.consoleEnv(), "TANDEM_TOKEN="+c.token(node)),
		filepath.Join(c.bin, "tandem"), "status", "--trust-new", "--endpoint", node+"."+c.e.Domain, "-o", "json")
	var s console.StatusOutput
	if jerr := json.Unmarshal([]byte(out), &s); jerr != nil || len(s.Nodes) == 0 {
		c.t.Fatalf("status --endpoint %s: %v %v\n%s\n%s", node, err, jerr, out, errOut)
	}
	for _, n := range s.Nodes {
		if n.Name == node && n.Reachable {
			return n
		}
	}
	return console.NodeStatus{}
}

// roles maps node → role as the console sees them now.
func (c *cluster) roles() map[string]string {
	out := map[string]string{}
	for _, n := range c.status().Nodes {
		out[n.Name] = n.Role
		if !n.Reachable {
			out[n.Name] = "unreachable"
		}
	}
	return out
}

func (c *cluster) waitFor(what string, limit time.Duration, ok func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if ok() {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	c.t.Fatalf("timed out after %s waiting for: %s", limit, what)
}

// psql runs SQL through the cluster DNS name (or a node's name).
func (c *cluster) psql(host, sql string) (string, error) {
	out, errOut, err := c.execErr("client", nil, "psql",
		fmt.Sprintf("host=%s user=postgres password=%s connect_timeout=3", host, c.e.Postgres.Password), "-Atc", sql)
	if err != nil {
		return out, fmt.Errorf("%v: %s", err, errOut)
	}
	return strings.TrimSpace(out), nil
}

func (c *cluster) nodeDir(node string) string { return filepath.Join(labBase, c.name, node) }

// tandemdPid reads the pid the lab (or restartTandemd) recorded.
func (c *cluster) tandemdPid(node string) int {
	b, err := os.ReadFile(filepath.Join(c.nodeDir(node), "tandemd.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// stopTandemd sends sig to the node's tandemd and waits for it to go.
func (c *cluster) stopTandemd(node string, sig syscall.Signal) {
	c.t.Helper()
	pid := c.tandemdPid(node)
	if pid == 0 {
		return
	}
	_ = syscall.Kill(pid, sig)
	c.waitFor("tandemd on "+node+" to exit", 60*time.Second, func() bool {
		return syscall.Kill(pid, 0) != nil || isZombie(pid)
	})
}

func isZombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] == 'Z'
}

// startTandemd starts the node's tandemd in its namespace, detached, with
// extra environment (TANDEMD_CRASH_AT…), appending to its log.
func (c *cluster) startTandemd(node string, env []string) {
	c.t.Helper()
	logf, err := os.OpenFile(filepath.Join(c.nodeDir(node), "tandemd.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		c.t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command("ip", "netns", "exec", c.name+"-"+node, filepath.Join(c.bin, "tandemd"), "--config", filepath.Join(c.nodeDir(node), "tandemd.yaml"))
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.nodeDir(node), "tandemd.pid"), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		c.t.Fatal(err)
	}
	go func() { _ = cmd.Wait() }()
}

func (c *cluster) restartTandemd(node string, env []string) {
	c.stopTandemd(node, syscall.SIGTERM)
	c.startTandemd(node, env)
}

// powerOff cuts a node's power: every process in its namespace killed at
// once and its link down, so its addresses vanish from the wire.
func (c *cluster) powerOff(node string) {
	c.t.Helper()
	out, _ := exec.Command("ip", "netns", "pids", c.name+"-"+node).Output()
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if out, err := exec.Command("ip", "-n", c.name+"-"+node, "link", "set", "eth0", "down").CombinedOutput(); err != nil {
		c.t.Fatalf("link down: %v %s", err, out)
	}
}

// powerOn brings the link back and starts tandemd, as a reboot would.
func (c *cluster) powerOn(node string, env []string) {
	c.t.Helper()
	// Addresses added at run time do not survive a reboot.
	_ = exec.Command("ip", "-n", c.name+"-"+node, "addr", "del", c.e.ClusterIP+"/24", "dev", "eth0").Run()
	if out, err := exec.Command("ip", "-n", c.name+"-"+node, "link", "set", "eth0", "up").CombinedOutput(); err != nil {
		c.t.Fatalf("link up: %v %s", err, out)
	}
	c.startTandemd(node, env)
}

// holdsClusterIP says whether node has the cluster IP on its interface.
func (c *cluster) holdsClusterIP(node string) bool {
	// Only interfaces that are up: a powered-off node's link is down, so
	// its addresses are not on the wire.
	out, _ := exec.Command("ip", "-n", c.name+"-"+node, "-o", "addr", "show", "up").Output()
	return strings.Contains(string(out), " "+c.e.ClusterIP+"/")
}

// witness runs the writer and the sampler on the client while a test
// injects faults, and the cluster IP sampler here.
type witness struct {
	c               *cluster
	dir             string
	writer, sampler *exec.Cmd
	vipStop         chan struct{}
	vipDone         chan struct{}
	vipSamples      [][]string
}

func (c *cluster) startWitness() *witness {
	c.t.Helper()
	w := &witness{c: c, dir: c.t.TempDir(), vipStop: make(chan struct{}), vipDone: make(chan struct{})}
	probe := filepath.Join(c.bin, "labprobe")
	dsn := fmt.Sprintf("host=%s user=postgres password=%s dbname=postgres connect_timeout=1", c.e.DNSName, c.e.Postgres.Password)
	// Ids unique across witnesses in one lab (the benchmark runs several).
	start := strconv.FormatInt(time.Now().UnixMicro(), 10)
	w.writer = c.labCmd("client", probe, "-mode", "write", "-dsn", dsn, "-start", start, "-connect-timeout", "200ms", "-out", filepath.Join(w.dir, "writes.jsonl"))
	var nodes []string
	for _, n := range c.e.Nodes {
		nodes = append(nodes, n.Name+"="+n.IP)
	}
	w.sampler = c.labCmd("client", probe, "-mode", "sample", "-every", "50ms", "-nodes", strings.Join(nodes, ","), "-password", c.e.Postgres.Password, "-out", filepath.Join(w.dir, "samples.jsonl"))
	go func() {
		defer close(w.vipDone)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-w.vipStop:
				return
			case <-t.C:
			}
			var holders []string
			for _, n := range c.e.Nodes {
				if c.holdsClusterIP(n.Name) {
					holders = append(holders, n.Name)
				}
			}
			w.vipSamples = append(w.vipSamples, holders)
		}
	}()
	// Let the writer get going.
	c.waitFor("the writer's first acknowledged write", 20*time.Second, func() bool { return w.acked() > 0 })
	return w
}

func (c *cluster) labCmd(host string, argv ...string) *exec.Cmd {
	c.t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", c.name + "-" + host}, argv...)...)
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	return cmd
}

type probeWrite struct {
	ID      int64  `json:"id"`
	Start   int64  `json:"start"`
	End     int64  `json:"end"`
	Outcome string `json:"outcome"`
	Error   string `json:"error"`
}

func (w *witness) writes() []probeWrite {
	var out []probeWrite
	f, err := os.Open(filepath.Join(w.dir, "writes.jsonl"))
	if err != nil {
		return nil
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var pw probeWrite
		if json.Unmarshal(sc.Bytes(), &pw) == nil {
			out = append(out, pw)
		}
	}
	return out
}

func (w *witness) acked() int {
	n := 0
	for _, pw := range w.writes() {
		if pw.Outcome == "ok" {
			n++
		}
	}
	return n
}

// stop ends the witness and checks the invariants: never two nodes
// accepting writes, never two cluster-IP holders, and (when noLoss) every
// acknowledged write present on the primary afterwards. It returns the
// longest gap between acknowledged writes.
func (w *witness) stop(noLoss bool) time.Duration {
	c := w.c
	c.t.Helper()
	for _, cmd := range []*exec.Cmd{w.writer, w.sampler} {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}
	close(w.vipStop)
	<-w.vipDone

	f, err := os.Open(filepath.Join(w.dir, "samples.jsonl"))
	if err != nil {
		c.t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	samples := 0
	for sc.Scan() {
		var s struct {
			At       int64    `json:"at"`
			Writable []string `json:"writable"`
		}
		if json.Unmarshal(sc.Bytes(), &s) == nil {
			samples++
			if len(s.Writable) > 1 {
				c.t.Errorf("INVARIANT: two nodes accepted writes at %s: %v", time.Unix(0, s.At).Format(time.RFC3339Nano), s.Writable)
			}
		}
	}
	for i, h := range w.vipSamples {
		if len(h) > 1 {
			c.t.Errorf("INVARIANT: two cluster-IP holders at sample %d: %v", i, h)
		}
	}
	if samples == 0 || len(w.vipSamples) == 0 {
		c.t.Errorf("the witness recorded no samples")
	}

	ws := w.writes()
	var ok []int64
	var gaps []time.Duration
	var last int64
	for _, pw := range ws {
		if pw.Outcome != "ok" {
			continue
		}
		ok = append(ok, pw.ID)
		if last != 0 {
			gaps = append(gaps, time.Duration(pw.End-last))
		}
		last = pw.End
	}
	if len(ok) == 0 {
		c.t.Fatalf("no acknowledged writes")
	}
	if noLoss {
		var have string
		c.waitFor("the primary to answer through the cluster name", 30*time.Second, func() bool {
			var err error
			have, err = c.psql(c.e.DNSName, "SELECT string_agg(id::text, ',') FROM probe_writes")
			return err == nil
		})
		present := map[int64]bool{}
		for _, f := range strings.Split(have, ",") {
			if id, err := strconv.ParseInt(f, 10, 64); err == nil {
				present[id] = true
			}
		}
		missing := 0
		for _, id := range ok {
			if !present[id] {
				missing++
				if missing <= 10 {
					c.t.Errorf("INVARIANT: acknowledged write %d is missing", id)
				}
			}
		}
		if missing > 0 {
			c.t.Errorf("INVARIANT: %d of %d acknowledged writes missing", missing, len(ok))
		}
	}
	// What the failed writes met, and when the longest gap was: a reader
	// of a slow run starts here.
	errs := map[string]int{}
	var gapStart, gapEnd int64
	last = 0
	for _, pw := range ws {
		if pw.Outcome != "ok" {
			msg := pw.Error
			if len(msg) > 90 {
				msg = msg[:90]
			}
			errs[pw.Outcome+": "+msg]++
			continue
		}
		if last != 0 && pw.End-last > gapEnd-gapStart {
			gapStart, gapEnd = last, pw.End
		}
		last = pw.End
	}
	for msg, n := range errs {
		c.t.Logf("witness: %d× %s", n, msg)
	}
	if gapEnd > 0 {
		c.t.Logf("witness: longest gap from %s to %s", time.Unix(0, gapStart).Format("15:04:05.000"), time.Unix(0, gapEnd).Format("15:04:05.000"))
	}
	sort.Slice(gaps, func(i, j int) bool { return gaps[i] > gaps[j] })
	var maxGap time.Duration
	if len(gaps) > 0 {
		maxGap = gaps[0]
	}
	c.t.Logf("witness: %d writes (%d acknowledged), %d samples, longest gap between acknowledged writes %s", len(ws), len(ok), samples, maxGap)
	return maxGap
}

// labCmdOut starts argv on a lab host with its output to w.
func (c *cluster) labCmdOut(host string, w *os.File, argv ...string) *exec.Cmd {
	c.t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", c.name + "-" + host}, argv...)...)
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	return cmd
}
