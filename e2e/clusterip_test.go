//go:build e2e

package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tandem-ha/tandem/internal/api"
)

// bogusMAC primes a client's neighbour table with a stale entry no lab
// host owns, so that a test sees the announcement replace it.
const bogusMAC = "02:00:00:00:de:ad"

// holderWatch samples, every 20 ms, whether node a has the cluster IP and
// which MAC the client's neighbour entry for it names, and records when
// each first became true.
type holderWatch struct {
	stop, done   chan struct{}
	addrAt       time.Time // a first had the cluster IP
	neighAt      time.Time // the client's entry first named a's MAC
	lastNeighMAC string
}

func watchHolder(l *testLab, e labEnv, holder string) *holderWatch {
	w := &holderWatch{stop: make(chan struct{}), done: make(chan struct{})}
	want := e.macOf(holder)
	go func() {
		defer close(w.done)
		for {
			select {
			case <-w.stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if held, _ := hasAddrUp(l.netnsOf(holder), e.ClusterIP); w.addrAt.IsZero() && held {
				w.addrAt = time.Now()
			}
			if mac := quietNeigh(l.netnsOf("client"), e.ClusterIP); mac != "" {
				w.lastNeighMAC = mac
				if w.neighAt.IsZero() && mac == want {
					w.neighAt = time.Now()
				}
			}
		}
	}()
	return w
}

func (w *holderWatch) finish() { close(w.stop); <-w.done }

// quietNeigh is neighOf for a goroutine: it never fails the test.
func quietNeigh(ns, ip string) string {
	out, _ := exec.Command("ip", "-n", ns, "-j", "neigh", "show", ip, "dev", "eth0").Output()
	var ents []struct {
		LLAddr string `json:"lladdr"`
	}
	if json.Unmarshal(out, &ents) != nil || len(ents) == 0 {
		return ""
	}
	return ents[0].LLAddr
}

// TestClusterIP assembles a lab and checks the cluster IP as a client
// sees it: only the primary holds it, the nodes say so, the client reaches
// PostgreSQL and the node API through it and through the cluster DNS name,
// and the client's neighbour entry follows the address within a second,
// at acquisition and when the address moves.
func TestClusterIP(t *testing.T) {
	needRoot(t)
	l := upLab(t)
	e := l.env
	cip := e.ClusterIP

	// A stale entry for the cluster IP, as a client that talked to a former
	// holder would have. Linux takes a gratuitous ARP over an existing entry
	// (creating new ones from it is off by default), so this also proves
	// the announcement is a gratuitous ARP, not an answer to our own query.
	l.ipRun("client", "neigh", "replace", cip, "lladdr", bogusMAC, "dev", "eth0", "nud", "stale")
	if mac, _ := l.neighOf("client", cip); mac != bogusMAC {
		t.Fatalf("priming the client's neighbour entry for %s: got %q", cip, mac)
	}

	w := watchHolder(l, e, "a")
	assemble(t, l, e)
	assembled := time.Now()
	time.Sleep(1500 * time.Millisecond) // the announcements last about 2 s
	w.finish()

	t.Run("acquisition-announced", func(t *testing.T) {
		switch {
		case w.addrAt.IsZero():
			t.Fatalf("the watcher never saw %s on a", cip)
		case w.neighAt.IsZero():
			t.Fatalf("the client's neighbour entry for %s never named a's MAC %s (last seen: %q)", cip, e.macOf("a"), w.lastNeighMAC)
		}
		lag := w.neighAt.Sub(w.addrAt)
		t.Logf("the cluster IP appeared on a %s before the assembly returned; the client's entry named a %s later", assembled.Sub(w.addrAt).Round(time.Millisecond), lag.Round(time.Millisecond))
		if lag > time.Second {
			t.Errorf("the client's neighbour entry followed the cluster IP only after %s (want within 1s)", lag)
		}
		if mac, state := l.neighOf("client", cip); mac != e.macOf("a") {
			t.Errorf("after assembly the client's entry for %s is %s %v, want a's MAC %s", cip, mac, state, e.macOf("a"))
		}
	})

	t.Run("held-by-the-primary-only", func(t *testing.T) {
		if !l.hasAddr("a", cip) {
			t.Errorf("a's eth0 lacks the cluster IP: %v", l.addrsOf("a"))
		}
		if l.hasAddr("b", cip) {
			t.Errorf("b's eth0 has the cluster IP: %v", l.addrsOf("b"))
		}
		va, vb := l.view(e, "a"), l.view(e, "b")
		if !va.ClusterIP.Held || va.ClusterIP.Address != e.ClusterPrefix {
			t.Errorf("GET /v1/cluster on a: cluster_ip %+v, want held %s", va.ClusterIP, e.ClusterPrefix)
		}
		if vb.ClusterIP.Held {
			t.Errorf("GET /v1/cluster on b: cluster_ip %+v, want not held", vb.ClusterIP)
		}
		if va.Node.Role != "primary" || vb.Node.Role != "secondary" {
			t.Errorf("roles: a %s, b %s", va.Node.Role, vb.Node.Role)
		}
	})

	t.Run("client-reaches-the-primary", func(t *testing.T) {
		for _, target := range []string{cip, e.DNSName} {
			got, err := l.pgQuery(e, "client", target, "SELECT inet_server_addr(), pg_is_in_recovery()")
			if err != nil {
				t.Errorf("PostgreSQL through %s: %v", target, err)
				continue
			}
			if want := cip + "|f"; got != want {
				t.Errorf("PostgreSQL through %s: server address and recovery %q, want %q (the primary, on the cluster IP)", target, got, want)
			}
		}
		var n api.NodeInfo
		if err := l.call(e, cip, "a", http.MethodGet, "/v1/node", nil, &n, 10*time.Second); err != nil || n.Name != "a" {
			t.Errorf("node API on the cluster IP: %+v %v, want node a", n, err)
		}
	})

	// Until switchover exists, the move is made by hand: tandemd on a
	// stops (it removes the address as it goes), b's tandemd is paused so
	// that its reconcile loop (cluster IP absent on a secondary) leaves the
	// hand-made address alone, the address is added on b and announced.
	t.Run("move", func(t *testing.T) {
		pid := l.sub(t).signalTandemd("a", syscall.SIGTERM)
		eventually(t, "tandemd on a to exit after SIGTERM", 60*time.Second, func() (bool, string) {
			return !pidLive(pid), fmt.Sprintf("pid %d still runs", pid)
		})
		if l.hasAddr("a", cip) {
			t.Fatalf("tandemd on a stopped but left the cluster IP behind: %v", l.addrsOf("a"))
		}
		l.labCommand("pause", "b", "--process", "tandemd")
		l.ipRun("b", "addr", "add", e.ClusterPrefix, "dev", "eth0")
		garp := make(chan error, 1)
		go func() { garp <- l.sendGARP("b", netip.MustParseAddr(cip), 5, 300*time.Millisecond) }()
		took := eventually(t, "the client's neighbour entry to name b", 5*time.Second, func() (bool, string) {
			mac, state := l.neighOf("client", cip)
			return mac == e.macOf("b"), fmt.Sprintf("the entry names %q %v", mac, state)
		})
		t.Logf("the client's entry named b %s after the move", took.Round(time.Millisecond))
		if took > time.Second {
			t.Errorf("the client's neighbour entry followed the move only after %s (want within 1s)", took)
		}
		if err := <-garp; err != nil {
			t.Fatalf("sending gratuitous ARP from b: %v", err)
		}
		got, err := l.pgQuery(e, "client", cip, "SELECT inet_server_addr(), pg_is_in_recovery()")
		if err != nil || got != cip+"|t" {
			t.Errorf("PostgreSQL through the moved cluster IP: %q %v, want %s|t (b's hot standby)", got, err, cip)
		}
		// b is a secondary: once its tandemd runs again, it removes the
		// address it must not hold.
		l.labCommand("resume", "b")
		eventually(t, "b's tandemd to remove the cluster IP it does not own", 10*time.Second, func() (bool, string) {
			addrs := l.addrsOf("b")
			return !slices.Contains(addrs, cip), fmt.Sprintf("b's eth0 has %v", addrs)
		})
	})
}

// TestClusterIPProbeRefuses puts the cluster IP on a stranger (the client)
// before assembly: the preflight names the problem, the assembly is
// refused with and without the preflight, and neither node changes.
func TestClusterIPProbeRefuses(t *testing.T) {
	needRoot(t)
	l := upLab(t)
	e := l.env
	cip := e.ClusterIP
	sysid := func() string {
		t.Helper()
		id, err := l.pgQueryAs(e, e.pgPassword("b"), "client", e.nodeIP("b"), "SELECT system_identifier FROM pg_control_system()")
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	before := sysid()
	l.ipRun("client", "addr", "add", e.ClusterPrefix, "dev", "eth0")

	checks, _ := l.preflight(e, "a", e.ClusterPrefix)
	c := checks["cluster_ip_free"]
	if c.Status != "problem" || !strings.Contains(c.Detail, e.macOf("client")) {
		t.Errorf("preflight cluster_ip_free on a = %+v, want a problem naming the client's MAC %s", c, e.macOf("client"))
	}

	_, err := l.assembleAPI(e, l.assembleRequest(e))
	var ae *apiError
	if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest || !strings.Contains(ae.Message, cip) || !strings.Contains(ae.Message, "nothing was changed") {
		t.Errorf("assembly with the preflight: %v; want 400 naming %s and saying nothing was changed", err, cip)
	}
	req := l.assembleRequest(e)
	req.SkipPreflight = true
	_, err = l.assembleAPI(e, req)
	if !errors.As(err, &ae) || ae.Status != http.StatusConflict || !strings.Contains(ae.Message, cip) {
		t.Errorf("assembly without the preflight: %v; want 409 conflict naming %s (the probe before adding it)", err, cip)
	} else {
		t.Logf("refused: %v", err)
	}

	for _, n := range []string{"a", "b"} {
		info := l.nodeInfo(e, n)
		if info.Role != "none" || info.Postgres.State != "running" || info.Postgres.InRecovery {
			t.Errorf("node %s after the refusals: role %s, PostgreSQL %s (in recovery %v); want none, running, read-write", n, info.Role, info.Postgres.State, info.Postgres.InRecovery)
		}
		if l.hasAddr(n, cip) {
			t.Errorf("node %s holds the cluster IP after a refused assembly", n)
		}
	}
	if after := sysid(); after != before {
		t.Errorf("b's database was replaced: system identifier %s, was %s", after, before)
	}
	if !l.hasAddr("client", cip) {
		t.Error("the stranger lost the address")
	}
}

// TestClusterIPv6 assembles an IPv6 lab: the cluster IP is on a only, and
// the client reaches PostgreSQL through it and through the cluster DNS
// name (AAAA).
func TestClusterIPv6(t *testing.T) {
	needRoot(t)
	l := upLab(t, "--ipv6")
	e := l.env
	cip := e.ClusterIP
	if e.Family != "ipv6" || !strings.HasSuffix(e.ClusterPrefix, "/64") || net.ParseIP(cip).To4() != nil {
		t.Fatalf("lab env of an IPv6 lab: family %s cluster %s", e.Family, e.ClusterPrefix)
	}
	if ip, name, ok := l.resolve("client", e.DNSName); !ok || ip != cip || name != e.DNSName {
		t.Errorf("client: %s = %s %s (ok %v), want AAAA %s", e.DNSName, ip, name, ok, cip)
	}
	if _, name, ok := l.resolve("client", e.nodeIP("b")); !ok || name != "b."+e.Domain {
		t.Errorf("client: reverse of %s = %q (ok %v), want b.%s", e.nodeIP("b"), name, ok, e.Domain)
	}
	assemble(t, l, e)
	if !l.hasAddr("a", cip) || l.hasAddr("b", cip) {
		t.Errorf("cluster IP %s: on a %v, on b %v; want on a only", cip, l.addrsOf("a"), l.addrsOf("b"))
	}
	if v := l.view(e, "a"); !v.ClusterIP.Held {
		t.Errorf("GET /v1/cluster on a: %+v", v.ClusterIP)
	}
	for _, target := range []string{cip, e.DNSName} {
		got, err := l.pgQuery(e, "client", target, "SELECT inet_server_addr(), pg_is_in_recovery()")
		if err != nil || got != cip+"|f" {
			t.Errorf("PostgreSQL through %s: %q %v, want %s|f", target, got, err, cip)
		}
	}
	if mac, _ := l.neighOf("client", cip); mac != e.macOf("a") {
		t.Errorf("the client's neighbour entry for %s is %q, want a's MAC %s", cip, mac, e.macOf("a"))
	}

	// The fault tools work the same in IPv6: a partition cuts neighbour
	// discovery too, and a host powered on has its address at once (IPv6
	// addresses vanish with the link, so power-on adds it back, nodad).
	t.Run("faults", func(t *testing.T) {
		bAPI := net.JoinHostPort(e.nodeIP("b"), "7400")
		l.partition("a", "b")
		if err := l.reaches("a", bAPI, time.Second); err == nil {
			t.Error("a reaches b across the partition")
		}
		l.heal()
		if err := l.reaches("a", bAPI, 2*time.Second); err != nil {
			t.Errorf("a cannot reach b after heal: %v", err)
		}
		l.labCommand("power-off", "b")
		l.labCommand("power-on", "b")
		if !l.hasAddr("b", e.nodeIP("b")) {
			t.Errorf("b after power-on: %v", l.addrsOf("b"))
		}
		if info := l.nodeInfo(e, "b"); info.Role != "secondary" {
			t.Errorf("b after power-on: role %s, want secondary", info.Role)
		}
	})
}
