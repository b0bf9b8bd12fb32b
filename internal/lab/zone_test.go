package lab

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/tandem-ha/tandem/internal/config"
)

func TestNewLayoutIPv6(t *testing.T) {
	l, err := NewLayout("six", DefaultSubnet6)
	if err != nil {
		t.Fatal(err)
	}
	if !l.IPv6() || l.Family() != "ipv6" || l.Subnet != "fd00:77::/64" || l.PrefixLen() != 64 {
		t.Errorf("family %s subnet %s", l.Family(), l.Subnet)
	}
	if l.ClusterIP != "fd00:77::10" || l.ClusterPrefix() != "fd00:77::10/64" || l.DNSServer != "fd00:77::53" {
		t.Errorf("cluster %s (%s) dns %s", l.ClusterIP, l.ClusterPrefix(), l.DNSServer)
	}
	for name, ip := range map[string]string{"a": "fd00:77::11", "b": "fd00:77::12", "client": "fd00:77::100", "dns": "fd00:77::53"} {
		if h, _ := l.Host(name); h.IP != ip || l.HostPrefix(h) != ip+"/64" {
			t.Errorf("host %s = %s (%s), want %s", name, h.IP, l.HostPrefix(h), ip)
		}
	}
	if got := l.ReverseZone(); got != "0.0.0.0.0.0.0.0.7.7.0.0.0.0.d.f.ip6.arpa" {
		t.Errorf("ReverseZone = %s", got)
	}
	if got, _ := NewLayout("six", "fd00:77:1::/48"); got.ReverseZone() != "1.0.0.0.7.7.0.0.0.0.d.f.ip6.arpa" {
		t.Errorf("ReverseZone(/48) = %s", got.ReverseZone())
	}
	// A node's config uses its IPv6 node IP; the API URL brackets it.
	b, _ := l.Host("b")
	var c config.Config
	if err := config.Parse([]byte(l.NodeConfigYAML(b)), &c); err != nil {
		t.Fatalf("tandemd would refuse the IPv6 lab's config: %v", err)
	}
	if c.Node.IP != "fd00:77::12" || APIURL(b) != "https://[fd00:77::12]:7400" {
		t.Errorf("node ip %s api %s", c.Node.IP, APIURL(b))
	}
	args := l.DnsmasqArgs()
	if !slices.Contains(args, "--listen-address=fd00:77::53") || !slices.Contains(args, "--local=/"+l.ReverseZone()+"/") {
		t.Errorf("dnsmasq args %v", args)
	}
	conf := l.DefaultZone().DnsmasqConf(l.Name)
	for _, want := range []string{
		"host-record=db.six.test,fd00:77::10\n",
		"host-record=b.six.test,fd00:77::12\n",
		"ptr-record=2.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.7.7.0.0.0.0.d.f.ip6.arpa,b.six.test\n",
	} {
		if !strings.Contains(conf, want) {
			t.Errorf("IPv6 records lack %q:\n%s", want, conf)
		}
	}
	if rc := l.ResolvConf(); !strings.Contains(rc, "\nnameserver fd00:77::53\n") {
		t.Errorf("resolv.conf:\n%s", rc)
	}
}

func TestLayoutMACs(t *testing.T) {
	for _, subnet := range []string{"", DefaultSubnet6} {
		l, _ := NewLayout("lab", subnet)
		want := map[string]string{"a": "02:74:6c:00:00:11", "b": "02:74:6c:00:00:12", "client": "02:74:6c:00:01:00", "dns": "02:74:6c:00:00:53"}
		for name, mac := range want {
			if h, _ := l.Host(name); h.MAC != mac {
				t.Errorf("%s: MAC of %s = %s, want %s", subnet, name, h.MAC, mac)
			}
		}
	}
}

func TestHostAddrCarries(t *testing.T) {
	l, err := NewLayout("lab", "10.77.0.200/25")
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := l.Host("client"); c.IP != "10.77.0.228" || l.Subnet != "10.77.0.128/25" {
		t.Errorf("client %s subnet %s", c.IP, l.Subnet)
	}
	l, _ = NewLayout("lab", "10.77.0.0/16")
	if c, _ := l.Host("client"); c.IP != "10.77.0.100" {
		t.Errorf("client %s", c.IP)
	}
}

func TestQualifyName(t *testing.T) {
	l, _ := NewLayout("lab", "")
	for in, want := range map[string]string{
		"b":             "b.lab.test",
		"DB":            "db.lab.test",
		"db.lab.test.":  "db.lab.test",
		"elsewhere.org": "elsewhere.org",
		"_x.lab.test":   "_x.lab.test",
	} {
		if got, err := l.QualifyName(in); err != nil || got != want {
			t.Errorf("QualifyName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", ".", "a..b", "-a", "a b", "10.77.0.1/24", "é.lab.test"} {
		if got, err := l.QualifyName(bad); err == nil {
			t.Errorf("QualifyName(%q) = %q, want an error", bad, got)
		}
	}
	for in, want := range map[string]string{"10.77.0.12": "10.77.0.12", "FD00:77::12": "fd00:77::12", "::ffff:10.0.0.1": "10.0.0.1"} {
		if got, err := ParseRecordIP(in); err != nil || got != want {
			t.Errorf("ParseRecordIP(%q) = %q, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "b", "10.77.0.12/24", "fe80::1%eth0"} {
		if _, err := ParseRecordIP(bad); err == nil {
			t.Errorf("ParseRecordIP(%q) accepted", bad)
		}
	}
}

func TestZoneEdits(t *testing.T) {
	l, _ := NewLayout("lab", "")
	z := l.DefaultZone()

	// A missing PTR: b keeps its A record; dnsmasq must then serve b with
	// address= (host-record would bring the PTR back).
	z.SetPTR("10.77.0.12", "")
	conf := z.DnsmasqConf("lab")
	if !strings.Contains(conf, "address=/b.lab.test/10.77.0.12\n") || strings.Contains(conf, "b.lab.test,10.77.0.12") ||
		strings.Contains(conf, "12.0.77.10.in-addr.arpa") {
		t.Errorf("b without PTR:\n%s", conf)
	}
	z.SetPTR("10.77.0.12", "b.lab.test")

	// The cluster name pointing elsewhere: the old PTR naming it goes too.
	z.Set("db.lab.test", []string{"10.77.0.99"}, true)
	if got := z.Forward["db.lab.test"]; !slices.Equal(got, []string{"10.77.0.99"}) {
		t.Errorf("db = %v", got)
	}
	if _, ok := z.Reverse["10.77.0.10"]; ok || !slices.Equal(z.Reverse["10.77.0.99"], []string{"db.lab.test"}) {
		t.Errorf("reverse after set: %v", z.Reverse)
	}
	conf = z.DnsmasqConf("lab")
	if !strings.Contains(conf, "host-record=db.lab.test,10.77.0.99\n") || !strings.Contains(conf, "ptr-record=99.0.77.10.in-addr.arpa,db.lab.test\n") {
		t.Errorf("db moved:\n%s", conf)
	}

	// Forward only, two addresses, one of the other family.
	z.Set("x.lab.test", []string{"10.77.0.31", "fd00::31", "10.77.0.31"}, false)
	if got := z.Forward["x.lab.test"]; !slices.Equal(got, []string{"10.77.0.31", "fd00::31"}) {
		t.Errorf("x = %v", got)
	}
	conf = z.DnsmasqConf("lab")
	if !strings.Contains(conf, "address=/x.lab.test/10.77.0.31\n") || !strings.Contains(conf, "address=/x.lab.test/fd00::31\n") {
		t.Errorf("x forward only:\n%s", conf)
	}

	// A PTR pointing at another name takes over the host's own.
	z.SetPTR("10.77.0.11", "elsewhere.lab.test")
	conf = z.DnsmasqConf("lab")
	if !strings.Contains(conf, "host-record=a.lab.test,10.77.0.11\n") || !strings.Contains(conf, "ptr-record=11.0.77.10.in-addr.arpa,elsewhere.lab.test\n") ||
		strings.Contains(conf, "ptr-record=11.0.77.10.in-addr.arpa,a.lab.test") {
		t.Errorf("a's PTR elsewhere:\n%s", conf)
	}

	// Remove takes the name out of both directions.
	if !z.Remove("b.lab.test") || z.Remove("b.lab.test") {
		t.Error("Remove reported wrongly")
	}
	if _, ok := z.Forward["b.lab.test"]; ok {
		t.Error("b still has forward records")
	}
	if _, ok := z.Reverse["10.77.0.12"]; ok {
		t.Error("b's PTR is still there")
	}
	if c := z.DnsmasqConf("lab"); strings.Contains(c, "=b.lab.test") || strings.Contains(c, "/b.lab.test/") || strings.Contains(c, ",b.lab.test") {
		t.Errorf("b still served:\n%s", z.DnsmasqConf("lab"))
	}

	// The zone survives a round trip through its JSON file format.
	b, _ := json.Marshal(z)
	var back Zone
	if err := json.Unmarshal(b, &back); err != nil || back.DnsmasqConf("lab") != z.DnsmasqConf("lab") {
		t.Errorf("round trip: %v\n%s", err, b)
	}
	lines := strings.Join(z.Lines(), "\n")
	for _, want := range []string{"a.lab.test\tA\t10.77.0.11", "x.lab.test\tAAAA\tfd00::31", "10.77.0.99\tPTR\tdb.lab.test"} {
		if !strings.Contains(lines, want) {
			t.Errorf("Lines lack %q:\n%s", want, lines)
		}
	}
}

func TestEnvFaults(t *testing.T) {
	l, _ := NewLayout("lab", "")
	l.Dir = t.TempDir()
	e := l.Env()
	if e.Family != "ipv4" || e.ClusterPrefix != "10.77.0.10/24" || len(e.Faults) != 0 || e.Hosts[0].MAC != "02:74:6c:00:00:11" {
		t.Errorf("env %+v", e)
	}
	f := &Faults{}
	f.setOff("b", true)
	f.cut("a", "client", false)
	if err := l.SaveFaults(f); err != nil {
		t.Fatal(err)
	}
	e = l.Env()
	if !slices.Equal(e.Faults, []string{"host b is powered off", "partition between a and client"}) {
		t.Errorf("env faults %q", e.Faults)
	}
	var text strings.Builder
	_ = e.WriteText(&text)
	if !strings.Contains(text.String(), "host b is powered off") {
		t.Errorf("text env lacks the faults:\n%s", text.String())
	}
}
