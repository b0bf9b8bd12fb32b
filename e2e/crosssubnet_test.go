//go:build e2e

package e2e

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/tandem-ha/tandem/internal/dnsupdate"
)

// TestCrossSubnetLab brings up `tandem lab up --cross-subnet` and checks
// what a user of it relies on: a and b in two subnets with nothing in
// common, reaching each other's API and PostgreSQL through the router;
// BIND answering the lab's names forward and reverse; an RFC 2136 update
// signed with the lab's key, sent from node a as tandemd will send it,
// moving the cluster name, and one signed with any other key refused; the
// fault tools across the router; and a `lab down` that leaves nothing.
func TestCrossSubnetLab(t *testing.T) {
	needRoot(t)
	before := rootNetwork(t)
	// The lab's parts alone: this test moves the cluster name by hand,
	// which an assembled cluster's primary would contend with.
	l := upLabFlags(t, "--cross-subnet", "--no-assemble")
	checkRootNetworkUnchanged(t, before)
	e := l.env
	if !e.CrossSubnet || e.Router != l.name+"-r" || len(e.Segments) != 3 || e.ClusterIP != "" || e.DNSName != "db."+e.Domain {
		t.Fatalf("lab env of a cross-subnet lab: %+v", e)
	}
	u := e.DNSUpdate
	if u == nil || u.Software != "bind9" || u.Server != e.DNSServer || u.Zone != e.Domain || u.KeyName == "" || u.Algorithm != "hmac-sha256" || len(u.KeyFiles) != 2 {
		t.Fatalf("lab env dns_update: %+v", u)
	}
	host := func(name string) (ip, subnet, gateway string) {
		for _, h := range e.Hosts {
			if h.Name == name {
				return h.IP, h.Subnet, h.Gateway
			}
		}
		t.Fatalf("lab env lists no host %s", name)
		return
	}
	aIP, aNet, aGW := host("a")
	bIP, bNet, bGW := host("b")

	t.Run("subnets", func(t *testing.T) {
		pa, pb := netip.MustParsePrefix(aNet), netip.MustParsePrefix(bNet)
		if pa.Overlaps(pb) {
			t.Fatalf("a's subnet %s and b's %s overlap", aNet, bNet)
		}
		// As the kernel has them, not only as lab env says: each node's
		// addresses, none in the other's subnet.
		for _, c := range []struct {
			node, ip string
			own      netip.Prefix
			other    netip.Prefix
		}{{"a", aIP, pa, pb}, {"b", bIP, pb, pa}} {
			addrs := l.addrsOf(c.node)
			if !slices.Contains(addrs, c.ip) {
				t.Errorf("%s's eth0 has %v, not %s", c.node, addrs, c.ip)
			}
			for _, s := range addrs {
				a := netip.MustParseAddr(s)
				if a.IsLinkLocalUnicast() {
					continue // fe80::/64 is every link's own, reaching nothing beyond it
				}
				if c.other.Contains(a) || !c.own.Contains(a) {
					t.Errorf("%s has %s: want its addresses in %s only", c.node, s, c.own)
				}
			}
		}
		for node, gw := range map[string]string{"a": aGW, "b": bGW} {
			if r := l.defaultRoute(node); r != gw {
				t.Errorf("%s's default route is via %q, want the router's %s", node, r, gw)
			}
		}
		if !netipContains(aNet, aGW) || !netipContains(bNet, bGW) || aGW == bGW {
			t.Errorf("gateways a %s (in %s), b %s (in %s)", aGW, aNet, bGW, bNet)
		}
		// Neither node knows the other's subnet as on-link: the only way
		// is through the router.
		if out := l.exec("a", nil, "ip", "-4", "route", "get", bIP); !strings.Contains(out, "via "+aGW) {
			t.Errorf("a routes to b %s: %s, want via %s", bIP, out, aGW)
		}
	})

	t.Run("not-assembled", func(t *testing.T) {
		for _, n := range []string{"a", "b"} {
			if r := l.role(n); r != "none" {
				t.Errorf("node %s has role %q after lab up --cross-subnet, want none (not assembled)", n, r)
			}
		}
	})

	apiA, apiB := net.JoinHostPort(aIP, "7400"), net.JoinHostPort(bIP, "7400")
	pgA, pgB := net.JoinHostPort(aIP, "5432"), net.JoinHostPort(bIP, "5432")
	t.Run("routed", func(t *testing.T) {
		for _, c := range [][2]string{{"a", apiB}, {"a", pgB}, {"b", apiA}, {"b", pgA}, {"client", apiA}, {"client", pgB}} {
			if err := l.reaches(c[0], c[1], 2*time.Second); err != nil {
				t.Errorf("%s cannot reach %s through the router: %v", c[0], c[1], err)
			}
		}
		// PostgreSQL answers over the routed path, not only its port.
		if out, err := l.pgQueryAs(e, e.Nodes[1].PostgresPassword, "client", bIP, "SELECT inet_client_addr()"); err != nil || out != e.ClientIP {
			t.Errorf("psql from the client to b: %q %v, want the client's own address %s seen by b", out, err, e.ClientIP)
		}
	})

	t.Run("dns", func(t *testing.T) {
		for name, ip := range map[string]string{"a": aIP, "b": bIP, "client": e.ClientIP, "dns": e.DNSServer} {
			fqdn := name + "." + e.Domain
			for _, from := range []string{"client", "a"} {
				if got, n, ok := l.resolve(from, fqdn); !ok || got != ip || n != fqdn {
					t.Errorf("%s: getent hosts %s = %q %q (ok %v), want %s", from, fqdn, got, n, ok, ip)
				}
				if _, n, ok := l.resolve(from, ip); !ok || n != fqdn {
					t.Errorf("%s: getent hosts %s (reverse) = %q (ok %v), want %s", from, ip, n, ok, fqdn)
				}
			}
		}
		if _, _, ok := l.resolve("client", e.DNSName); ok {
			t.Errorf("%s resolves before any update: the lab must not give it an address", e.DNSName)
		}
		if got, _, ok := l.resolve("client", "example.com"); ok {
			t.Errorf("client: example.com resolved to %s; the lab's BIND must not recurse", got)
		}
		// The server is BIND, answering with authority.
		ans, err := l.lookupFrom("client", e.DNSServer, "b."+e.Domain)
		if err != nil || !ans.Authoritative || len(ans.Addrs) != 1 || ans.Addrs[0].String() != bIP {
			t.Errorf("BIND's answer for b: %+v %v", ans, err)
		}
		if v := l.serverVersion("client", e.DNSServer); !strings.HasPrefix(v, "9.") {
			t.Errorf("the lab's DNS server says it is version %q, want BIND 9", v)
		}
	})

	// The update tandemd will send as primary, from node a, with the key
	// file the lab gave a.
	point := func(t *testing.T, node, keyFile string, to netip.Addr) error {
		t.Helper()
		up, err := dnsupdate.New(dnsupdate.Config{Zone: u.Zone, Server: u.Server, SecretFile: keyFile, Timeout: 2 * time.Second})
		if err != nil {
			t.Fatalf("dnsupdate.New with lab env's values: %v", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return inNetns(l.netnsOf(node), func() error {
			if err := up.CheckKey(ctx); err != nil {
				return err
			}
			return up.Point(ctx, e.DNSName, []netip.Addr{to})
		})
	}
	resolvesTo := func(t *testing.T, ip string) {
		t.Helper()
		eventually(t, e.DNSName+" → "+ip+" from the client", 10*time.Second, func() (bool, string) {
			got, _, ok := l.resolve("client", e.DNSName)
			return ok && got == ip, fmt.Sprintf("%q (ok %v)", got, ok)
		})
	}

	t.Run("dynamic-update", func(t *testing.T) {
		if err := point(t, "a", u.KeyFiles["a"], netip.MustParseAddr(aIP)); err != nil {
			t.Fatalf("an update signed with the lab's key, from a: %v", err)
		}
		resolvesTo(t, aIP)
		// b's copy of the key, from b, moves it: the failover's update.
		if err := point(t, "b", u.KeyFiles["b"], netip.MustParseAddr(bIP)); err != nil {
			t.Fatalf("an update signed with the lab's key, from b: %v", err)
		}
		resolvesTo(t, bIP)
		ans, err := l.lookupFrom("a", e.DNSServer, e.DNSName)
		if err != nil || len(ans.Addrs) != 1 || ans.Addrs[0].String() != bIP || !ans.Authoritative || ans.TTL != dnsupdate.DefaultTTL {
			t.Errorf("BIND's answer for %s: %+v %v, want only %s, authoritative, TTL %s", e.DNSName, ans, err, bIP, dnsupdate.DefaultTTL)
		}
	})

	t.Run("wrong-key", func(t *testing.T) {
		dir := t.TempDir()
		for _, c := range []struct{ what, name string }{
			{"the lab's key name with another secret", u.KeyName},
			{"a key BIND does not know", "intruder"},
		} {
			path := filepath.Join(dir, c.name+".key")
			if err := os.WriteFile(path, []byte(keyStatement(t, c.name, u.Algorithm)), 0o600); err != nil {
				t.Fatal(err)
			}
			err := point(t, "a", path, netip.MustParseAddr(aIP))
			if !errors.Is(err, dnsupdate.ErrKeyRefused) {
				t.Errorf("an update signed with %s: %v, want it refused (%v)", c.what, err, dnsupdate.ErrKeyRefused)
			}
		}
		// Unchanged by the refused updates.
		resolvesTo(t, bIP)
	})

	t.Run("faults", func(t *testing.T) {
		l := l.sub(t)
		dnsTCP := net.JoinHostPort(e.DNSServer, "53")
		// Across the router the cut matches b's address, not its MAC.
		l.labCommand("partition", "a", "b")
		if err := l.reaches("a", apiB, time.Second); err == nil {
			t.Error("a still reaches b's API across a partition")
		}
		if err := l.reaches("b", pgA, time.Second); err == nil {
			t.Error("b still reaches a's PostgreSQL across a partition")
		}
		if err := l.reaches("a", dnsTCP, 2*time.Second); err != nil {
			t.Errorf("the partition between a and b also cut a from dns: %v", err)
		}
		l.labCommand("heal")
		if err := l.reaches("a", apiB, 2*time.Second); err != nil {
			t.Errorf("a does not reach b after heal: %v", err)
		}

		// named stops with the dns host and comes back with power-on,
		// keeping the updates it took (its journal).
		l.labCommand("power-off", "dns")
		if pids := l.namedPids(); len(pids) != 0 {
			t.Errorf("named still runs after power-off dns: %v", pids)
		}
		l.labCommand("power-on", "dns")
		if pids := l.namedPids(); len(pids) != 1 {
			t.Errorf("named processes after power-on dns: %v, want one", pids)
		}
		resolvesTo(t, bIP)

		// A node's power-on gives back its route with its address.
		l.labCommand("power-off", "b")
		l.labCommand("power-on", "b")
		if r := l.defaultRoute("b"); r != bGW {
			t.Errorf("b's default route after power-on: %q, want %s", r, bGW)
		}
		if err := l.reaches("a", apiB, 2*time.Second); err != nil {
			t.Errorf("a does not reach b after b's power-on: %v", err)
		}

		// An edit rewrites BIND's zone (and drops the updates).
		l.labCommand("dns", "set", "db", aIP)
		resolvesTo(t, aIP)
		if _, n, ok := l.resolve("client", aIP); !ok || n != "db."+e.Domain {
			t.Errorf("PTR of %s after dns set db: %q (ok %v)", aIP, n, ok)
		}
		l.labCommand("dns", "reset")
		eventually(t, e.DNSName+" gone after dns reset", 10*time.Second, func() (bool, string) {
			got, _, ok := l.resolve("client", e.DNSName)
			return !ok, got
		})
		if out, errOut, err := l.tandem(nil, time.Minute, "lab", "dns", "--name", l.name, "ptr", "10.99.0.1", "x"); err == nil || !strings.Contains(out+errOut, "reverse zones") {
			t.Errorf("a PTR outside the lab's reverse zones: %v\n%s%s", err, out, errOut)
		}
	})

	l.Down()
	checkRootNetworkUnchanged(t, before)
	if pids := l.namedPids(); len(pids) != 0 {
		t.Errorf("named of lab %s still runs after lab down: %v", l.name, pids)
	}
}

// TestCrossSubnetLabRefusesIPv6: the cross-subnet lab is IPv4 only for
// now, and says so before building anything.
func TestCrossSubnetLabRefusesIPv6(t *testing.T) {
	needRoot(t)
	name := uniqueName(t)
	l := &testLab{t: t, name: name, bin: binDir(t)}
	out, errOut, err := l.tandem(nil, time.Minute, "lab", "up", "--name", name, "--cross-subnet", "--ipv6")
	if err == nil || !strings.Contains(out+errOut, "IPv4") {
		t.Errorf("lab up --cross-subnet --ipv6: %v\n%s%s", err, out, errOut)
	}
	if left := leftovers(name); len(left) != 0 {
		t.Errorf("the refused lab up left %v", left)
	}
}

// defaultRoute is the gateway of host's default route, "" without one.
func (l *testLab) defaultRoute(host string) string {
	l.t.Helper()
	var routes []struct {
		Dst     string `json:"dst"`
		Gateway string `json:"gateway"`
	}
	l.ipJSON(host, &routes, "-4", "route", "show", "default")
	for _, r := range routes {
		if r.Dst == "default" {
			return r.Gateway
		}
	}
	return ""
}

// lookupFrom asks server for name's addresses from a lab host, without
// recursion, as internal/dnsupdate's Lookup does.
func (l *testLab) lookupFrom(host, server, name string) (dnsupdate.Answer, error) {
	var ans dnsupdate.Answer
	err := inNetns(l.netnsOf(host), func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var err error
		ans, err = dnsupdate.Lookup(ctx, server, name)
		return err
	})
	return ans, err
}

// serverVersion is what a DNS server answers for version.bind (CHAOS TXT),
// asked from a lab host; "" when it does not say.
func (l *testLab) serverVersion(host, server string) string {
	var v string
	_ = inNetns(l.netnsOf(host), func() error {
		m := new(dns.Msg)
		m.SetQuestion("version.bind.", dns.TypeTXT)
		m.Question[0].Qclass = dns.ClassCHAOS
		c := &dns.Client{Timeout: 2 * time.Second}
		resp, _, err := c.Exchange(m, net.JoinHostPort(server, "53"))
		if err != nil {
			return err
		}
		for _, rr := range resp.Answer {
			if txt, ok := rr.(*dns.TXT); ok && len(txt.Txt) > 0 {
				v = txt.Txt[0]
			}
		}
		return nil
	})
	return v
}

// namedPids are the named processes of this lab (their command line names
// its directory).
func (l *testLab) namedPids() []int {
	out, _ := exec.Command("pgrep", "-f", "named .*"+filepath.Join(labBase, l.name)+"/").Output()
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if p, err := strconv.Atoi(f); err == nil {
			pids = append(pids, p)
		}
	}
	return pids
}

// keyStatement is a TSIG key with a fresh random secret, as tsig-keygen
// writes it.
func keyStatement(t *testing.T, name, alg string) string {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("key %q {\n\talgorithm %s;\n\tsecret %q;\n};\n", name, alg, base64.StdEncoding.EncodeToString(b))
}

func netipContains(prefix, addr string) bool {
	p, err1 := netip.ParsePrefix(prefix)
	a, err2 := netip.ParseAddr(addr)
	return err1 == nil && err2 == nil && p.Contains(a)
}
