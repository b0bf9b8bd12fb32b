package dnscheck

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// The data: cluster 10.77.0.10/24 named db.lab.test, node a 10.77.0.11
// (a.lab.test), node b 10.77.0.12 (b.lab.test). No traffic goes to these
// addresses: DNS goes to a test server on 127.0.0.1, port checks are
// redirected to listeners on 127.0.0.1, the prober and the interface list
// are fakes.
var healthy = []string{
	"db.lab.test. 60 IN A 10.77.0.10",
	"a.lab.test. 60 IN A 10.77.0.11",
	"b.lab.test. 60 IN A 10.77.0.12",
	"10.0.77.10.in-addr.arpa. 60 IN PTR db.lab.test.",
	"11.0.77.10.in-addr.arpa. 60 IN PTR a.lab.test.",
	"12.0.77.10.in-addr.arpa. 60 IN PTR b.lab.test.",
}

var (
	ipA       = netip.MustParseAddr("10.77.0.11")
	ipB       = netip.MustParseAddr("10.77.0.12")
	clusterIP = netip.MustParsePrefix("10.77.0.10/24")
)

// records returns base without the records that start with any of drop,
// plus extra.
func records(base []string, drop []string, extra ...string) []string {
	var out []string
	for _, r := range base {
		if !slices.ContainsFunc(drop, func(p string) bool { return strings.HasPrefix(r, p) }) {
			out = append(out, r)
		}
	}
	return append(out, extra...)
}

// setup serves recs and returns an Input seen from node a, all healthy
// apart from what the records say.
func setup(t *testing.T, recs []string) (Input, *testZone) {
	t.Helper()
	z := newTestZone(t, recs...)
	addr := serveZone(t, z)
	return Input{
		Self:      Node{Name: "a", IP: ipA, APIPort: 8443, PostgresPort: 5432},
		Peer:      Node{Name: "b", IP: ipB, APIPort: listen(t), PostgresPort: listen(t)},
		ClusterIP: clusterIP,
		DNSName:   "db.lab.test",
		DNSServer: addr,
		Prober: func(ctx context.Context, ip netip.Addr) (string, bool, error) {
			return "", false, nil
		},
		LocalPrefixes: func() ([]netip.Prefix, error) {
			return []netip.Prefix{netip.MustParsePrefix("127.0.0.1/8"), netip.MustParsePrefix("10.77.0.11/24")}, nil
		},
		Timeout: 300 * time.Millisecond,
	}, z
}

// run runs the preflight and checks what must hold for any input.
func run(t *testing.T, in Input) map[string]Result {
	t.Helper()
	if in.dial == nil {
		in.dial = loopbackDial(t, in.Peer.IP)
	}
	rs := Run(context.Background(), in)
	byID := map[string]Result{}
	for _, r := range rs {
		if r.ID == "" || r.Title == "" || strings.Contains(r.Title, "\n") {
			t.Errorf("result without ID or one-line title: %+v", r)
		}
		if _, dup := byID[r.ID]; dup {
			t.Errorf("duplicate ID %s", r.ID)
		}
		byID[r.ID] = r
		switch r.Status {
		case StatusOK, StatusSkipped:
		case StatusProblem:
			if r.Detail == "" || r.Fix == "" {
				t.Errorf("problem %s without detail or fix: %+v", r.ID, r)
			}
		default:
			t.Errorf("%s: bad status %q", r.ID, r.Status)
		}
		if r.Status == StatusSkipped && r.Detail == "" {
			t.Errorf("skipped %s without a reason", r.ID)
		}
	}
	// A skipped check points at results that exist.
	for _, r := range rs {
		if r.Status != StatusSkipped {
			continue
		}
		for _, m := range seeRE.FindAllStringSubmatch(r.Detail, -1) {
			for _, id := range strings.Split(m[1], ", ") {
				if _, found := byID[id]; !found {
					t.Errorf("%s points at %s, which is not among the results", r.ID, id)
				}
			}
		}
	}
	if Problems(rs) != count(rs, StatusProblem) {
		t.Errorf("Problems() = %d, want %d", Problems(rs), count(rs, StatusProblem))
	}
	if t.Failed() || testing.Verbose() {
		for _, r := range rs {
			t.Logf("%-18s %-8s %s | %s | fix: %s", r.ID, r.Status, r.Title, r.Detail, r.Fix)
		}
	}
	return byID
}

var seeRE = regexp.MustCompile(`\(see ([^)]+)\)`)

func count(rs []Result, status string) int {
	n := 0
	for _, r := range rs {
		if r.Status == status {
			n++
		}
	}
	return n
}

// expect checks one result's status and that its detail and fix contain
// the given strings.
func expect(t *testing.T, rs map[string]Result, id, status string, detail []string, fix ...string) {
	t.Helper()
	r, found := rs[id]
	if !found {
		t.Errorf("no result %s", id)
		return
	}
	if r.Status != status {
		t.Errorf("%s: status %s, want %s (detail: %s)", id, r.Status, status, r.Detail)
	}
	for _, s := range detail {
		if !strings.Contains(r.Detail, s) {
			t.Errorf("%s: detail %q lacks %q", id, r.Detail, s)
		}
	}
	for _, s := range fix {
		if !strings.Contains(r.Fix, s) {
			t.Errorf("%s: fix %q lacks %q", id, r.Fix, s)
		}
	}
}

// only asserts every result is ok except the listed ones.
func only(t *testing.T, rs map[string]Result, notOK ...string) {
	t.Helper()
	for id, r := range rs {
		if r.Status != StatusOK && !slices.Contains(notOK, id) {
			t.Errorf("%s: %s, want ok: %s", id, r.Status, r.Detail)
		}
	}
}

var allIDs = []string{
	"dns.server", "forward.cluster", "reverse.cluster",
	"reverse.node.a", "forward.node.a", "reverse.node.b", "forward.node.b",
	"subnet", "subnet.interface", "family", "suffix", "cluster_ip_free",
	"port.api", "port.postgres",
}

func TestHealthy(t *testing.T) {
	in, _ := setup(t, healthy)
	in.dial = loopbackDial(t, in.Peer.IP)
	rs := Run(context.Background(), in)
	var ids []string
	for _, r := range rs {
		ids = append(ids, r.ID)
		if r.Status != StatusOK {
			t.Errorf("%s: %s: %s / %s", r.ID, r.Status, r.Detail, r.Fix)
		}
		if r.Fix != "" {
			t.Errorf("%s: ok with a fix %q", r.ID, r.Fix)
		}
	}
	if !slices.Equal(ids, allIDs) {
		t.Errorf("IDs %v\nwant %v", ids, allIDs)
	}
	if Problems(rs) != 0 {
		t.Errorf("Problems = %d", Problems(rs))
	}
	m := run(t, in)
	expect(t, m, "forward.cluster", StatusOK, []string{"A 10.77.0.10"})
	expect(t, m, "reverse.node.b", StatusOK, []string{"PTR b.lab.test"})
	expect(t, m, "suffix", StatusOK, []string{"a.lab.test", "b.lab.test", "db.lab.test"})
	if m["forward.cluster"].Title != "db.lab.test resolves to 10.77.0.10" {
		t.Errorf("title %q", m["forward.cluster"].Title)
	}

	// The JSON form is what the API carries.
	b, err := json.Marshal(rs)
	if err != nil {
		t.Fatal(err)
	}
	var back []Result
	if err := json.Unmarshal(b, &back); err != nil || !slices.Equal(back, rs) {
		t.Errorf("JSON round trip: %v", err)
	}
	if !strings.Contains(string(b), `"id":"forward.cluster"`) || strings.Contains(string(b), `"fix"`) {
		t.Errorf("JSON: %s", b)
	}
}

func TestHealthyIPv6(t *testing.T) {
	recs := []string{
		"db.lab.test. 60 IN AAAA fd00:77::10",
		"a.lab.test. 60 IN AAAA fd00:77::11",
		"b.lab.test. 60 IN AAAA fd00:77::12",
	}
	for _, x := range []struct{ ip, name string }{{"fd00:77::10", "db"}, {"fd00:77::11", "a"}, {"fd00:77::12", "b"}} {
		arpa, _ := dns.ReverseAddr(x.ip)
		recs = append(recs, arpa+" 60 IN PTR "+x.name+".lab.test.")
	}
	in, _ := setup(t, recs)
	in.Self.IP = netip.MustParseAddr("fd00:77::11")
	in.Peer.IP = netip.MustParseAddr("fd00:77::12")
	in.ClusterIP = netip.MustParsePrefix("fd00:77::10/64")
	in.LocalPrefixes = func() ([]netip.Prefix, error) {
		return []netip.Prefix{netip.MustParsePrefix("fd00:77::11/64")}, nil
	}
	rs := run(t, in)
	only(t, rs)
	expect(t, rs, "family", StatusOK, []string{"IPv6", "no A records"})
}

func TestMissingNodePTR(t *testing.T) {
	in, _ := setup(t, records(healthy, []string{"12.0.77.10"}))
	rs := run(t, in)
	expect(t, rs, "reverse.node.b", StatusProblem, []string{"NXDOMAIN", "12.0.77.10.in-addr.arpa"},
		"create the record 12.0.77.10.in-addr.arpa. IN PTR", ".lab.test.", "IN A 10.77.0.12")
	expect(t, rs, "forward.node.b", StatusSkipped, []string{"reverse.node.b"})
	expect(t, rs, "suffix", StatusSkipped, []string{"reverse.node.b"})
	only(t, rs, "reverse.node.b", "forward.node.b", "suffix")
}

func TestNodeNameWithoutAddress(t *testing.T) {
	in, _ := setup(t, records(healthy, []string{"a.lab.test"}, "a.lab.test. 60 IN TXT \"node a\""))
	rs := run(t, in)
	expect(t, rs, "forward.node.a", StatusProblem, []string{"no A record for a.lab.test", "NOERROR"},
		"create the record a.lab.test. IN A 10.77.0.11")
	only(t, rs, "forward.node.a")
}

func TestNodeNamePointsElsewhere(t *testing.T) {
	in, _ := setup(t, records(healthy, []string{"b.lab.test"}, "b.lab.test. 60 IN A 10.77.0.99"))
	rs := run(t, in)
	expect(t, rs, "forward.node.b", StatusProblem, []string{"10.77.0.99", "not node b's node IP 10.77.0.12"},
		"b.lab.test. IN A 10.77.0.12", "remove A 10.77.0.99")
	only(t, rs, "forward.node.b")
}

func TestNodePTRIsClusterName(t *testing.T) {
	in, _ := setup(t, records(healthy, []string{"11.0.77.10"}, "11.0.77.10.in-addr.arpa. 60 IN PTR db.lab.test."))
	rs := run(t, in)
	expect(t, rs, "reverse.node.a", StatusProblem, []string{"cluster name"}, "own host name", "IN PTR <host name of node a>.lab.test.")
	expect(t, rs, "forward.node.a", StatusSkipped, []string{"cluster name"})
	only(t, rs, "reverse.node.a", "forward.node.a")
}

func TestMissingClusterPTR(t *testing.T) {
	in, _ := setup(t, records(healthy, []string{"10.0.77.10"}))
	rs := run(t, in)
	expect(t, rs, "reverse.cluster", StatusProblem, []string{"NXDOMAIN"},
		"create the record 10.0.77.10.in-addr.arpa. IN PTR db.lab.test.")
	only(t, rs, "reverse.cluster")
}

func TestClusterPTRWrongName(t *testing.T) {
	in, _ := setup(t, records(healthy, []string{"10.0.77.10"}, "10.0.77.10.in-addr.arpa. 60 IN PTR old.lab.test."))
	rs := run(t, in)
	expect(t, rs, "reverse.cluster", StatusProblem, []string{"old.lab.test", "not db.lab.test"},
		"10.0.77.10.in-addr.arpa. IN PTR db.lab.test.", "remove PTR old.lab.test")
	only(t, rs, "reverse.cluster")
}

func TestClusterNamePointsToNode(t *testing.T) {
	in, _ := setup(t, records(healthy, []string{"db.lab.test"}, "db.lab.test. 60 IN A 10.77.0.11"))
	rs := run(t, in)
	expect(t, rs, "forward.cluster", StatusProblem, []string{"10.77.0.11 (node a's node IP)", "not the cluster IP 10.77.0.10"},
		"change the A record of db.lab.test to 10.77.0.10", "db.lab.test. IN A 10.77.0.10", "remove A 10.77.0.11")
	only(t, rs, "forward.cluster")
}

func TestClusterNameTwoAddresses(t *testing.T) {
	in, _ := setup(t, append(slices.Clone(healthy), "db.lab.test. 60 IN A 10.77.0.12"))
	rs := run(t, in)
	expect(t, rs, "forward.cluster", StatusProblem, []string{"2 A records", "10.77.0.10 (the cluster IP)", "10.77.0.12 (node b's node IP)"},
		"keep only db.lab.test. IN A 10.77.0.10", "remove the A record(s) 10.77.0.12")
	only(t, rs, "forward.cluster")
}

func TestClusterNameViaCNAME(t *testing.T) {
	in, z := setup(t, records(healthy, []string{"db.lab.test"},
		"db.lab.test. 60 IN CNAME vip.lab.test.", "vip.lab.test. 60 IN A 10.77.0.10"))
	rs := run(t, in)
	expect(t, rs, "forward.cluster", StatusOK, []string{"via CNAME vip.lab.test"})
	only(t, rs)
	z.mu.Lock()
	defer z.mu.Unlock()
	if !slices.Contains(z.asked, "vip.lab.test A") {
		t.Errorf("the CNAME target was not asked: %v", z.asked)
	}
}

func TestNodeOutsideSubnet(t *testing.T) {
	recs := records(healthy, []string{"b.lab.test", "12.0.77.10"},
		"b.lab.test. 60 IN A 10.78.0.12", "12.0.78.10.in-addr.arpa. 60 IN PTR b.lab.test.")
	in, _ := setup(t, recs)
	in.Peer.IP = netip.MustParseAddr("10.78.0.12")
	rs := run(t, in)
	expect(t, rs, "subnet", StatusProblem, []string{"node b (10.78.0.12) is outside 10.77.0.0/24"},
		"give node b a node IP in 10.77.0.0/24")
	only(t, rs, "subnet")
}

func TestInterfacePrefixMismatch(t *testing.T) {
	in, _ := setup(t, healthy)
	in.LocalPrefixes = func() ([]netip.Prefix, error) {
		return []netip.Prefix{netip.MustParsePrefix("10.77.0.11/16")}, nil
	}
	rs := run(t, in)
	expect(t, rs, "subnet.interface", StatusProblem, []string{"10.77.0.11/16", "10.77.0.0/24"},
		"configure 10.77.0.11/24", "--cluster-ip 10.77.0.10/16")
	only(t, rs, "subnet.interface")
}

func TestNodeIPNotLocal(t *testing.T) {
	in, _ := setup(t, healthy)
	in.LocalPrefixes = func() ([]netip.Prefix, error) {
		return []netip.Prefix{netip.MustParsePrefix("127.0.0.1/8"), netip.MustParsePrefix("192.168.1.5/24")}, nil
	}
	rs := run(t, in)
	expect(t, rs, "subnet.interface", StatusProblem, []string{"not configured on any interface", "192.168.1.5/24"},
		"ip addr add 10.77.0.11/24")
	only(t, rs, "subnet.interface")

	in.LocalPrefixes = func() ([]netip.Prefix, error) { return nil, errors.New("netlink: permission denied") }
	rs = run(t, in)
	expect(t, rs, "subnet.interface", StatusProblem, []string{"permission denied"})
}

func TestClusterIPOnNodeIP(t *testing.T) {
	in, _ := setup(t, healthy)
	in.ClusterIP = netip.MustParsePrefix("10.77.0.11/24")
	rs := run(t, in)
	expect(t, rs, "subnet", StatusProblem, []string{"node a's own node IP"}, "neither node IP")
	expect(t, rs, "cluster_ip_free", StatusProblem, []string{"already configured"}, "ip addr del 10.77.0.11/24")
}

func TestBroadcastClusterIP(t *testing.T) {
	in, _ := setup(t, healthy)
	in.ClusterIP = netip.MustParsePrefix("10.77.0.255/24")
	rs := run(t, in)
	expect(t, rs, "subnet", StatusProblem, []string{"broadcast address"}, "host address in 10.77.0.0/24")
}

func TestMixedFamilies(t *testing.T) {
	recs := append(slices.Clone(healthy), "db.lab.test. 60 IN AAAA fd00:77::10")
	arpa, _ := dns.ReverseAddr("fd00:77::10")
	recs = append(recs, arpa+" 60 IN PTR db.lab.test.")
	in, _ := setup(t, recs)
	in.ClusterIP = netip.MustParsePrefix("fd00:77::10/64")
	rs := run(t, in)
	expect(t, rs, "family", StatusProblem, []string{"fd00:77::10 is IPv6", "node a (10.77.0.11) and node b (10.77.0.12) are IPv4"},
		"free IPv4 address in the nodes' subnet as the cluster IP", "IPv6 node IPs")
	expect(t, rs, "subnet", StatusProblem, []string{"IPv4", "IPv6"}, "one address family")
	expect(t, rs, "subnet.interface", StatusSkipped, []string{"family"})
	expect(t, rs, "forward.cluster", StatusOK, []string{"AAAA fd00:77::10"})
}

func TestWrongFamilyRecord(t *testing.T) {
	in, _ := setup(t, append(slices.Clone(healthy), "b.lab.test. 60 IN AAAA fd00:77::12"))
	rs := run(t, in)
	expect(t, rs, "family", StatusProblem, []string{"b.lab.test also has AAAA fd00:77::12"},
		"remove the AAAA record(s) of b.lab.test")
	only(t, rs, "family")
}

func TestDifferentSuffixes(t *testing.T) {
	recs := records(healthy, []string{"b.lab.test", "12.0.77.10"},
		"b.other.test. 60 IN A 10.77.0.12", "12.0.77.10.in-addr.arpa. 60 IN PTR b.other.test.")
	in, _ := setup(t, recs)
	rs := run(t, in)
	expect(t, rs, "suffix", StatusProblem, []string{"b.other.test is in other.test", "a.lab.test is in lab.test"},
		"give node b a name in lab.test", "12.0.77.10.in-addr.arpa. IN PTR b.lab.test.", "b.lab.test. IN A 10.77.0.12")
	only(t, rs, "suffix")
}

func TestClusterNameInOtherDomain(t *testing.T) {
	recs := records(healthy, []string{"db.lab.test", "10.0.77.10"},
		"db.corp.test. 60 IN A 10.77.0.10", "10.0.77.10.in-addr.arpa. 60 IN PTR db.corp.test.")
	in, _ := setup(t, recs)
	in.DNSName = "DB.corp.test."
	rs := run(t, in)
	expect(t, rs, "suffix", StatusProblem, []string{"db.corp.test is in corp.test"}, "--dns-name db.lab.test")
	only(t, rs, "suffix")
}

func TestClusterIPInUse(t *testing.T) {
	in, _ := setup(t, healthy)
	var probed netip.Addr
	in.Prober = func(ctx context.Context, ip netip.Addr) (string, bool, error) {
		probed = ip
		return "52:54:00:12:34:56", true, nil
	}
	rs := run(t, in)
	if probed != clusterIP.Addr() {
		t.Errorf("probed %v", probed)
	}
	expect(t, rs, "cluster_ip_free", StatusProblem, []string{"52:54:00:12:34:56 answers for 10.77.0.10", "ARP"},
		"choose a free address in 10.77.0.0/24", "52:54:00:12:34:56")
	only(t, rs, "cluster_ip_free")
}

func TestProberMissingOrFailing(t *testing.T) {
	in, _ := setup(t, healthy)
	in.Prober = nil
	rs := run(t, in)
	expect(t, rs, "cluster_ip_free", StatusSkipped, []string{"not probed"})
	only(t, rs, "cluster_ip_free")

	in.Prober = func(ctx context.Context, ip netip.Addr) (string, bool, error) {
		return "", false, errors.New("socket: operation not permitted")
	}
	rs = run(t, in)
	expect(t, rs, "cluster_ip_free", StatusProblem, []string{"operation not permitted"}, "CAP_NET_RAW")

	in.Prober = func(ctx context.Context, ip netip.Addr) (string, bool, error) { panic("boom") }
	rs = run(t, in)
	expect(t, rs, "cluster_ip_free", StatusProblem, []string{"boom"})
}

func TestPortUnreachable(t *testing.T) {
	in, _ := setup(t, healthy)
	in.Peer.PostgresPort = closedPort(t)
	rs := run(t, in)
	expect(t, rs, "port.postgres", StatusProblem, []string{"connection refused"},
		"start PostgreSQL on node b", "listen_addresses")
	only(t, rs, "port.postgres")

	in.Peer.PostgresPort = 5432
	in.Peer.APIPort = closedPort(t)
	rs = run(t, in)
	expect(t, rs, "port.api", StatusProblem, []string{"connection refused"}, "start tandemd on node b")
}

func TestPortTimeout(t *testing.T) {
	in, _ := setup(t, healthy)
	in.Timeout = 100 * time.Millisecond
	apiPort := in.Peer.APIPort
	// A dial that hangs like a dropped SYN, for the PostgreSQL port only.
	in.dial = func(ctx context.Context, ap netip.AddrPort) (net.Conn, error) {
		if ap.Addr() != ipB {
			t.Errorf("dialled %s", ap)
		}
		if int(ap.Port()) == apiPort {
			return loopbackDial(t, ipB)(ctx, ap)
		}
		<-ctx.Done()
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: ctx.Err()}
	}
	rs := run(t, in)
	expect(t, rs, "port.postgres", StatusProblem, []string{"timeout"}, "allow TCP port")
	expect(t, rs, "port.api", StatusOK, nil)
}

func TestNXDOMAINvsTimeoutvsSERVFAIL(t *testing.T) {
	t.Run("nxdomain", func(t *testing.T) {
		in, _ := setup(t, records(healthy, []string{"db.lab.test"}))
		rs := run(t, in)
		expect(t, rs, "forward.cluster", StatusProblem, []string{"NXDOMAIN", "db.lab.test does not exist"},
			"create the record db.lab.test. IN A 10.77.0.10")
		if strings.Contains(rs["forward.cluster"].Detail, "timeout") {
			t.Errorf("NXDOMAIN worded as timeout: %s", rs["forward.cluster"].Detail)
		}
		expect(t, rs, "dns.server", StatusOK, nil)
	})
	t.Run("timeout", func(t *testing.T) {
		in, z := setup(t, healthy)
		z.dropName("db.lab.test")
		in.Timeout = 150 * time.Millisecond
		rs := run(t, in)
		expect(t, rs, "forward.cluster", StatusProblem, []string{"timeout", "no answer"}, "reachable over UDP and TCP", in.DNSServer)
		if strings.Contains(rs["forward.cluster"].Detail, "NXDOMAIN") {
			t.Errorf("timeout worded as NXDOMAIN: %s", rs["forward.cluster"].Detail)
		}
		expect(t, rs, "dns.server", StatusProblem, []string{"timeout"})
		expect(t, rs, "family", StatusProblem, []string{"could not check", "timeout"})
	})
	t.Run("servfail", func(t *testing.T) {
		in, z := setup(t, healthy)
		z.failName("11.0.77.10.in-addr.arpa", dns.RcodeServerFailure)
		rs := run(t, in)
		expect(t, rs, "reverse.node.a", StatusProblem, []string{"SERVFAIL"}, "11.0.77.10.in-addr.arpa. IN PTR")
		expect(t, rs, "forward.node.a", StatusSkipped, nil)
	})
	t.Run("refused", func(t *testing.T) {
		in, z := setup(t, healthy)
		z.failName("db.lab.test", dns.RcodeRefused)
		rs := run(t, in)
		expect(t, rs, "forward.cluster", StatusProblem, []string{"REFUSED"}, "allow queries")
		expect(t, rs, "dns.server", StatusProblem, []string{"REFUSED"})
	})
	t.Run("no server", func(t *testing.T) {
		in, _ := setup(t, healthy)
		in.DNSServer = closedUDP(t)
		rs := run(t, in)
		expect(t, rs, "forward.cluster", StatusProblem, []string{"connection refused"}, "reachable over UDP and TCP")
		expect(t, rs, "dns.server", StatusProblem, []string{"connection refused"})
	})
}

func TestServerFallback(t *testing.T) {
	good := newTestZone(t, healthy...)
	goodAddr := serveZone(t, good)
	bad := newTestZone(t, healthy...)
	bad.failName("db.lab.test", dns.RcodeServerFailure)
	badAddr := serveZone(t, bad)

	r := &resolver{servers: []string{closedUDP(t), badAddr, goodAddr}, timeout: 300 * time.Millisecond}
	a := r.lookup(context.Background(), "db.lab.test", dns.TypeA)
	if !a.found() || a.server != goodAddr {
		t.Fatalf("fallback: %+v", a)
	}
	if len(a.failures) != 2 || !strings.Contains(a.failures[0], "connection refused") || !strings.Contains(a.failures[1], "SERVFAIL") {
		t.Errorf("failures %q", a.failures)
	}
	// The dead server is asked last from now on.
	a = r.lookup(context.Background(), "a.lab.test", dns.TypeA)
	if !a.found() || len(a.failures) != 0 || a.server != badAddr {
		t.Errorf("dead server not moved last: %+v", a)
	}
	// NXDOMAIN is an answer: no fallback.
	r = &resolver{servers: []string{badAddr, goodAddr}, timeout: 300 * time.Millisecond}
	a = r.lookup(context.Background(), "nope.lab.test", dns.TypeA)
	if a.rcode != dns.RcodeNameError || a.server != badAddr {
		t.Errorf("NXDOMAIN from the first server should stand: %+v", a)
	}
	// Every server failing with an rcode: the last rcode is named.
	r = &resolver{servers: []string{badAddr, badAddr}, timeout: 300 * time.Millisecond}
	a = r.lookup(context.Background(), "db.lab.test", dns.TypeA)
	if a.err != nil || a.rcode != dns.RcodeServerFailure {
		t.Errorf("all SERVFAIL: %+v", a)
	}
}

func TestSystemResolvConf(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "resolv.conf")
	conf := "# generated\nsearch lab.test\nnameserver 127.0.0.1\nnameserver not-an-ip\nnameserver ::1\noptions ndots:2\n"
	if err := os.WriteFile(p, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := systemServers(p)
	if err != nil || !slices.Equal(got, []string{"127.0.0.1:53", "[::1]:53"}) {
		t.Errorf("systemServers = %v, %v", got, err)
	}
	r, from, err := newResolver("", p, time.Second)
	if err != nil || from != p || len(r.servers) != 2 {
		t.Errorf("newResolver: %v %v %v", r, from, err)
	}

	// A missing or empty resolv.conf is a dns.server problem, and every
	// DNS check is skipped, not failed with a confusing error.
	in, _ := setup(t, healthy)
	in.DNSServer = ""
	in.resolvConf = filepath.Join(dir, "missing.conf")
	rs := run(t, in)
	expect(t, rs, "dns.server", StatusProblem, []string{"missing.conf"}, "nameserver")
	for _, id := range []string{"forward.cluster", "reverse.cluster", "reverse.node.a", "forward.node.b", "suffix"} {
		expect(t, rs, id, StatusSkipped, []string{"dns.server"})
	}
	empty := filepath.Join(dir, "empty.conf")
	os.WriteFile(empty, []byte("search lab.test\n"), 0o644)
	in.resolvConf = empty
	rs = run(t, in)
	expect(t, rs, "dns.server", StatusProblem, []string{"no nameserver"})
}

func TestParseServer(t *testing.T) {
	for in, want := range map[string]string{
		"10.77.0.2":        "10.77.0.2:53",
		"10.77.0.2:5353":   "10.77.0.2:5353",
		"fd00::2":          "[fd00::2]:53",
		"[fd00::2]":        "[fd00::2]:53",
		"[fd00::2]:5353":   "[fd00::2]:5353",
		"::ffff:10.0.0.1":  "10.0.0.1:53",
		"dns.example.com":  "",
		"10.77.0.2:0":      "",
		"0.0.0.0":          "",
		"10.77.0.2:999999": "",
	} {
		got, err := parseServer(in)
		if got != want || (want == "") != (err != nil) {
			t.Errorf("parseServer(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestBadInput(t *testing.T) {
	// The zero Input: every field missing. Nothing panics, nothing is ok
	// that was not checked, and no query is sent (there is no server).
	rs := Run(context.Background(), Input{resolvConf: filepath.Join(t.TempDir(), "none"), LocalPrefixes: func() ([]netip.Prefix, error) { return nil, nil }})
	m := map[string]Result{}
	for _, r := range rs {
		m[r.ID] = r
		if r.Status == StatusProblem && r.Fix == "" {
			t.Errorf("%s without fix", r.ID)
		}
	}
	for _, id := range []string{"input.node.self", "input.node.peer", "input.cluster_ip", "input.dns_name", "input.port.api", "input.port.postgres"} {
		if m[id].Status != StatusProblem {
			t.Errorf("%s: %+v", id, m[id])
		}
	}
	for _, id := range []string{"forward.cluster", "subnet", "family", "cluster_ip_free", "port.api", "port.postgres"} {
		if m[id].Status != StatusSkipped {
			t.Errorf("%s: %+v", id, m[id])
		}
	}

	in, _ := setup(t, healthy)
	bad := in
	bad.DNSName = "10.77.0.10"
	bad.ClusterIP = netip.MustParsePrefix("10.77.0.10/32")
	bad.Peer.Name = "A"
	rs2 := run(t, bad)
	expect(t, rs2, "input.dns_name", StatusProblem, []string{"address"}, "--dns-name")
	expect(t, rs2, "input.cluster_ip", StatusProblem, []string{"/32"}, "/24")
	expect(t, rs2, "input.node_names", StatusProblem, []string{"both nodes"}, "different names")
	expect(t, rs2, "reverse.node.self", StatusOK, nil)

	bad = in
	bad.DNSName = "db..lab.test"
	bad.DNSServer = "dns.lab.test"
	bad.Self.IP = netip.MustParseAddr("127.0.0.1")
	rs2 = run(t, bad)
	expect(t, rs2, "input.dns_name", StatusProblem, []string{"not a valid DNS name"})
	expect(t, rs2, "dns.server", StatusProblem, []string{"not an IP address"}, "--dns-server")
	expect(t, rs2, "input.node.a", StatusProblem, []string{"loopback"})

	bad = in
	bad.Peer.IP = ipA
	rs2 = run(t, bad)
	expect(t, rs2, "input.nodes", StatusProblem, []string{"both nodes have the node IP 10.77.0.11"})
	expect(t, rs2, "reverse.node.b", StatusSkipped, []string{"input.nodes"})
	if _, found := rs2["input.dns_server"]; found {
		t.Errorf("a bad --dns-server is reported twice")
	}
	expect(t, rs2, "port.api", StatusSkipped, nil)
}

func TestCancelledContext(t *testing.T) {
	in, _ := setup(t, healthy)
	in.dial = loopbackDial(t, in.Peer.IP)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	rs := Run(ctx, in)
	if time.Since(start) > 2*time.Second {
		t.Errorf("a cancelled run took %s", time.Since(start))
	}
	if Problems(rs) == 0 {
		t.Errorf("a cancelled run reported no problem")
	}
	for _, r := range rs {
		if r.Status == StatusProblem && r.Fix == "" {
			t.Errorf("%s without fix", r.ID)
		}
	}
}

func TestNoNamesMeansSelfPeer(t *testing.T) {
	in, _ := setup(t, healthy)
	in.Self.Name, in.Peer.Name = "", ""
	rs := run(t, in)
	only(t, rs)
	for _, id := range []string{"reverse.node.self", "forward.node.peer"} {
		if _, found := rs[id]; !found {
			t.Errorf("no %s", id)
		}
	}
}

func TestLastAddr(t *testing.T) {
	for p, want := range map[string]string{
		"10.77.0.0/24":  "10.77.0.255",
		"10.77.0.0/23":  "10.77.1.255",
		"10.0.0.0/8":    "10.255.255.255",
		"10.77.0.8/29":  "10.77.0.15",
		"fd00::/64":     "fd00::ffff:ffff:ffff:ffff",
		"10.77.0.10/32": "10.77.0.10",
	} {
		if got := lastAddr(netip.MustParsePrefix(p)); got.String() != want {
			t.Errorf("lastAddr(%s) = %s, want %s", p, got, want)
		}
	}
}

func TestInterfacePrefixes(t *testing.T) {
	// Reads this machine's interfaces: no traffic. Loopback is always there.
	ps, err := interfacePrefixes()
	if err != nil {
		t.Skipf("cannot list interfaces here: %v", err)
	}
	if !slices.ContainsFunc(ps, func(p netip.Prefix) bool { return p.Addr() == netip.MustParseAddr("127.0.0.1") && p.Bits() == 8 }) {
		t.Errorf("127.0.0.1/8 not among %v", ps)
	}
}

func TestTruncatedAnswerRetriedOverTCP(t *testing.T) {
	z := newTestZone(t, healthy...)
	var overTCP atomic.Bool
	addr := serveZoneUDPandTCP(t, dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		if _, udp := w.LocalAddr().(*net.UDPAddr); udp {
			m := new(dns.Msg)
			m.SetReply(req)
			m.Truncated = true
			_ = w.WriteMsg(m)
			return
		}
		overTCP.Store(true)
		z.ServeDNS(w, req)
	}))
	r := &resolver{servers: []string{addr}, timeout: time.Second}
	a := r.lookup(context.Background(), "db.lab.test", dns.TypeA)
	if !a.found() || !overTCP.Load() {
		t.Fatalf("truncated answer not retried over TCP: %+v (tcp %v)", a, overTCP.Load())
	}
}
