package lab

import (
	"encoding/json"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func crossLayout(t *testing.T, spec Spec) *Layout {
	t.Helper()
	if spec.Name == "" {
		spec.Name = "lab"
	}
	spec.CrossSubnet = true
	l, err := PlanLayout(spec)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestCrossSubnetLayout(t *testing.T) {
	l := crossLayout(t, Spec{})
	if !l.CrossSubnet || l.Subnet != DefaultCrossSubnet || l.RouterNetns != "lab-r" || l.SwitchNetns != "lab-sw" {
		t.Errorf("cross %v subnet %s router %s switch %s", l.CrossSubnet, l.Subnet, l.RouterNetns, l.SwitchNetns)
	}
	// No cluster IP in a cross-subnet cluster; the name stays.
	if l.ClusterIP != "" || l.ClusterPrefix() != "" || l.DNSName != "db.lab.test" {
		t.Errorf("cluster IP %q prefix %q name %s", l.ClusterIP, l.ClusterPrefix(), l.DNSName)
	}
	wantSeg := []Segment{
		{Name: "a", Subnet: "10.77.1.0/24", Bridge: "br1", Gateway: "10.77.1.1", RouterIface: "eth1", RouterVeth: "veth-r1", RouterMAC: "02:74:6c:00:fe:01"},
		{Name: "b", Subnet: "10.77.2.0/24", Bridge: "br2", Gateway: "10.77.2.1", RouterIface: "eth2", RouterVeth: "veth-r2", RouterMAC: "02:74:6c:00:fe:02"},
		{Name: "client", Subnet: "10.77.3.0/24", Bridge: "br3", Gateway: "10.77.3.1", RouterIface: "eth3", RouterVeth: "veth-r3", RouterMAC: "02:74:6c:00:fe:03"},
	}
	if !slices.Equal(l.Segments, wantSeg) {
		t.Errorf("segments\n%+v\nwant\n%+v", l.Segments, wantSeg)
	}
	want := map[string][3]string{ // ip, subnet, bridge
		"a":      {"10.77.1.11", "10.77.1.0/24", "br1"},
		"b":      {"10.77.2.12", "10.77.2.0/24", "br2"},
		"client": {"10.77.3.100", "10.77.3.0/24", "br3"},
		"dns":    {"10.77.3.53", "10.77.3.0/24", "br3"},
	}
	if got := l.HostNames(); !slices.Equal(got, []string{"a", "b", "client", "dns"}) {
		t.Errorf("hosts %v", got)
	}
	for name, w := range want {
		h, _ := l.Host(name)
		seg, _ := l.segmentOf(h)
		if h.IP != w[0] || h.Subnet != w[1] || l.bridgeOf(h) != w[2] || h.Gateway != seg.Gateway || h.Netns != "lab-"+name {
			t.Errorf("host %s = %+v (bridge %s), want %v", name, h, l.bridgeOf(h), w)
		}
		if got := l.HostPrefix(h); got != w[0]+"/24" {
			t.Errorf("HostPrefix(%s) = %s", name, got)
		}
		if !netipContains(h.Subnet, h.Gateway) {
			t.Errorf("host %s: gateway %s outside its subnet %s", name, h.Gateway, h.Subnet)
		}
	}
	if l.DNSServer != "10.77.3.53" {
		t.Errorf("DNS server %s", l.DNSServer)
	}
	// What issue 14 is about: the nodes share no subnet.
	a, _ := l.Host("a")
	b, _ := l.Host("b")
	pa, pb := netip.MustParsePrefix(a.Subnet), netip.MustParsePrefix(b.Subnet)
	if pa.Overlaps(pb) || pa.Contains(netip.MustParseAddr(b.IP)) || pb.Contains(netip.MustParseAddr(a.IP)) {
		t.Errorf("a (%s in %s) and b (%s in %s) share a subnet", a.IP, a.Subnet, b.IP, b.Subnet)
	}
	if got := l.Namespaces(); !slices.Equal(got, []string{"lab-a", "lab-b", "lab-client", "lab-dns", "lab-r", "lab-sw"}) {
		t.Errorf("Namespaces() = %v", got)
	}
	for _, ns := range l.Namespaces() {
		if !ownedNamespace("lab", ns) {
			t.Errorf("down would not remove %s", ns)
		}
	}
	macs := map[string]string{}
	for _, h := range l.Hosts {
		macs[h.MAC] = h.Name
	}
	for _, s := range l.Segments {
		if o, dup := macs[s.RouterMAC]; dup {
			t.Errorf("the router's port on %s shares MAC %s with %s", s.Name, s.RouterMAC, o)
		}
		macs[s.RouterMAC] = "router"
		if len(s.RouterVeth) > 15 || len(s.Bridge) > 15 {
			t.Errorf("interface names too long: %+v", s)
		}
	}
	if got := l.ReverseZones(); !slices.Equal(got, []string{"1.77.10.in-addr.arpa", "2.77.10.in-addr.arpa", "3.77.10.in-addr.arpa"}) {
		t.Errorf("reverse zones %v", got)
	}
	// The layout round-trips through layout.json, as later commands read it.
	raw, _ := json.Marshal(l)
	var back Layout
	if err := json.Unmarshal(raw, &back); err != nil || !back.CrossSubnet || len(back.Segments) != 3 || back.Hosts[0].Gateway != "10.77.1.1" {
		t.Errorf("layout.json round trip: %v %s", err, raw)
	}
}

func TestCrossSubnetLayoutShapes(t *testing.T) {
	l := crossLayout(t, Spec{Failover: FailoverAutomatic})
	w, ok := l.Witness()
	if !ok || w.IP != "10.77.3.13" || w.Subnet != "10.77.3.0/24" || w.Gateway != "10.77.3.1" {
		t.Errorf("witness %+v (ok %v): want it in the client's subnet", w, ok)
	}
	l = crossLayout(t, Spec{Failover: FailoverAutomatic, ExternalEtcd: true})
	if got := strings.Join(l.EtcdEndpoints(), ","); got != "https://10.77.3.21:2379,https://10.77.3.22:2379,https://10.77.3.23:2379" {
		t.Errorf("etcd endpoints %s", got)
	}
	l = crossLayout(t, Spec{Subnet: "172.30.9.9/16"})
	if a, _ := l.Host("a"); l.Subnet != "172.30.0.0/16" || a.IP != "172.30.1.11" || l.Segments[2].Subnet != "172.30.3.0/24" {
		t.Errorf("172.30.0.0/16: subnet %s a %s segments %+v", l.Subnet, a.IP, l.Segments)
	}
	// A /22 holds exactly the four /24s used.
	l = crossLayout(t, Spec{Subnet: "10.0.4.0/22"})
	if b, _ := l.Host("b"); b.IP != "10.0.6.12" || l.DNSServer != "10.0.7.53" {
		t.Errorf("10.0.4.0/22: b %s dns %s", b.IP, l.DNSServer)
	}
	for subnet, says := range map[string]string{
		"10.77.0.0/23":        "/8 to /22",
		"10.77.0.0/24":        "/8 to /22",
		"fd00:77::/64":        "IPv4 lab only",
		"10.77.0.0":           "IPv4 prefix",
		"fe80::1%x/64":        "IPv4 prefix",
		"::ffff:10.0.0.0/104": "IPv4 prefix",
	} {
		_, err := PlanLayout(Spec{Name: "lab", Subnet: subnet, CrossSubnet: true})
		if err == nil || !strings.Contains(err.Error(), says) {
			t.Errorf("--cross-subnet --subnet %s: %v, want an error saying %q", subnet, err, says)
		}
	}
	// The default lab is untouched by the mode.
	d, _ := NewLayout("lab", "")
	if d.CrossSubnet || d.RouterNetns != "" || len(d.Segments) != 0 || d.Hosts[0].Subnet != "" || d.Hosts[0].Gateway != "" {
		t.Errorf("default layout has cross-subnet parts: %+v", d)
	}
}

// The zone of a cross-subnet lab has no record for the cluster name: it
// gets one when a primary points it at itself.
func TestCrossSubnetDefaultZone(t *testing.T) {
	l := crossLayout(t, Spec{})
	z := l.DefaultZone()
	if _, ok := z.Forward["db.lab.test"]; ok {
		t.Errorf("db.lab.test has a record before any primary: %v", z.Forward)
	}
	if got := z.Forward["b.lab.test"]; !slices.Equal(got, []string{"10.77.2.12"}) {
		t.Errorf("b.lab.test → %v", got)
	}
	if got := z.Reverse["10.77.1.11"]; !slices.Equal(got, []string{"a.lab.test"}) {
		t.Errorf("PTR of 10.77.1.11 → %v", got)
	}
}

func TestCrossSubnetEnv(t *testing.T) {
	l := crossLayout(t, Spec{})
	l.Dir = t.TempDir()
	raw, err := json.Marshal(l.Env())
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		ClusterIP   string `json:"cluster_ip"`
		DNSServer   string `json:"dns_server"`
		CrossSubnet bool   `json:"cross_subnet"`
		Router      string `json:"router"`
		Segments    []struct{ Name, Subnet, Gateway string }
		DNSUpdate   *struct {
			Software  string            `json:"software"`
			Server    string            `json:"server"`
			Zone      string            `json:"zone"`
			KeyName   string            `json:"key_name"`
			Algorithm string            `json:"algorithm"`
			KeyFiles  map[string]string `json:"key_files"`
		} `json:"dns_update"`
		Hosts []struct{ Name, Subnet, Gateway string }
	}
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	if got.ClusterIP != "" || got.DNSServer != "10.77.3.53" || !got.CrossSubnet || got.Router != "lab-r" || len(got.Segments) != 3 {
		t.Errorf("env %s", raw)
	}
	u := got.DNSUpdate
	if u == nil || u.Software != "bind9" || u.Server != "10.77.3.53" || u.Zone != "lab.test" || u.KeyName != "tandemd-lab" ||
		u.Algorithm != "hmac-sha256" || u.KeyFiles["a"] != filepath.Join(l.Dir, "a", DNSKeyFile) || u.KeyFiles["b"] != filepath.Join(l.Dir, "b", DNSKeyFile) {
		t.Errorf("dns_update %+v", u)
	}
	if got.Hosts[1].Name != "b" || got.Hosts[1].Subnet != "10.77.2.0/24" || got.Hosts[1].Gateway != "10.77.2.1" {
		t.Errorf("hosts %+v", got.Hosts)
	}
	var sh strings.Builder
	if err := l.Env().WriteShell(&sh); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"export TANDEM_LAB_CROSS_SUBNET='1'\n",
		"export TANDEM_LAB_DNS_KEY_NAME='tandemd-lab'\n",
		"export TANDEM_LAB_DNS_KEY_ALGORITHM='hmac-sha256'\n",
		"export TANDEM_LAB_A_DNS_KEY_FILE='" + filepath.Join(l.Dir, "a", DNSKeyFile) + "'\n",
		"export TANDEM_LAB_DNS_ZONE='lab.test'\n",
	} {
		if !strings.Contains(sh.String(), want) {
			t.Errorf("shell env lacks %q:\n%s", want, sh.String())
		}
	}
	var text strings.Builder
	if err := l.Env().WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"cross-subnet", "10.77.2.0/24", "router lab-r", "tandemd-lab", "hmac-sha256", filepath.Join(l.Dir, "b", DNSKeyFile), "no cluster IP"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text env lacks %q:\n%s", want, text.String())
		}
	}
	// The default lab's env says nothing of the mode.
	d, _ := NewLayout("lab", "")
	d.Dir = t.TempDir()
	raw, _ = json.Marshal(d.Env())
	for _, bad := range []string{"cross_subnet", "dns_update", "segments", "gateway", "router"} {
		if strings.Contains(string(raw), bad) {
			t.Errorf("default lab env holds %q: %s", bad, raw)
		}
	}
	sh.Reset()
	_ = d.Env().WriteShell(&sh)
	if strings.Contains(sh.String(), "DNS_KEY") || strings.Contains(sh.String(), "CROSS_SUBNET") {
		t.Errorf("default lab shell env has cross-subnet lines:\n%s", sh.String())
	}
}

// ipFrame is an Ethernet frame carrying an IPv4 header from src to dst
// (or, with etherType 0x0806, an ARP payload of the same length).
func ipFrame(src, dst string, etherType uint16) []byte {
	b := make([]byte, 14+20)
	copy(b[0:6], []byte{0x02, 0x74, 0x6c, 0x00, 0xfe, 0x02}) // the router's MAC, as across it
	copy(b[6:12], []byte{0x02, 0x74, 0x6c, 0x00, 0xfe, 0x01})
	b[12], b[13] = byte(etherType>>8), byte(etherType)
	b[14] = 0x45
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(b[26:30], s[:])
	copy(b[30:34], d[:])
	return b
}

func TestIPPrograms(t *testing.T) {
	a := netip.MustParseAddr("10.77.1.11")
	drop := dropFromIPProgram(a)
	to := toIPProgram(a)
	for _, c := range []struct {
		pkt      []byte
		from, to bool
	}{
		{ipFrame("10.77.1.11", "10.77.2.12", 0x0800), true, false},
		{ipFrame("10.77.2.12", "10.77.1.11", 0x0800), false, true},
		{ipFrame("10.77.1.12", "10.77.2.12", 0x0800), false, false}, // a neighbour of a
		{ipFrame("11.77.1.11", "10.77.2.12", 0x0800), false, false},
		{ipFrame("10.77.1.11", "10.77.1.11", 0x0806), false, false}, // not IPv4
		{ipFrame("10.77.1.11", "10.77.1.11", 0x86dd), false, false},
	} {
		got := runProgram(t, drop, c.pkt)
		if (got == tcActShot) != c.from || (!c.from && got != tcActUnspec) {
			t.Errorf("drop-from-a on %x: verdict %d, drop want %v", c.pkt[12:34], got, c.from)
		}
		if got := runProgram(t, to, c.pkt); (got != 0) != c.to {
			t.Errorf("to-a on %x: verdict %d, classify want %v", c.pkt[12:34], got, c.to)
		}
	}
}

// Across the router, a partition and a degraded link match the peer's
// address (every frame there has the router's MAC); within a segment
// they match its MAC, as in the default lab.
func TestTCPlanCrossSubnet(t *testing.T) {
	l := crossLayout(t, Spec{})
	f := &Faults{}
	f.cut("a", "b", false)
	f.cut("dns", "client", true)
	f.setLink("b", "client", Netem{Delay: 100_000_000})
	steps, err := l.tcPlan(f, "b")
	if err != nil {
		t.Fatal(err)
	}
	got := planStrings(steps)
	dropA := "filter replace dev eth0 ingress protocol all pref 100 handle 1 bpf da bytecode " + dropFromIPProgram(netip.MustParseAddr("10.77.1.11"))
	toClient := "filter replace dev eth0 parent 1: protocol all pref 102 handle 1 bpf bytecode " + toIPProgram(netip.MustParseAddr("10.77.3.100")) + " classid 1:12"
	for _, want := range []string{dropA, toClient} {
		if !slices.Contains(got, want) {
			t.Errorf("plan for b lacks %q:\n%s", want, strings.Join(got, "\n"))
		}
	}
	steps, _ = l.tcPlan(f, "client")
	dnsMAC, _ := net.ParseMAC("02:74:6c:00:00:53")
	got = planStrings(steps)
	dropDNS := "filter replace dev eth0 ingress protocol all pref 103 handle 1 bpf da bytecode " + dropFromProgram(dnsMAC)
	toB := "filter replace dev eth0 parent 1: protocol all pref 101 handle 1 bpf bytecode " + toIPProgram(netip.MustParseAddr("10.77.2.12")) + " classid 1:11"
	for _, want := range []string{dropDNS, toB} {
		if !slices.Contains(got, want) {
			t.Errorf("plan for client lacks %q:\n%s", want, strings.Join(got, "\n"))
		}
	}
}

// The key file is one internal/dnsupdate reads, and only root reads it;
// every copy holds the same key.
func TestWriteNamedFiles(t *testing.T) {
	l := crossLayout(t, Spec{})
	l.Dir = t.TempDir()
	if err := writeNamedFiles(l); err != nil {
		t.Fatal(err)
	}
	var first string
	for _, p := range []string{l.NamedKeyPath(), l.DNSKeyPath("a"), l.DNSKeyPath("b")} {
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v (%v), want 0600", p, fi.Mode().Perm(), err)
			continue
		}
		b, _ := os.ReadFile(p)
		if first == "" {
			first = string(b)
		}
		if string(b) != first {
			t.Errorf("%s holds another key than %s", p, l.NamedKeyPath())
		}
	}
	if !strings.HasPrefix(first, `key "tandemd-lab" {`) || !strings.Contains(first, "algorithm hmac-sha256;") {
		t.Errorf("key statement:\n%s", first)
	}
	if b, err := os.ReadFile(l.NamedConfPath()); err != nil || string(b) != l.NamedConf() {
		t.Errorf("named.conf: %v\n%s", err, b)
	}
	// A second up makes a new key.
	if err := writeNamedFiles(l); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(l.DNSKeyPath("a")); string(b) == first {
		t.Error("the TSIG key is the same after a second up")
	}
}
