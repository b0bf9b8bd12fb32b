package lab

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandem-ha/tandem/internal/dnsupdate"
)

// bindTool finds one of BIND's checking programs (Debian's bind9-utils,
// which bind9 depends on). They are BIND's own parsers: what they accept,
// named loads.
func bindTool(t *testing.T, name string) string {
	t.Helper()
	if p, err := lookTool(name); err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (Debian's bind9-utils) is required in CI", name)
	}
	t.Skipf("%s not found: install bind9 (apt-get install --no-install-recommends bind9) to check the lab's BIND files", name)
	return ""
}

// writeBIND writes everything the lab's named reads into a fresh lab
// directory: named.conf, the key, and the zone files of z.
func writeBIND(t *testing.T, l *Layout, z *Zone) []ZoneFile {
	t.Helper()
	if err := writeNamedFiles(l); err != nil {
		t.Fatal(err)
	}
	files, err := z.BINDZones(l, 2024010101)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if err := os.WriteFile(f.Path, []byte(f.Text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return files
}

func checkBIND(t *testing.T, l *Layout, files []ZoneFile) {
	t.Helper()
	// -z also loads every zone, as named would at start.
	if out, err := exec.Command(bindTool(t, "named-checkconf"), "-z", l.NamedConfPath()).CombinedOutput(); err != nil {
		t.Errorf("named-checkconf -z refuses the lab's named.conf: %v\n%s\n%s", err, out, l.NamedConf())
	}
	for _, f := range files {
		// The forward zone loads with check-integrity off (named.conf says
		// why); the checks of a healthy zone stay on here.
		if out, err := exec.Command(bindTool(t, "named-checkzone"), "-k", "fail", "-n", "fail", f.Zone, f.Path).CombinedOutput(); err != nil {
			t.Errorf("named-checkzone refuses zone %s: %v\n%s\n%s", f.Zone, err, out, f.Text)
		}
	}
}

func TestNamedConf(t *testing.T) {
	l := crossLayout(t, Spec{})
	conf := l.NamedConf()
	for _, want := range []string{
		"listen-on port 53 { 10.77.3.53; };",
		"listen-on-v6 { none; };",
		"recursion no;",
		"notify no;",
		"allow-transfer { none; };",
		"controls { };",
		`include "/var/lib/tandem-lab/lab/named/update.key";`,
		`zone "lab.test" {`,
		`allow-update { key "tandemd-lab"; };`,
		`zone "1.77.10.in-addr.arpa" {`,
		`zone "2.77.10.in-addr.arpa" {`,
		`zone "3.77.10.in-addr.arpa" {`,
		`pid-file "/var/lib/tandem-lab/lab/named/named.pid";`,
	} {
		if !strings.Contains(conf, want) {
			t.Errorf("named.conf lacks %q:\n%s", want, conf)
		}
	}
	// Only the forward zone takes updates, and nothing is forwarded out.
	if strings.Count(conf, "allow-update") != 1 || strings.Contains(conf, "forwarders") {
		t.Errorf("named.conf:\n%s", conf)
	}
	if got := strings.Join(l.NamedArgs(), " "); got != "-g -4 -n 1 -c /var/lib/tandem-lab/lab/named/named.conf" {
		t.Errorf("named args %s", got)
	}

	l.Dir = t.TempDir()
	checkBIND(t, l, writeBIND(t, l, l.DefaultZone()))
}

func TestBINDZones(t *testing.T) {
	l := crossLayout(t, Spec{Failover: FailoverAutomatic})
	files, err := l.DefaultZone().BINDZones(l, 7)
	if err != nil {
		t.Fatal(err)
	}
	text := map[string]string{}
	for _, f := range files {
		text[f.Zone] = f.Text
		if f.Path != filepath.Join(l.Dir, "named", f.Zone+".zone") {
			t.Errorf("zone %s at %s", f.Zone, f.Path)
		}
	}
	if len(files) != 4 {
		t.Fatalf("zones %v, want the forward zone and three reverse zones", files)
	}
	for zone, lines := range map[string][]string{
		"lab.test": {
			"lab.test.\tIN\tSOA\tdns.lab.test. hostmaster.lab.test. 7 60 30 600 5\n",
			"lab.test.\tIN\tNS\tdns.lab.test.\n",
			"a.lab.test.\tIN\tA\t10.77.1.11\n",
			"b.lab.test.\tIN\tA\t10.77.2.12\n",
			"client.lab.test.\tIN\tA\t10.77.3.100\n",
			"dns.lab.test.\tIN\tA\t10.77.3.53\n",
			"w.lab.test.\tIN\tA\t10.77.3.13\n",
		},
		"1.77.10.in-addr.arpa": {"11.1.77.10.in-addr.arpa.\tIN\tPTR\ta.lab.test.\n"},
		"2.77.10.in-addr.arpa": {"12.2.77.10.in-addr.arpa.\tIN\tPTR\tb.lab.test.\n"},
		"3.77.10.in-addr.arpa": {
			"100.3.77.10.in-addr.arpa.\tIN\tPTR\tclient.lab.test.\n",
			"53.3.77.10.in-addr.arpa.\tIN\tPTR\tdns.lab.test.\n",
			"13.3.77.10.in-addr.arpa.\tIN\tPTR\tw.lab.test.\n",
		},
	} {
		for _, line := range lines {
			if !strings.Contains(text[zone], line) {
				t.Errorf("zone %s lacks %q:\n%s", zone, line, text[zone])
			}
		}
	}
	if strings.Contains(text["lab.test"], "db.lab.test") {
		t.Errorf("the cluster name has a record before any primary:\n%s", text["lab.test"])
	}
	if strings.Contains(text["1.77.10.in-addr.arpa"], "b.lab.test") {
		t.Errorf("b's PTR is in a's reverse zone:\n%s", text["1.77.10.in-addr.arpa"])
	}
}

// `lab dns` edits render into BIND zones as into dnsmasq's records; what
// BIND cannot hold (a name outside the lab's domain, a PTR outside its
// reverse zones) is refused with what it can.
func TestBINDZonesEdits(t *testing.T) {
	l := crossLayout(t, Spec{})
	z := l.DefaultZone()
	z.Set("db.lab.test", []string{"10.77.1.11"}, false)
	z.SetPTR("10.77.2.12", "")                       // b loses its PTR
	z.Set("a.lab.test", []string{"fd00::11"}, false) // a record of the wrong family
	l.Dir = t.TempDir()
	files := writeBIND(t, l, z)
	checkBIND(t, l, files)
	joined := ""
	for _, f := range files {
		joined += f.Text
	}
	for _, want := range []string{"db.lab.test.\tIN\tA\t10.77.1.11\n", "a.lab.test.\tIN\tAAAA\tfd00::11\n"} {
		if !strings.Contains(joined, want) {
			t.Errorf("zones lack %q:\n%s", want, joined)
		}
	}
	if strings.Contains(joined, "12.2.77.10.in-addr.arpa.") {
		t.Errorf("b's PTR survived its removal:\n%s", joined)
	}
	if err := l.CheckZone(z); err != nil {
		t.Errorf("CheckZone: %v", err)
	}

	for _, c := range []struct {
		edit func(z *Zone)
		says string
	}{
		{func(z *Zone) { z.Set("www.example.com", []string{"10.77.3.9"}, false) }, "www.example.com is outside the lab's zone lab.test"},
		{func(z *Zone) { z.SetPTR("10.77.9.9", "x.lab.test") }, "the PTR of 10.77.9.9 is outside the lab's reverse zones"},
		{func(z *Zone) { z.SetPTR("fd00::11", "a.lab.test") }, "the PTR of fd00::11"},
	} {
		z := l.DefaultZone()
		c.edit(z)
		err := l.CheckZone(z)
		if err == nil || !strings.Contains(err.Error(), c.says) || !strings.Contains(err.Error(), "1.77.10.in-addr.arpa") && strings.Contains(c.says, "PTR") {
			t.Errorf("CheckZone: %v, want an error saying %q", err, c.says)
		}
		if err := l.SaveZone(z); err == nil {
			t.Error("SaveZone wrote a zone BIND cannot serve")
		}
	}
	// In the default lab, dnsmasq answers anything it is given.
	d, _ := NewLayout("lab", "")
	z = d.DefaultZone()
	z.Set("www.example.com", []string{"10.77.3.9"}, true)
	if err := d.CheckZone(z); err != nil {
		t.Errorf("default lab CheckZone: %v", err)
	}
}

// SaveZone writes the zone files and drops named's journals, which hold
// updates made to the files they replace.
func TestSaveZoneDropsJournals(t *testing.T) {
	l := crossLayout(t, Spec{})
	l.Dir = t.TempDir()
	if err := os.MkdirAll(l.NamedDir(), 0o700); err != nil {
		t.Fatal(err)
	}
	jnl := l.zoneFilePath(l.Domain) + ".jnl"
	if err := os.WriteFile(jnl, []byte("old updates"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := l.SaveZone(l.DefaultZone()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(jnl); !os.IsNotExist(err) {
		t.Errorf("journal %s still there (%v)", jnl, err)
	}
	for _, zone := range append([]string{l.Domain}, l.ReverseZones()...) {
		if _, err := os.Stat(l.zoneFilePath(zone)); err != nil {
			t.Errorf("zone file of %s: %v", zone, err)
		}
	}
	if z, err := l.LoadZone(); err != nil || len(z.Forward) != 4 {
		t.Errorf("dns.json: %v %+v", err, z)
	}
}

// tandemd (internal/dnsupdate) reads the key the lab gives each node.
func TestTSIGKeyReadByDNSUpdate(t *testing.T) {
	l := crossLayout(t, Spec{})
	l.Dir = t.TempDir()
	if err := writeNamedFiles(l); err != nil {
		t.Fatal(err)
	}
	k, err := dnsupdate.ReadKeyFile(l.DNSKeyPath("b"))
	if err != nil {
		t.Fatal(err)
	}
	if k.Name != "tandemd-lab." || k.Algorithm != "hmac-sha256." || len(k.Secret) != 32 {
		t.Errorf("key %s (algorithm %s, %d secret bytes)", k.Name, k.Algorithm, len(k.Secret))
	}
	if _, err := dnsupdate.New(dnsupdate.Config{Zone: l.Domain, Server: l.DNSServer, SecretFile: l.DNSKeyPath("a")}); err != nil {
		t.Errorf("an updater from lab env's values: %v", err)
	}
}
