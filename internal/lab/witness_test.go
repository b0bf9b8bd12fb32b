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

	"go.yaml.in/yaml/v3"

	"github.com/tandem-ha/tandem/internal/config"
)

// automaticLayout is the default lab built with --failover automatic.
func automaticLayout(t *testing.T, subnet string) *Layout {
	t.Helper()
	l, err := NewLayoutFailover("lab", subnet, FailoverAutomatic)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestLayoutWitnessHost(t *testing.T) {
	for _, c := range []struct {
		subnet, ip string
	}{{"", "10.77.0.13"}, {DefaultSubnet6, "fd00:77::13"}, {"172.30.0.0/16", "172.30.0.13"}} {
		l := automaticLayout(t, c.subnet)
		w, ok := l.Witness()
		if !ok {
			t.Fatalf("%q: automatic layout has no witness: %+v", c.subnet, l.Hosts)
		}
		want := Host{Name: "w", Role: RoleWitness, IP: c.ip, FQDN: "w.lab.test", Netns: "lab-w", Veth: "veth-w", MAC: "02:74:6c:00:00:13"}
		if w != want {
			t.Errorf("%q: witness %+v, want %+v", c.subnet, w, want)
		}
		// Last, so that a, b, client and dns keep their places (and tc handles).
		if got := l.HostNames(); !slices.Equal(got, []string{"a", "b", "client", "dns", "w"}) {
			t.Errorf("%q: hosts %v", c.subnet, got)
		}
		if !netipContains(l.Subnet, w.IP) {
			t.Errorf("%q: witness %s outside the subnet %s", c.subnet, w.IP, l.Subnet)
		}
	}

	l := automaticLayout(t, "")
	if got := l.Namespaces(); !slices.Equal(got, []string{"lab-a", "lab-b", "lab-client", "lab-dns", "lab-w", "lab-sw"}) {
		t.Errorf("Namespaces() = %v", got)
	}
	if got := names(l.Nodes()); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("Nodes() = %v: the witness runs no PostgreSQL", got)
	}
	if got := names(l.Daemons()); !slices.Equal(got, []string{"a", "b", "w"}) {
		t.Errorf("Daemons() = %v", got)
	}
	if l.Failover != FailoverAutomatic || !l.Automatic() {
		t.Errorf("failover %q", l.Failover)
	}
	// Every address distinct, every MAC distinct.
	seenIP, seenMAC := map[string]string{l.ClusterIP: "cluster"}, map[string]string{}
	for _, h := range l.Hosts {
		if o, dup := seenIP[h.IP]; dup {
			t.Errorf("%s and %s share %s", h.Name, o, h.IP)
		}
		if o, dup := seenMAC[h.MAC]; dup {
			t.Errorf("%s and %s share MAC %s", h.Name, o, h.MAC)
		}
		seenIP[h.IP], seenMAC[h.MAC] = h.Name, h.Name
	}
	// down removes w's namespace even when the layout is lost.
	if !ownedNamespace("lab", "lab-w") || ownedNamespace("lab", "lab2-w") {
		t.Error("ownedNamespace does not know lab-w")
	}
}

func TestLayoutManualHasNoWitness(t *testing.T) {
	for _, mode := range []string{"", FailoverManual} {
		l, err := NewLayoutFailover("lab", "", mode)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := l.Witness(); ok || l.Failover != FailoverManual || l.Automatic() {
			t.Errorf("mode %q: witness in a manual lab, or failover %q", mode, l.Failover)
		}
		if _, ok := l.Host("w"); ok || len(l.Hosts) != 4 {
			t.Errorf("mode %q: hosts %v", mode, l.HostNames())
		}
	}
	if _, err := NewLayoutFailover("lab", "", "auto"); err == nil || !strings.Contains(err.Error(), "automatic") {
		t.Errorf("NewLayoutFailover(auto) = %v, want an error naming the modes", err)
	}
	for _, bad := range []string{"auto", "Automatic", "quorum"} {
		if CheckFailover(bad) == nil {
			t.Errorf("CheckFailover(%q) accepted", bad)
		}
	}
}

// The mode is recorded in layout.json, which every later command reads:
// a layout read back knows its witness; one written before the mode
// existed is manual.
func TestLayoutRecordsFailover(t *testing.T) {
	b, err := json.Marshal(automaticLayout(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"failover":"automatic"`) {
		t.Errorf("layout JSON lacks the mode: %s", b)
	}
	var back Layout
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if w, ok := back.Witness(); !ok || w.IP != "10.77.0.13" || !back.Automatic() {
		t.Errorf("layout read back: witness %+v %v, automatic %v", w, ok, back.Automatic())
	}
	old, _ := NewLayout("lab", "")
	old.Failover = ""
	b, _ = json.Marshal(old)
	var o Layout
	if err := json.Unmarshal(b, &o); err != nil {
		t.Fatal(err)
	}
	if o.Automatic() || o.Env().Failover != FailoverManual {
		t.Errorf("a layout without the mode is not manual: %+v", o.Env().Failover)
	}
}

func TestWitnessDNSRecords(t *testing.T) {
	for _, c := range []struct{ subnet, ip, arpa string }{
		{"", "10.77.0.13", "13.0.77.10.in-addr.arpa"},
		{DefaultSubnet6, "fd00:77::13", "3.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.7.7.0.0.0.0.d.f.ip6.arpa"},
	} {
		l := automaticLayout(t, c.subnet)
		z := l.DefaultZone()
		if got := z.Forward["w.lab.test"]; !slices.Equal(got, []string{c.ip}) {
			t.Errorf("%q: forward w.lab.test = %v, want %s", c.subnet, got, c.ip)
		}
		if got := z.Reverse[c.ip]; !slices.Equal(got, []string{"w.lab.test"}) {
			t.Errorf("%q: reverse %s = %v, want w.lab.test", c.subnet, c.ip, got)
		}
		conf := z.DnsmasqConf(l.Name)
		for _, want := range []string{"host-record=w.lab.test," + c.ip + "\n", "ptr-record=" + c.arpa + ",w.lab.test\n"} {
			if !strings.Contains(conf, want) {
				t.Errorf("%q: dnsmasq.conf lacks %q:\n%s", c.subnet, want, conf)
			}
		}
		// The server is authoritative for the reverse zone that holds w.
		if !strings.HasSuffix(c.arpa, "."+l.ReverseZone()) {
			t.Errorf("%q: %s is outside the reverse zone %s", c.subnet, c.arpa, l.ReverseZone())
		}
	}
	manual, _ := NewLayout("lab", "")
	if z := manual.DefaultZone(); z.Forward["w.lab.test"] != nil || z.Reverse["10.77.0.13"] != nil {
		t.Errorf("a manual lab serves w: %+v", z)
	}
}

func TestWitnessConfigYAML(t *testing.T) {
	for _, c := range []struct{ subnet, ip, listen string }{
		{"", "10.77.0.13", "10.77.0.13:7400"},
		{DefaultSubnet6, "fd00:77::13", "[fd00:77::13]:7400"},
	} {
		l := automaticLayout(t, c.subnet)
		w, _ := l.Witness()
		text := l.ConfigYAML(w)
		var doc map[string]any
		if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
			t.Fatalf("%q: witness config is not YAML: %v\n%s", c.subnet, err, text)
		}
		keys := make([]string, 0, len(doc))
		for k := range doc {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		// Only what the witness reads: no postgres section.
		if !slices.Equal(keys, []string{"api", "log", "node", "quorum", "state_dir"}) {
			t.Errorf("%q: witness config sections %v:\n%s", c.subnet, keys, text)
		}
		var got WitnessConfig
		if err := yaml.Unmarshal([]byte(text), &got); err != nil {
			t.Fatal(err)
		}
		want := WitnessConfig{
			Node:     config.Node{Name: "w", IP: c.ip},
			API:      config.API{Listen: c.listen},
			StateDir: "/var/lib/tandem-lab/lab/w/state",
			Quorum:   WitnessQuorum{PeerPort: 7410, ClientPort: 7411},
			Log:      config.Log{Level: "info", Format: "text"},
		}
		if got != want {
			t.Errorf("%q: witness config %+v, want %+v", c.subnet, got, want)
		}
		// tandemd --witness reads it as the lab means it: its parser
		// refuses unknown keys, and its witness checks pass.
		cfg := config.Defaults()
		if err := config.Parse([]byte(text), &cfg); err != nil {
			t.Fatalf("%q: tandemd refuses the witness's config: %v\n%s", c.subnet, err, text)
		}
		if err := cfg.ValidateWitness(); err != nil {
			t.Errorf("%q: tandemd --witness would refuse its config: %v\n%s", c.subnet, err, text)
		}
		if cfg.Node.Name != "w" || cfg.Node.IP != c.ip || cfg.API.Listen != c.listen || cfg.StateDir != want.StateDir ||
			cfg.Quorum.PeerPort != QuorumPeerPort || cfg.Quorum.ClientPort != QuorumClientPort {
			t.Errorf("%q: tandemd reads node %+v api %+v state_dir %s quorum %+v", c.subnet, cfg.Node, cfg.API, cfg.StateDir, cfg.Quorum)
		}
	}
}

func TestDaemonCommand(t *testing.T) {
	l := automaticLayout(t, "")
	w, _ := l.Witness()
	a, _ := l.Host("a")
	// A tandemd built alone: the witness runs it with --witness.
	alone := filepath.Join(t.TempDir(), "tandemd")
	if err := os.WriteFile(alone, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if exe, got := l.DaemonCommand(w, alone); exe != alone || !slices.Equal(got, []string{"--witness", "--config", "/var/lib/tandem-lab/lab/w/tandemd.yaml"}) {
		t.Errorf("witness without tandem-witness: %s %v", exe, got)
	}
	// With tandem-witness beside it (scripts/build.sh builds both): that.
	lean := filepath.Join(filepath.Dir(alone), WitnessProgram)
	if err := os.WriteFile(lean, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if exe, got := l.DaemonCommand(w, alone); exe != lean || !slices.Equal(got, []string{"--config", "/var/lib/tandem-lab/lab/w/tandemd.yaml"}) {
		t.Errorf("witness with tandem-witness: %s %v", exe, got)
	}
	if exe, got := l.DaemonCommand(a, alone); exe != alone || !slices.Equal(got, []string{"--config", "/var/lib/tandem-lab/lab/a/tandemd.yaml"}) {
		t.Errorf("node: %s %v", exe, got)
	}
	// Same pid and log scheme as a node's.
	if l.PidPath("w") != "/var/lib/tandem-lab/lab/w/tandemd.pid" || l.LogPath("w") != "/var/lib/tandem-lab/lab/w/tandemd.log" {
		t.Errorf("pid %s log %s", l.PidPath("w"), l.LogPath("w"))
	}
	if !strings.HasPrefix(l.ConfigYAML(a), "# tandemd configuration of node a") {
		t.Errorf("a node's config is not the node config:\n%s", l.ConfigYAML(a))
	}
	if got := l.witnessAssembleArgs(w); !slices.Equal(got, []string{"--failover", "automatic", "--witness", "w.lab.test"}) {
		t.Errorf("assemble args %v", got)
	}
}

func TestEnvWitness(t *testing.T) {
	l := automaticLayout(t, "")
	l.Dir = t.TempDir()
	for host, tok := range map[string]string{"a": "tok-a", "b": "tok-b", "w": "tok-w"} {
		if err := os.MkdirAll(l.StateDir(host), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(l.StateDir(host), TokenFile), []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	b, err := json.Marshal(l.Env())
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Failover string `json:"failover"`
		Nodes    []struct{ Name string }
		Witness  *struct {
			Name, IP, FQDN, API, Token string
			PeerPort                   int `json:"peer_port"`
			ClientPort                 int `json:"client_port"`
		} `json:"witness"`
		Hosts []struct{ Name, Role, IP, FQDN, Netns, MAC string } `json:"hosts"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.Failover != "automatic" || len(got.Nodes) != 2 {
		t.Errorf("failover %q nodes %+v: the witness is not a node", got.Failover, got.Nodes)
	}
	if w := got.Witness; w == nil || w.Name != "w" || w.IP != "10.77.0.13" || w.FQDN != "w.lab.test" ||
		w.API != "https://10.77.0.13:7400" || w.Token != "tok-w" || w.PeerPort != 7410 || w.ClientPort != 7411 {
		t.Errorf("witness %s", b)
	}
	if i := slices.IndexFunc(got.Hosts, func(h struct{ Name, Role, IP, FQDN, Netns, MAC string }) bool { return h.Name == "w" }); i < 0 ||
		got.Hosts[i].Role != "witness" || got.Hosts[i].Netns != "lab-w" || got.Hosts[i].MAC != "02:74:6c:00:00:13" {
		t.Errorf("hosts lack w: %s", b)
	}

	var text strings.Builder
	if err := l.Env().WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"automatic failover", "lab-w", "w.lab.test", "https://10.77.0.13:7400  token tok-w"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text env lacks %q:\n%s", want, text.String())
		}
	}
	var sh strings.Builder
	if err := l.Env().WriteShell(&sh); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"export TANDEM_LAB_FAILOVER='automatic'\n",
		"export TANDEM_LAB_W_IP='10.77.0.13'\n",
		"export TANDEM_LAB_W_API='https://10.77.0.13:7400'\n",
		"export TANDEM_TOKEN_W='tok-w'\n",
	} {
		if !strings.Contains(sh.String(), want) {
			t.Errorf("shell env lacks %q:\n%s", want, sh.String())
		}
	}

	manual, _ := NewLayout("lab", "")
	manual.Dir = t.TempDir()
	b, _ = json.Marshal(manual.Env())
	if strings.Contains(string(b), `"witness"`) || !strings.Contains(string(b), `"failover":"manual"`) {
		t.Errorf("manual lab env: %s", b)
	}
	sh.Reset()
	_ = manual.Env().WriteShell(&sh)
	if strings.Contains(sh.String(), "_W_") || strings.Contains(sh.String(), "TANDEM_TOKEN_W") {
		t.Errorf("manual lab shell env has a witness:\n%s", sh.String())
	}
}

// A partition between w and a node is a filter on each side dropping the
// other's MAC, at w's own fixed place (priority 104).
func TestTCPlanWitnessPartition(t *testing.T) {
	l := automaticLayout(t, "")
	f := &Faults{}
	f.cut("w", "a", false)
	wMAC, _ := net.ParseMAC("02:74:6c:00:00:13")
	aMAC, _ := net.ParseMAC("02:74:6c:00:00:11")
	steps, err := l.tcPlan(f, "a")
	if err != nil {
		t.Fatal(err)
	}
	drop := "filter replace dev eth0 ingress protocol all pref 104 handle 1 bpf da bytecode " + dropFromProgram(wMAC)
	if got := planStrings(steps); !slices.Contains(got, drop) {
		t.Errorf("plan for a lacks the drop of w's frames:\n%s", strings.Join(got, "\n"))
	}
	steps, _ = l.tcPlan(f, "w")
	drop = "filter replace dev eth0 ingress protocol all pref 100 handle 1 bpf da bytecode " + dropFromProgram(aMAC)
	if got := planStrings(steps); !slices.Contains(got, drop) {
		t.Errorf("plan for w lacks the drop of a's frames:\n%s", strings.Join(got, "\n"))
	}
	// One way: only w drops what a sends.
	f = &Faults{}
	f.cut("a", "w", true)
	steps, _ = l.tcPlan(f, "a")
	if got := planStrings(steps); len(got) != 2 || got[0] != "qdisc del dev eth0 clsact  [ok if missing]" {
		t.Errorf("plan for a with a one-way cut toward w:\n%s", strings.Join(got, "\n"))
	}
	if f.Summary()[0] != "partition: a cannot reach w (one way)" {
		t.Errorf("summary %q", f.Summary())
	}
}

func TestKeepConsoleTokenKeepsOthers(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "console")
	if err := KeepConsoleToken(dir, "a.lab.test:7400", "tok-a"); err != nil {
		t.Fatal(err)
	}
	if err := KeepConsoleToken(dir, "w.lab.test:7400", "tok-w"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "tokens.json"))
	if err != nil {
		t.Fatal(err)
	}
	var got consoleTokens
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.ByAddress["a.lab.test:7400"] != "tok-a" || got.ByAddress["w.lab.test:7400"] != "tok-w" {
		t.Errorf("tokens.json %s", b)
	}
	for p, mode := range map[string]os.FileMode{dir: 0o700, filepath.Join(dir, "tokens.json"): 0o600} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s: mode %v (%v), want %v", p, fi.Mode().Perm(), err, mode)
		}
	}
	l := automaticLayout(t, "")
	if w, _ := l.Witness(); l.WitnessEndpoint(w) != "w.lab.test:7400" {
		t.Errorf("witness endpoint %s", l.WitnessEndpoint(w))
	}
}

func names(hs []Host) []string {
	var out []string
	for _, h := range hs {
		out = append(out, h.Name)
	}
	return out
}

func netipContains(prefix, addr string) bool {
	return netip.MustParsePrefix(prefix).Contains(netip.MustParseAddr(addr))
}
