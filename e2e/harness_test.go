//go:build e2e

package e2e

// The end-to-end fixture: the binaries the tests drive, the one lab type
// (testLab) every test brings up, and eventually, the one way they wait.
// The fixture's console, node and network helpers are in
// console_helpers_test.go, node_helpers_test.go and net_helpers_test.go.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// labBase is where the lab keeps its files (lab.BaseDir); repeated here so
// the test checks the product from outside.
const labBase = "/var/lib/tandem-lab"

var bins struct {
	once    sync.Once
	dir     string
	err     error
	cleanup bool
}

func TestMain(m *testing.M) {
	code := m.Run()
	if bins.cleanup {
		os.RemoveAll(bins.dir)
	}
	for _, p := range stamped.paths { // the upgrade tests' other builds
		os.RemoveAll(filepath.Dir(p))
	}
	os.Exit(code)
}

// needRoot skips a test that needs root, and fails it in CI, where root is
// required so the tier cannot be skipped by accident.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("the end-to-end tests need root (network namespaces, tandemd, PostgreSQL) and CI=true: run them as root")
	}
	t.Skip("the end-to-end tests need root (network namespaces, tandemd, PostgreSQL): run `sudo go test -tags e2e ./e2e/`")
}

// binDir returns a directory holding tandem, tandemd, tandem-witness and the test tool
// labprobe: TANDEM_BIN_DIR, or a fresh build of this tree. The build has
// the crashhook tag, which compiles in the crash-injection hook
// (TANDEMD_CRASH_AT) that TestCrashAtEachStep uses; prebuilt binaries in
// TANDEM_BIN_DIR need it too.
func binDir(t *testing.T) string {
	t.Helper()
	bins.once.Do(func() {
		if d := os.Getenv("TANDEM_BIN_DIR"); d != "" {
			bins.dir, bins.err = filepath.Abs(d)
			return
		}
		dir, err := os.MkdirTemp("", "tandem-e2e-bin-")
		if err != nil {
			bins.err = err
			return
		}
		bins.dir, bins.cleanup = dir, true
		goTool, err := exec.LookPath("go")
		if err != nil {
			goTool = "/usr/local/go/bin/go"
		}
		cmd := exec.Command(goTool, "build", "-tags", "crashhook", "-o", dir, "./cmd/tandem", "./cmd/tandemd", "./cmd/tandem-witness", "./e2e/labprobe")
		cmd.Dir = ".." // the module root
		if out, err := cmd.CombinedOutput(); err != nil {
			bins.err = fmt.Errorf("go build -tags crashhook: %v\n%s", err, out)
		}
	})
	if bins.err != nil {
		t.Fatalf("cannot get the binaries: %v", bins.err)
	}
	for _, b := range []string{"tandem", "tandemd", "tandem-witness"} {
		if _, err := os.Stat(filepath.Join(bins.dir, b)); err != nil {
			t.Fatalf("no %s in %s: %v", b, bins.dir, err)
		}
	}
	return bins.dir
}

// eventually looks at check until it reports ok, and returns how long that
// took. When timeout passes first, it fails the test with what it waited
// for and what check observed last (the roles, an excerpt of the status),
// so that a failed run says what the cluster looked like.
//
// It looks again after four times as long as the last look took, between
// 20 ms and 250 ms: a cheap look (an address, a neighbour entry, a file)
// is timed to tens of milliseconds, and a console call is not made more
// than about four times a second.
func eventually(t testing.TB, what string, timeout time.Duration, check func() (ok bool, observed string)) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	for looks := 1; ; looks++ {
		began := time.Now()
		ok, observed := check()
		if ok {
			return time.Since(start)
		}
		if !time.Now().Before(deadline) {
			if observed == "" {
				observed = "(nothing)"
			}
			t.Fatalf("%s: not within %s (%d looks); last observed: %s", what, timeout, looks, observed)
		}
		pause := min(max(4*time.Since(began), 20*time.Millisecond), 250*time.Millisecond)
		time.Sleep(min(pause, time.Until(deadline)))
	}
}

// uniqueName is a lab name no other run is using: "e" and 5 random characters.
func uniqueName(t *testing.T) string {
	t.Helper()
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 5)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return "e" + string(b)
}

// testLab is the lab of one test, and everything the test does with it:
// `tandem lab` commands, the console on the client host (with a cache of
// the test's own, so that later commands know the cluster the test made),
// the nodes' tandemd, their power, PostgreSQL and the cluster IP. upLab
// and upCluster make one; its cleanup prints the logs of a failed test,
// brings the lab down and fails the test if anything of it is left.
type testLab struct {
	t     *testing.T
	name  string
	bin   string // tandem, tandemd and labprobe
	env   labEnv // `tandem lab env --json` once the lab was up (readEnv reads it anew)
	cache string // TANDEM_CACHE_DIR of every console call on the client
	down  *bool  // shared with the copies sub makes
	// private: directories a node's tandemd sees as its own (node → the
	// node's source dir → the path both nodes use): the lab's nodes share
	// this machine's file system, and a test of what one node writes for
	// the other needs the same path to be two places (startTandemd).
	private map[string][2]string
}

// upLab brings up a lab whose nodes run tandemd but form no cluster yet
// (`tandem lab up --no-assemble`), with more flags of `lab up` (--ipv6,
// --no-tandemd).
func upLab(t *testing.T, flags ...string) *testLab {
	t.Helper()
	return upLabFlags(t, append([]string{"--no-assemble"}, flags...)...)
}

// upWitnessLab brings up a lab for automatic failover (`tandem lab up
// --failover automatic`): host w runs tandem-witness beside the nodes.
// Without --no-assemble among flags, `lab up` also assembles the cluster
// with w as its witness.
func upWitnessLab(t *testing.T, flags ...string) *testLab {
	t.Helper()
	l := upLabFlags(t, append([]string{"--failover", "automatic"}, flags...)...)
	if l.env.Failover != "automatic" || l.env.Witness == nil {
		t.Fatalf("lab up --failover automatic: lab env says failover %q, witness %+v", l.env.Failover, l.env.Witness)
	}
	return l
}

// upLabFlags runs `tandem lab up --name <unique>` with exactly flags
// (without --no-assemble, `lab up` assembles the cluster itself) and
// registers the teardown: on failure the logs are printed first, then
// `lab down` runs and the test checks that nothing of the lab is left.
func upLabFlags(t *testing.T, flags ...string) *testLab {
	t.Helper()
	l := &testLab{t: t, name: uniqueName(t), bin: binDir(t), cache: t.TempDir(), down: new(bool)}
	// 0700, as the console wants its directory (t.TempDir is 0755, which
	// the console would tighten with a warning on stderr).
	if err := os.Chmod(l.cache, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			l.dumpLogs()
		}
		if !*l.down {
			l.Down()
		}
	})
	start := time.Now()
	out, errOut, err := l.tandem(nil, 3*time.Minute, append([]string{"lab", "up", "--name", l.name}, flags...)...)
	if err != nil {
		t.Fatalf("lab up --name %s %s: %v\nstdout:\n%s\nstderr:\n%s", l.name, strings.Join(flags, " "), err, out, errOut)
	}
	t.Logf("lab %s up in %s:\n%s", l.name, time.Since(start).Round(100*time.Millisecond), out)
	l.env = l.readEnv()
	return l
}

// clusterOpts says how upCluster sets a cluster up.
type clusterOpts struct {
	// failover "automatic" builds the lab with the witness host w (`lab up
	// --failover automatic`) and assembles with --failover automatic
	// --witness w.<domain>; "automatic-etcd" builds it with the external
	// etcd on e1-e3 instead (--etcd-external) and assembles with --etcd;
	// "" is manual, without either.
	failover string
	// mode is the replication mode given to assemble ("" = its default, sync).
	mode string
	// settings are tandemd settings by node and dotted path
	// (replication.sync_grace: 5s), written to the node's config and
	// applied by restarting its tandemd before the assembly.
	settings map[string]map[string]any
	// env is more environment for a node's tandemd (TANDEMD_* settings,
	// the crash hook), given by restarting it before the assembly.
	env map[string][]string
	// prepare runs on the lab before the assembly, after settings and env.
	prepare func(l *testLab)
	// synchronized makes upCluster wait, after the assembly, until the
	// console shows the cluster synchronized (in async mode: the secondary
	// streaming) within 30 s; otherwise it waits until a sees b streaming,
	// within a minute.
	synchronized bool
}

// upCluster brings up a lab, checks that its nodes form no cluster yet,
// applies o, and assembles a (primary) and b (secondary) with the console
// on the client.
func upCluster(t *testing.T, o clusterOpts) *testLab {
	t.Helper()
	var l *testLab
	switch o.failover {
	case "":
		l = upLab(t)
	case "automatic":
		l = upWitnessLab(t, "--no-assemble")
	case "automatic-etcd":
		l = upLabFlags(t, "--failover", "automatic", "--etcd-external", "--no-assemble")
		if l.env.Etcd == nil || len(l.env.Etcd.Endpoints) != 3 || l.env.Witness != nil {
			t.Fatalf("lab up --etcd-external: lab env says etcd %+v, witness %+v; want three endpoints and no witness", l.env.Etcd, l.env.Witness)
		}
	default:
		t.Fatalf("clusterOpts.failover %q: want \"\", automatic or automatic-etcd", o.failover)
	}
	if len(l.env.Nodes) != 2 || l.env.Nodes[0].Name != "a" || l.env.Nodes[1].Name != "b" || l.env.Postgres.Password == "" {
		t.Fatalf("lab env: want nodes a and b and a PostgreSQL password, got %+v", l.env)
	}
	for _, n := range []string{"a", "b"} {
		if r := l.role(n); r != "none" {
			t.Fatalf("after lab up --no-assemble node %s has role %q, want none", n, r)
		}
	}
	for _, n := range []string{"a", "b"} {
		_, set := o.settings[n]
		env, extra := o.env[n]
		if !set && !extra {
			continue
		}
		if set {
			l.configure(n, o.settings[n])
		}
		l.restartTandemd(n, env...)
		l.waitReady(n, 60*time.Second)
	}
	if o.prepare != nil {
		o.prepare(l)
	}
	l.assemble(o.mode)
	if !o.synchronized {
		l.waitStreaming("after assembly", time.Minute)
		return l
	}
	l.waitStatus("the cluster synchronized after assembly", 30*time.Second, func(s labStatus) bool {
		return s.Cluster != nil && (s.Cluster.Synchronized || o.mode == "async" && s.streaming())
	})
	return l
}

// sub is l for a subtest: failures go to t.
func (l *testLab) sub(t *testing.T) *testLab {
	c := *l
	c.t = t
	return &c
}

// tandem runs the tandem console on this machine (not in the lab) with
// extra environment and a time limit.
func (l *testLab) tandem(env []string, timeout time.Duration, args ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(l.bin, "tandem"), args...)
	cmd.Env = append(cleanEnv(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// cleanEnv is this process's environment without variables that would
// redirect the console or the lab.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "TANDEM_LAB", "TANDEM_TOKEN", "TANDEM_ENDPOINT", "TANDEM_CACHE_DIR", "XDG_CACHE_HOME":
			continue
		}
		out = append(out, kv)
	}
	return out
}

// exec runs argv on a lab host and returns its stdout; it fails the test
// when the command fails.
func (l *testLab) exec(host string, env []string, argv ...string) string {
	l.t.Helper()
	out, errOut, err := l.execErr(host, env, argv...)
	if err != nil {
		l.t.Fatalf("lab exec %s -- %s: %v\nstdout:\n%s\nstderr:\n%s", host, strings.Join(argv, " "), err, out, errOut)
	}
	return out
}

// execErr runs argv on a lab host with `tandem lab exec`, within a minute.
func (l *testLab) execErr(host string, env []string, argv ...string) (string, string, error) {
	args := append([]string{"lab", "exec", "--name", l.name, host, "--"}, argv...)
	return l.tandem(env, time.Minute, args...)
}

// labEnv is the part of `tandem lab env --json` the tests read.
type labEnv struct {
	Family        string   `json:"family"`
	ClusterIP     string   `json:"cluster_ip"`
	ClusterPrefix string   `json:"cluster_prefix"`
	DNSName       string   `json:"dns_name"`
	DNSServer     string   `json:"dns_server"`
	ClientIP      string   `json:"client_ip"`
	Domain        string   `json:"domain"`
	Failover      string   `json:"failover"`
	Faults        []string `json:"faults"`
	// Witness is host w, in a lab built with --failover automatic only.
	Witness *struct {
		Name       string `json:"name"`
		IP         string `json:"ip"`
		FQDN       string `json:"fqdn"`
		API        string `json:"api"`
		Token      string `json:"token"`
		PeerPort   int    `json:"peer_port"`
		ClientPort int    `json:"client_port"`
	} `json:"witness"`
	// Etcd is the external etcd, in a lab built with --etcd-external only.
	Etcd *struct {
		Endpoints []string `json:"endpoints"`
	} `json:"etcd"`
	// CrossSubnet, Router, Segments and DNSUpdate are set in a lab built
	// with --cross-subnet only.
	CrossSubnet bool   `json:"cross_subnet"`
	Router      string `json:"router"`
	Segments    []struct {
		Name    string `json:"name"`
		Subnet  string `json:"subnet"`
		Gateway string `json:"gateway"`
	} `json:"segments"`
	DNSUpdate *struct {
		Software  string            `json:"software"`
		Server    string            `json:"server"`
		Zone      string            `json:"zone"`
		KeyName   string            `json:"key_name"`
		Algorithm string            `json:"algorithm"`
		KeyFiles  map[string]string `json:"key_files"`
		Config    string            `json:"config"` // named.conf
	} `json:"dns_update"`
	Hosts []labHost `json:"hosts"`
	Nodes []struct {
		Name             string `json:"name"`
		IP               string `json:"ip"`
		API              string `json:"api"`
		Token            string `json:"token"`
		PostgresPassword string `json:"postgres_password"`
	} `json:"nodes"`
	Postgres struct {
		Port     int    `json:"port"`
		User     string `json:"user"`
		Password string `json:"password"`
	} `json:"postgres"`
}

// labHost is one of `lab env --json`'s hosts; Subnet and Gateway are set
// in a cross-subnet lab only.
type labHost struct {
	Name    string `json:"name"`
	IP      string `json:"ip"`
	Netns   string `json:"netns"`
	MAC     string `json:"mac"`
	Subnet  string `json:"subnet"`
	Gateway string `json:"gateway"`
}

// readEnv is `tandem lab env --json` now (faults in force included).
func (l *testLab) readEnv() labEnv {
	l.t.Helper()
	out, errOut, err := l.tandem(nil, 30*time.Second, "lab", "env", "--name", l.name, "--json")
	if err != nil {
		l.t.Fatalf("lab env --json: %v\n%s", err, errOut)
	}
	var e labEnv
	if err := json.Unmarshal([]byte(out), &e); err != nil {
		l.t.Fatalf("lab env --json printed no JSON: %v\n%s", err, out)
	}
	return e
}

// fqdn is a lab host's name in the lab's domain.
func (l *testLab) fqdn(host string) string { return host + "." + l.env.Domain }

// Down runs `tandem lab down` and checks that nothing of the lab is left.
func (l *testLab) Down() {
	l.t.Helper()
	*l.down = true
	out, errOut, err := l.tandem(nil, 3*time.Minute, "lab", "down", "--name", l.name)
	if err != nil {
		l.t.Errorf("lab down --name %s: %v\nstdout:\n%s\nstderr:\n%s", l.name, err, out, errOut)
	}
	for _, left := range leftovers(l.name) {
		l.t.Errorf("lab %s left behind: %s", l.name, left)
	}
}

// leftovers lists everything of lab name still on the machine.
func leftovers(name string) []string {
	var out []string
	prefix := name + "-"
	if res, err := exec.Command("ip", "netns", "list").Output(); err == nil {
		for _, line := range strings.Split(string(res), "\n") {
			if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], prefix) {
				out = append(out, "namespace "+f[0])
			}
		}
	} else {
		out = append(out, "ip netns list failed: "+err.Error())
	}
	if m, _ := filepath.Glob("/etc/netns/" + prefix + "*"); len(m) > 0 {
		out = append(out, "files "+strings.Join(m, " "))
	}
	if m, _ := filepath.Glob("/run/netns/" + prefix + "*"); len(m) > 0 {
		out = append(out, "namespace files "+strings.Join(m, " "))
	}
	dir := filepath.Join(labBase, name)
	if _, err := os.Stat(dir); err == nil {
		out = append(out, "directory "+dir)
	}
	if f, err := os.Open("/proc/mounts"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if fields := strings.Fields(sc.Text()); len(fields) > 1 && strings.HasPrefix(fields[1], "/run/netns/"+prefix) {
				out = append(out, "mount "+fields[1])
			}
		}
		f.Close()
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		cmd := string(bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
		if strings.Contains(cmd, dir+"/") {
			out = append(out, fmt.Sprintf("process %s: %s", filepath.Base(filepath.Dir(p)), cmd))
		}
	}
	return out
}

// dumpLogs prints the lab's logs into the test output, for whoever reads a
// failed run.
func (l *testLab) dumpLogs() {
	dir := filepath.Join(labBase, l.name)
	for _, f := range []string{"a/tandemd.log", "b/tandemd.log", "w/tandemd.log", "w/tandemd.yaml", "dnsmasq.log", "dnsmasq.stderr", "layout.json", "faults.json", "dnsmasq.conf", "named/named.log", "named/named.conf"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			l.t.Logf("=== %s: %v", f, err)
			continue
		}
		if len(b) > 64*1024 {
			b = b[len(b)-64*1024:]
		}
		l.t.Logf("=== %s/%s\n%s", dir, f, b)
	}
}

// rootNetwork is a fingerprint of the root namespace's links and
// addresses; the lab must not change it.
func rootNetwork(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, args := range [][]string{{"-o", "link", "show"}, {"-o", "addr", "show"}} {
		res, err := exec.Command("ip", args...).Output()
		if err != nil {
			t.Fatalf("ip %v: %v", args, err)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(res)), "\n") {
			f := strings.Fields(line)
			switch {
			case args[1] == "link" && len(f) > 1:
				out = append(out, "link "+strings.TrimSuffix(f[1], ":"))
			case args[1] == "addr" && len(f) > 3:
				out = append(out, "addr "+f[1]+" "+f[3])
			}
		}
	}
	sort.Strings(out)
	return out
}

func checkRootNetworkUnchanged(t *testing.T, before []string) {
	t.Helper()
	if after := rootNetwork(t); !slices.Equal(before, after) {
		t.Errorf("the root namespace changed:\nbefore %v\nafter  %v", before, after)
	}
}

// resolve runs getent hosts on a lab host: the first address and the
// canonical name, or ok=false when the name does not resolve.
func (l *testLab) resolve(host, what string) (ip, name string, ok bool) {
	out, _, err := l.execErr(host, nil, "getent", "hosts", what)
	if err != nil {
		return "", "", false
	}
	f := strings.Fields(out)
	if len(f) < 2 {
		return "", "", false
	}
	return f[0], f[1], true
}
