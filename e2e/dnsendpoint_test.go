//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tandem-ha/tandem/internal/api"
)

// TestCrossSubnetDNSEndpoint: the cross-subnet lab, assembled by `lab up`
// with --endpoint dns (no cluster IP), under a writer that connects to
// the cluster DNS name (the Go resolver asks the lab's BIND at every new
// connection, so each reconnection follows the name). The name follows
// the primary at assembly, switchover and failover, with the TTL the
// nodes were given; no acknowledged write is lost; the longest write gap
// is logged with the TTL. Then, with BIND not answering (SIGSTOP), a
// failover still happens, the name is said to be stale, and it follows
// the new primary once BIND answers again.
func TestCrossSubnetDNSEndpoint(t *testing.T) {
	needRoot(t)
	l := upLabFlags(t, "--cross-subnet")
	// `lab up` assembled from the client with the lab's console dir: use
	// its cache, so the console knows the cluster as an operator's would.
	l.cache = filepath.Join(labBase, l.name, "console")
	e := l.env
	if e.ClusterIP != "" || e.DNSUpdate == nil {
		t.Fatalf("lab env: cluster IP %q, dns_update %+v; want none and BIND's", e.ClusterIP, e.DNSUpdate)
	}
	ip := map[string]string{"a": e.nodeIP("a"), "b": e.nodeIP("b")}
	// waitName waits until the zone's server answers the name with node's
	// address alone, and returns the TTL it answers with.
	waitName := func(what, node string, limit time.Duration) time.Duration {
		t.Helper()
		var ttl time.Duration
		took := eventually(t, what, limit, func() (bool, string) {
			a, err := l.lookupFrom("client", e.DNSServer, e.DNSName)
			if err != nil {
				return false, err.Error()
			}
			ttl = a.TTL
			return len(a.Addrs) == 1 && a.Addrs[0].String() == ip[node], fmt.Sprintf("%s answers %v", e.DNSServer, a.Addrs)
		})
		t.Logf("%s: after %s", what, took.Round(time.Millisecond))
		return ttl
	}
	ttl := waitName("the name points at a after the assembly", "a", 20*time.Second)
	if ttl != 5*time.Second {
		t.Errorf("the name's TTL is %s, want dns_update.ttl's default 5s", ttl)
	}
	l.waitStatus("the cluster synchronized after assembly", 30*time.Second, func(s labStatus) bool {
		return s.Cluster != nil && s.Cluster.Synchronized
	})
	w := l.startWitness()

	// Switchover a → b.
	time.Sleep(500 * time.Millisecond)
	swStart := time.Now()
	if out, errOut, code := l.console("switchover", "--yes"); code != 0 {
		t.Fatalf("switchover: exit %d\n%s\n%s", code, out, errOut)
	}
	waitName("the name points at b after the switchover", "b", 10*time.Second)
	moved := time.Now()
	eventually(t, "an acknowledged write through the name after the switchover", 20*time.Second, func() (bool, string) {
		return w.firstAckAfter(moved) > 0, w.summary()
	})
	swGap, _ := w.longestAckGap(swStart, time.Now())
	l.waitStatus("b primary, a secondary, synchronized", 30*time.Second, func(s labStatus) bool {
		r := s.roles()
		return r["b"] == "primary" && r["a"] == "secondary" && s.Cluster != nil && s.Cluster.Synchronized
	})
	time.Sleep(time.Second)

	// Failover b → a: b loses power.
	l.powerOff("b")
	time.Sleep(3 * time.Second) // a hears b silent
	start := time.Now()
	if out, errOut, code := l.console("failover", "--yes"); code != 0 {
		t.Fatalf("failover: exit %d\n%s\n%s", code, out, errOut)
	}
	waitName("the name points at a after the failover", "a", 10*time.Second)
	eventually(t, "an acknowledged write through the name after the failover", 20*time.Second, func() (bool, string) {
		return w.firstAckAfter(start) > 0, w.summary()
	})
	foGap := w.firstAckAfter(start)
	w.stop(true)
	// The writer asks the zone's server (the lab has no caching resolver),
	// so the TTL is not waited out here; behind a caching resolver a client
	// may keep the old answer for up to the TTL more.
	t.Logf("DNS endpoint (TTL %s): switchover: longest gap between acknowledged writes %s; failover: typed command → first acknowledged write %s",
		ttl, swGap.Round(time.Millisecond), foGap.Round(time.Millisecond))

	updated := 0
	for _, ev := range l.events() {
		if ev.Kind == "dns_updated" {
			updated++
			t.Logf("event dns_updated on %s: %s", ev.Node, ev.Message)
		}
	}
	if updated < 3 {
		t.Errorf("%d dns_updated events, want one each for the assembly, the switchover and the failover", updated)
	}

	// The DNS server down during a failover. b comes back as a's secondary
	// first (rewind).
	l.powerOn("b")
	l.waitStatus("b rejoined as secondary and streams", 90*time.Second, func(s labStatus) bool {
		r := s.roles()
		return r["a"] == "primary" && r["b"] == "secondary" && s.Cluster != nil && s.Cluster.Synchronized
	})
	pids := l.namedPids()
	if len(pids) == 0 {
		t.Fatal("no named process of this lab")
	}
	resume := func() {
		for _, p := range pids {
			_ = syscall.Kill(p, syscall.SIGCONT)
		}
	}
	t.Cleanup(resume) // whatever happens, lab down finds BIND able to stop
	for _, p := range pids {
		if err := syscall.Kill(p, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
	}
	l.powerOff("a")
	time.Sleep(3 * time.Second)
	// The lab's console knows the nodes by name, which needs the DNS
	// server that is down: the failover is asked of b by its node IP, as
	// an operator's console that knows the nodes by address would.
	var fo api.FailoverResult
	if err := l.call(e, ip["b"], "b", "POST", "/v1/cluster/failover", api.FailoverRequest{}, &fo, time.Minute); err != nil {
		t.Fatalf("failover with the DNS server down: %v", err)
	}
	if fo.Primary != "b" {
		t.Fatalf("failover with the DNS server down made %q primary, want b", fo.Primary)
	}
	// b says, in its view (what status shows), that the name is stale and
	// since when.
	var view api.ClusterView
	eventually(t, "b's view to say the name is stale", 20*time.Second, func() (bool, string) {
		view = l.view(e, "b")
		return view.DNS != nil && view.DNS.StaleSince != nil && view.DNS.Error != "", fmt.Sprintf("%+v", view.DNS)
	})
	t.Logf("b's view of the name with BIND silent: %+v", *view.DNS)
	if view.DNS.Served || view.DNS.AuthorityError == "" {
		t.Errorf("with BIND silent, b's view says served %v, authority error %q", view.DNS.Served, view.DNS.AuthorityError)
	}
	time.Sleep(2 * time.Second) // a few retries against the silent server
	resume()
	back := time.Now()
	waitName("the name follows b once the DNS server answers again", "b", 15*time.Second)
	t.Logf("the name followed %s after BIND answered again", time.Since(back).Round(time.Millisecond))
	var stale, followed clusterEvent
	eventually(t, "b's dns_stale and dns_updated events", 20*time.Second, func() (bool, string) {
		evs, err := l.eventsErr("")
		for _, ev := range evs {
			switch {
			case ev.Kind == "dns_stale" && ev.Node == "b":
				stale = ev
			case ev.Kind == "dns_updated" && ev.Node == "b" && strings.Contains(ev.Message, "was stale since"):
				followed = ev
			}
		}
		return stale.Kind != "" && followed.Kind != "", fmt.Sprintf("%d events, %v", len(evs), err)
	})
	if !strings.Contains(stale.Message, "stale since") {
		t.Errorf("dns_stale does not say since when: %s", stale.Message)
	}
	t.Logf("event dns_stale: %s", stale.Message)
	t.Logf("event dns_updated: %s", followed.Message)
	out := l.consoleOK(nil, time.Minute, "status", "-o", "json")
	for _, want := range []string{`"endpoint": "dns"`, `"ttl_seconds": 5`, `"authority": [`, ip["b"]} {
		if !strings.Contains(out, want) {
			t.Errorf("status -o json lacks %s:\n%s", want, out)
		}
	}
	// A write through the name lands on b (there is no cluster IP to
	// look at: the name is the endpoint).
	eventually(t, "a write through "+e.DNSName+" on b", 20*time.Second, func() (bool, string) {
		out, err := l.sql(e.DNSName, "CREATE TABLE IF NOT EXISTS after_dns_outage (x int); SELECT inet_server_addr()")
		if err != nil {
			return false, err.Error()
		}
		return strings.Contains(out, ip["b"]), "served by " + out
	})
}

// TestCrossSubnetWrongKeyRefused: a node whose TSIG secret is not the one
// BIND knows fails the preflight of a DNS-endpoint cluster with a problem
// naming the key and what to fix, and assembly is refused with nothing
// changed on either node.
func TestCrossSubnetWrongKeyRefused(t *testing.T) {
	needRoot(t)
	l := upLabFlags(t, "--cross-subnet", "--no-assemble")
	e := l.env
	// Same key name, another secret: the server refuses the signature.
	if err := os.WriteFile(filepath.Join(l.nodeDir("b"), "dns-update.key"), []byte(keyStatement(t, e.DNSUpdate.KeyName, "hmac-sha256")), 0o600); err != nil {
		t.Fatal(err)
	}
	l.restartTandemd("b")
	l.waitReady("b", 60*time.Second)

	args := []string{"--trust-new", "--primary", l.fqdn("a"), "--secondary", l.fqdn("b"), "--endpoint", "dns", "--dns-name", e.DNSName}
	out, errOut, code := l.consoleWith(l.assembleEnv(), time.Minute, append([]string{"preflight"}, args...)...)
	if code == 0 {
		t.Fatalf("preflight with a wrong key on b passed:\n%s\n%s", out, errOut)
	}
	all := out + errOut
	for _, want := range []string{"dns_update", "TSIG", "dns_update.secret_file"} {
		if !strings.Contains(all, want) {
			t.Errorf("preflight output lacks %q:\n%s", want, all)
		}
	}
	t.Logf("preflight (exit %d):\n%s\n%s", code, out, errOut)
	out, errOut, code = l.consoleWith(l.assembleEnv(), 2*time.Minute, append([]string{"assemble", "--yes"}, args...)...)
	if code == 0 {
		t.Fatalf("assembly with a wrong key on b succeeded:\n%s\n%s", out, errOut)
	}
	if !strings.Contains(out+errOut, "TSIG") {
		t.Errorf("the refused assembly does not name the key:\n%s\n%s", out, errOut)
	}
	for _, n := range []string{"a", "b"} {
		if r := l.role(n); r != "none" {
			t.Errorf("after the refused assembly %s has role %q, want none", n, r)
		}
	}
	if a, err := l.lookupFrom("client", e.DNSServer, e.DNSName); err != nil || len(a.Addrs) != 0 {
		t.Errorf("after the refused assembly %s answers %v (%v), want no address", e.DNSName, a.Addrs, err)
	}
}

// TestCrossSubnetDNSAutomaticFailover: in automatic failover mode (the
// witness w in the client's subnet) a DNS-endpoint cluster's secondary
// promotes by itself when the primary loses power, and the name follows
// it without anyone typing a command.
func TestCrossSubnetDNSAutomaticFailover(t *testing.T) {
	needRoot(t)
	l := upWitnessLab(t, "--cross-subnet")
	l.cache = filepath.Join(labBase, l.name, "console")
	e := l.env
	l.waitEligible("a", "b")
	l.powerOff("a")
	off := time.Now()
	took := eventually(t, "the name to point at b after a loses power", 30*time.Second, func() (bool, string) {
		a, err := l.lookupFrom("client", e.DNSServer, e.DNSName)
		if err != nil {
			return false, err.Error()
		}
		return len(a.Addrs) == 1 && a.Addrs[0].String() == e.nodeIP("b"), fmt.Sprintf("%s answers %v", e.DNSServer, a.Addrs)
	})
	t.Logf("automatic failover, DNS endpoint: power-off → the name served with b's address after %s", took.Round(time.Millisecond))
	eventually(t, "a write through the name on b", 20*time.Second, func() (bool, string) {
		out, err := l.sql(e.DNSName, "CREATE TABLE IF NOT EXISTS after_auto (x int); SELECT inet_server_addr()")
		if err != nil {
			return false, err.Error()
		}
		return strings.Contains(out, e.nodeIP("b")), "served by " + out
	})
	t.Logf("power-off → first write through the name on b: %s", time.Since(off).Round(time.Millisecond))
}
