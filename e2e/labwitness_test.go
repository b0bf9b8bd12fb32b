//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tandem-ha/tandem/internal/api"
)

// TestLabWitness brings up a lab for automatic failover (`lab up
// --failover automatic --no-assemble`) and checks host w as a user of the
// lab relies on it: w resolves forward and reverse from the client, the
// witness's program (tandem-witness) answers /health with the certificate
// in its state dir and runs no PostgreSQL, and the fault tools work on it
// (power-off and power-on, partition and heal with a node, pause and
// resume). `lab down` (the fixture's cleanup) must leave nothing of w
// behind.
func TestLabWitness(t *testing.T) {
	needRoot(t)
	before := rootNetwork(t)
	l := upWitnessLab(t, "--no-assemble")
	checkRootNetworkUnchanged(t, before)
	e := l.env
	w := e.Witness
	if w.Name != "w" || w.FQDN != "w."+e.Domain || w.API != "https://"+net.JoinHostPort(w.IP, "7400") || w.Token == "" ||
		w.PeerPort != 7410 || w.ClientPort != 7411 {
		t.Fatalf("lab env witness: %+v", *w)
	}
	if len(e.Nodes) != 2 || slices.IndexFunc(e.Hosts, func(h labHost) bool {
		return h.Name == "w" && h.IP == w.IP && h.Netns == l.netnsOf("w")
	}) < 0 {
		t.Fatalf("lab env: nodes %+v hosts %+v", e.Nodes, e.Hosts)
	}
	wAPI := net.JoinHostPort(w.IP, "7400")
	aAPI := net.JoinHostPort(e.nodeIP("a"), "7400")
	bAPI := net.JoinHostPort(e.nodeIP("b"), "7400")
	const quick = 2 * time.Second
	mustReach := func(t *testing.T, from, addr string) {
		t.Helper()
		if err := l.reaches(from, addr, quick); err != nil {
			t.Errorf("%s cannot reach %s: %v", from, addr, err)
		}
	}
	mustNotReach := func(t *testing.T, from, addr string) {
		t.Helper()
		if err := l.reaches(from, addr, quick); err == nil {
			t.Errorf("%s still reaches %s", from, addr)
		}
	}
	faults := func() []string { return l.readEnv().Faults }

	t.Run("dns", func(t *testing.T) {
		for _, q := range []string{w.FQDN, "w"} {
			ip, name, ok := l.resolve("client", q)
			if !ok || ip != w.IP || name != w.FQDN {
				t.Errorf("client: getent hosts %s = %q %q (ok %v), want %s %s", q, ip, name, ok, w.IP, w.FQDN)
			}
		}
		if ip, name, ok := l.resolve("client", w.IP); !ok || name != w.FQDN {
			t.Errorf("client: getent hosts %s (reverse) = %q %q (ok %v), want %s", w.IP, ip, name, ok, w.FQDN)
		}
		// The nodes find w by name (they will reach its etcd member so), and
		// w uses the lab's DNS like every host (`lab exec w` works).
		if ip, _, ok := l.resolve("a", "w"); !ok || ip != w.IP {
			t.Errorf("a: getent hosts w = %q (ok %v), want %s", ip, ok, w.IP)
		}
		if ip, _, ok := l.resolve("w", "a"); !ok || ip != e.nodeIP("a") {
			t.Errorf("w: getent hosts a = %q (ok %v), want %s", ip, ok, e.nodeIP("a"))
		}
	})

	t.Run("health", func(t *testing.T) {
		if err := l.witnessHealth(quick); err != nil {
			t.Errorf("GET /health on w from the client: %v", err)
		}
		// The witness's own program (the lab takes it from beside tandemd,
		// as the package installs it), not tandemd, and no PostgreSQL.
		if progs := l.programsOn("w"); !slices.Contains(progs, "tandem-witness") || slices.Contains(progs, "tandemd") || slices.Contains(progs, "postgres") {
			t.Errorf("programs on w: %v, want tandem-witness, no tandemd and no postgres", progs)
		}
		if cmd := l.cmdlineOf(l.tandemdPid("w")); !strings.Contains(cmd, "tandem-witness --config") {
			t.Errorf("the witness on w runs as %q, not tandem-witness --config", cmd)
		}
	})

	t.Run("power-off", func(t *testing.T) {
		pid := l.sub(t).tandemdPid("w")
		l.labCommand("power-off", "w")
		if pidLive(pid) {
			t.Errorf("tandem-witness (pid %d) survived the power-off", pid)
		}
		if out, _ := exec.Command("ip", "netns", "pids", l.netnsOf("w")).Output(); len(strings.Fields(string(out))) != 0 {
			t.Errorf("processes left on w after power-off: %s", out)
		}
		if addrs := l.addrsOf("w"); len(addrs) != 0 {
			t.Errorf("w's eth0 still has addresses: %v", addrs)
		}
		mustNotReach(t, "client", wAPI)
		mustNotReach(t, "a", wAPI)
		if err := l.witnessHealth(quick); err == nil {
			t.Error("w answered /health while powered off")
		}
		if f := faults(); !slices.Contains(f, "host w is powered off") {
			t.Errorf("lab env faults %q", f)
		}
		// The nodes are untouched.
		mustReach(t, "client", aAPI)
	})

	t.Run("power-on", func(t *testing.T) {
		start := time.Now()
		out := l.labCommand("power-on", "w")
		t.Logf("w back in %s: %s", time.Since(start).Round(time.Millisecond), strings.TrimSpace(out))
		if err := l.witnessHealth(quick); err != nil {
			t.Errorf("GET /health on w after power-on: %v", err)
		}
		if cmd := l.cmdlineOf(l.sub(t).tandemdPid("w")); !strings.Contains(cmd, "tandem-witness --config") {
			t.Errorf("power-on started %q on w, not tandem-witness", cmd)
		}
		mustReach(t, "a", wAPI)
		if f := faults(); len(f) != 0 {
			t.Errorf("lab env faults after power-on %q", f)
		}
		// Its token survives the reboot: the state dir is its disk.
		if tok := l.readEnv().Witness.Token; tok != w.Token {
			t.Errorf("w's token changed across power-off/on: %q, was %q", tok, w.Token)
		}
	})

	t.Run("partition", func(t *testing.T) {
		l.partition("w", "a")
		mustNotReach(t, "a", wAPI)
		mustNotReach(t, "w", aAPI)
		// Every other path stays.
		mustReach(t, "b", wAPI)
		mustReach(t, "w", bAPI)
		mustReach(t, "client", wAPI)
		mustReach(t, "client", aAPI)
		if f := faults(); !slices.Contains(f, "partition between w and a") {
			t.Errorf("lab env faults %q", f)
		}
		l.heal("w", "a")
		mustReach(t, "a", wAPI)
		mustReach(t, "w", aAPI)
		if f := faults(); len(f) != 0 {
			t.Errorf("lab env faults after heal %q", f)
		}
	})

	t.Run("partition-oneway", func(t *testing.T) {
		// What a sends w is lost; w's packets still reach a.
		l.partition("a", "w", "--oneway")
		mustNotReach(t, "a", wAPI)
		mustReach(t, "b", wAPI)
		if f := faults(); !slices.Contains(f, "partition: a cannot reach w (one way)") {
			t.Errorf("lab env faults %q", f)
		}
		l.heal()
		mustReach(t, "a", wAPI)
	})

	t.Run("pause", func(t *testing.T) {
		l.labCommand("pause", "w", "--process", "tandemd")
		// The kernel still accepts the connection; the witness answers nothing.
		mustReach(t, "client", wAPI)
		if err := l.witnessHealth(quick); err == nil {
			t.Error("w's paused tandemd answered /health")
		}
		l.labCommand("resume", "w")
		if err := l.witnessHealth(5 * time.Second); err != nil {
			t.Errorf("GET /health on w after resume: %v", err)
		}
	})

	// Last, as it changes what the lab is: after --no-assemble the
	// client's console already has w's token (`lab up` put it in its
	// store), so assembling by hand needs only the nodes' tokens.
	t.Run("assemble-by-hand", func(t *testing.T) {
		env := []string{"TANDEM_PRIMARY_TOKEN=" + e.token("a"), "TANDEM_SECONDARY_TOKEN=" + e.token("b")}
		out, errOut, err := l.execErr("client", env, filepath.Join(l.bin, "tandem"), "assemble", "--yes", "--trust-new",
			"--primary", l.fqdn("a"), "--secondary", l.fqdn("b"), "--cluster-ip", e.ClusterPrefix, "--dns-name", e.DNSName,
			"--failover", "automatic", "--witness", w.FQDN)
		if err != nil {
			t.Fatalf("tandem assemble --failover automatic --witness %s on the client, without the witness's token: %v\n%s%s", w.FQDN, err, out, errOut)
		}
		var info api.WitnessInfo
		eventually(t, "the witness's member running for the cluster", 30*time.Second, func() (bool, string) {
			info = api.WitnessInfo{}
			if err := l.witnessCall(http.MethodGet, "/v1/witness", &info, 2*time.Second); err != nil {
				return false, err.Error()
			}
			return info.Cluster == e.DNSName && info.State == "running", fmt.Sprintf("%+v", info)
		})
	})
}

// TestLabWitnessIPv6: in an IPv6 lab w has its IPv6 address (::13), AAAA
// and ip6.arpa records, and its API answers there.
func TestLabWitnessIPv6(t *testing.T) {
	needRoot(t)
	l := upWitnessLab(t, "--no-assemble", "--ipv6")
	w := l.env.Witness
	want, err := netip.ParseAddr(w.IP)
	if err != nil || !want.Is6() || l.env.Family != "ipv6" {
		t.Fatalf("IPv6 lab: family %s, witness address %q", l.env.Family, w.IP)
	}
	if ip, name, ok := l.resolve("client", "w"); !ok || ip != w.IP || name != w.FQDN {
		t.Errorf("client: getent hosts w = %q %q (ok %v), want %s %s", ip, name, ok, w.IP, w.FQDN)
	}
	if ip, name, ok := l.resolve("client", w.IP); !ok || name != w.FQDN {
		t.Errorf("client: getent hosts %s (reverse) = %q %q (ok %v), want %s", w.IP, ip, name, ok, w.FQDN)
	}
	if err := l.witnessHealth(2 * time.Second); err != nil {
		t.Errorf("GET /health on w at %s: %v", w.IP, err)
	}
}

// TestLabUpAutomatic: `lab up --failover automatic` ends with the cluster
// assembled for automatic failover, w its witness: the witness has joined
// the cluster and runs its member, and the console on the client (the
// lab's own cache) shows the cluster.
func TestLabUpAutomatic(t *testing.T) {
	needRoot(t)
	l := upWitnessLab(t)
	var info api.WitnessInfo
	eventually(t, "the witness's member running for the lab's cluster", 30*time.Second, func() (bool, string) {
		info = api.WitnessInfo{}
		if err := l.witnessCall(http.MethodGet, "/v1/witness", &info, 2*time.Second); err != nil {
			return false, err.Error()
		}
		return info.Cluster != "" && info.State == "running", fmt.Sprintf("%+v", info)
	})
	if info.Name != "w" || info.IP != l.env.Witness.IP || info.Cluster != l.env.DNSName {
		t.Errorf("GET /v1/witness: %+v, want w at %s in cluster %s", info, l.env.Witness.IP, l.env.DNSName)
	}
	out, errOut, err := l.execErr("client", nil, filepath.Join(l.bin, "tandem"), "status", "-o", "json")
	var s labStatus
	if jerr := json.Unmarshal([]byte(out), &s); err != nil || jerr != nil || s.Cluster == nil || s.Cluster.Primary != "a" {
		t.Fatalf("tandem status on the client after lab up --failover automatic: %v %v\n%s\n%s", err, jerr, out, errOut)
	}
	if r := s.roles(); r["a"] != "primary" || r["b"] != "secondary" {
		t.Errorf("roles %v", r)
	}
}

// witnessHealth asks w's /health from the client.
func (l *testLab) witnessHealth(timeout time.Duration) error {
	l.t.Helper()
	return l.witnessCall(http.MethodGet, "/health", nil, timeout)
}

// witnessCall calls w's API from the client, by its address in `lab env`
// and with its token from there, pinned to the certificate in w's state
// dir (so that the answer is the witness's own).
func (l *testLab) witnessCall(method, path string, out any, timeout time.Duration) error {
	l.t.Helper()
	c := api.NewClient(api.ClientConfig{
		Addr:             net.JoinHostPort(l.env.Witness.IP, "7400"),
		Token:            l.env.Witness.Token,
		Fingerprint:      l.fingerprint("w"),
		DialTimeout:      timeout,
		HandshakeTimeout: timeout,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := inNetns(l.netnsOf("client"), func() error {
				var d net.Dialer
				var err error
				c, err = d.DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
	})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return c.Do(ctx, method, path, nil, out)
}

// programsOn lists the executables' base names of the processes on host.
func (l *testLab) programsOn(host string) []string {
	l.t.Helper()
	out, err := exec.Command("ip", "netns", "pids", l.netnsOf(host)).Output()
	if err != nil {
		l.t.Fatalf("ip netns pids %s: %v", l.netnsOf(host), err)
	}
	var progs []string
	for _, f := range strings.Fields(string(out)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			continue
		}
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err != nil {
			continue
		}
		progs = append(progs, filepath.Base(strings.TrimSuffix(exe, " (deleted)")))
	}
	return progs
}

// cmdlineOf is a process's command line, arguments joined by spaces.
func (l *testLab) cmdlineOf(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
}
