package lab

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tandem-ha/tandem/internal/config"
)

func TestValidateName(t *testing.T) {
	for _, ok := range []string{"lab", "a", "e2e1", "abcdefgh", "x9"} {
		if err := ValidateName(ok); err != nil {
			t.Errorf("ValidateName(%q) = %v, want ok", ok, err)
		}
	}
	for _, bad := range []string{"", "Lab", "1lab", "lab-a", "abcdefghi", "la b", "lab_", "é"} {
		if err := ValidateName(bad); err == nil {
			t.Errorf("ValidateName(%q) = nil, want an error", bad)
		}
	}
}

func TestNewLayoutDefaults(t *testing.T) {
	l, err := NewLayout("lab", "")
	if err != nil {
		t.Fatal(err)
	}
	if l.Subnet != "10.77.0.0/24" || l.ClusterIP != "10.77.0.10" || l.DNSServer != "10.77.0.53" {
		t.Errorf("subnet %s cluster %s dns %s", l.Subnet, l.ClusterIP, l.DNSServer)
	}
	if l.Domain != "lab.test" || l.DNSName != "db.lab.test" || l.Dir != "/var/lib/tandem-lab/lab" {
		t.Errorf("domain %s dns name %s dir %s", l.Domain, l.DNSName, l.Dir)
	}
	want := map[string][2]string{
		"a":      {"10.77.0.11", "lab-a"},
		"b":      {"10.77.0.12", "lab-b"},
		"client": {"10.77.0.100", "lab-client"},
		"dns":    {"10.77.0.53", "lab-dns"},
	}
	for name, w := range want {
		h, ok := l.Host(name)
		if !ok {
			t.Fatalf("no host %s", name)
		}
		if h.IP != w[0] || h.Netns != w[1] || h.FQDN != name+".lab.test" {
			t.Errorf("host %s = %+v, want ip %s netns %s", name, h, w[0], w[1])
		}
		if len(h.Veth) > 15 {
			t.Errorf("veth name %q is longer than an interface name may be", h.Veth)
		}
	}
	if got := l.Namespaces(); !slices.Equal(got, []string{"lab-a", "lab-b", "lab-client", "lab-dns", "lab-sw"}) {
		t.Errorf("Namespaces() = %v", got)
	}
	var nodes []string
	for _, h := range l.Nodes() {
		nodes = append(nodes, h.Name)
	}
	if !slices.Equal(nodes, []string{"a", "b"}) {
		t.Errorf("Nodes() = %v", nodes)
	}
	if l.PrefixLen() != 24 {
		t.Errorf("PrefixLen() = %d", l.PrefixLen())
	}
	// Unix sockets are per file system: each node has its own socket dir.
	if l.SocketDir("a") == l.SocketDir("b") || !strings.HasPrefix(l.SocketDir("a"), l.Dir+"/") {
		t.Errorf("socket dirs %s %s", l.SocketDir("a"), l.SocketDir("b"))
	}
}

func TestNewLayoutSubnet(t *testing.T) {
	l, err := NewLayout("two", "172.30.5.7/16")
	if err != nil {
		t.Fatal(err)
	}
	a, _ := l.Host("a")
	if l.Subnet != "172.30.0.0/16" || a.IP != "172.30.0.11" || l.ClusterIP != "172.30.0.10" || l.PrefixLen() != 16 {
		t.Errorf("subnet %s a %s cluster %s", l.Subnet, a.IP, l.ClusterIP)
	}
	for _, bad := range []string{"10.0.0.0/26", "10.0.0.0/4", "fd00::/120", "fd00::/8", "fe80::1%eth0/64", "nonsense", "10.0.0.0"} {
		if _, err := NewLayout("lab", bad); err == nil {
			t.Errorf("NewLayout(%q) accepted", bad)
		}
	}
	if _, err := NewLayout("Bad", ""); err == nil {
		t.Error("NewLayout accepted a bad name")
	}
}

func TestNamespacesOf(t *testing.T) {
	existing := []string{"lab-a", "lab2-a", "lab-sw", "lab-foo", "other", "lab-client", "lab-a"}
	got := namespacesOf("lab", existing)
	if !slices.Equal(got, []string{"lab-a", "lab-sw", "lab-client"}) {
		t.Errorf("namespacesOf = %v", got)
	}
}

func TestReverseZone(t *testing.T) {
	for subnet, want := range map[string]string{
		"10.77.0.0/24":  "0.77.10.in-addr.arpa",
		"10.77.0.0/25":  "0.77.10.in-addr.arpa",
		"172.30.0.0/16": "30.172.in-addr.arpa",
		"172.30.0.0/20": "30.172.in-addr.arpa",
		"10.0.0.0/8":    "10.in-addr.arpa",
	} {
		l, err := NewLayout("lab", subnet)
		if err != nil {
			t.Fatal(err)
		}
		if got := l.ReverseZone(); got != want {
			t.Errorf("ReverseZone(%s) = %s, want %s", subnet, got, want)
		}
	}
}

func TestDnsmasqArgs(t *testing.T) {
	l, _ := NewLayout("lab", "")
	args := l.DnsmasqArgs()
	for _, want := range []string{
		"--keep-in-foreground",
		"--no-resolv",
		"--no-hosts",
		// The only configuration file: the records, and nothing of /etc/dnsmasq.conf.
		"--conf-file=/var/lib/tandem-lab/lab/dnsmasq.conf",
		"--bind-interfaces",
		"--listen-address=10.77.0.53",
		"--pid-file=/var/lib/tandem-lab/lab/dnsmasq.pid",
		"--log-facility=/var/lib/tandem-lab/lab/dnsmasq.log",
		"--local=/lab.test/",
		"--local=/0.77.10.in-addr.arpa/",
	} {
		if !slices.Contains(args, want) {
			t.Errorf("dnsmasq args lack %s: %v", want, args)
		}
	}
	for _, a := range args {
		// Never an upstream server: the lab's DNS forwards nothing.
		if strings.HasPrefix(a, "--server") || strings.HasPrefix(a, "-S") || strings.HasPrefix(a, "--resolv-file") {
			t.Errorf("dnsmasq args forward out of the lab: %s", a)
		}
	}
	conf := l.DefaultZone().DnsmasqConf(l.Name)
	for _, want := range []string{
		"host-record=a.lab.test,10.77.0.11\n",
		"host-record=b.lab.test,10.77.0.12\n",
		"host-record=client.lab.test,10.77.0.100\n",
		"host-record=dns.lab.test,10.77.0.53\n",
		"host-record=db.lab.test,10.77.0.10\n",
		"ptr-record=12.0.77.10.in-addr.arpa,b.lab.test\n",
		"ptr-record=10.0.77.10.in-addr.arpa,db.lab.test\n",
	} {
		if !strings.Contains(conf, want) {
			t.Errorf("dnsmasq records lack %q:\n%s", want, conf)
		}
	}
	for _, bad := range []string{"server=", "resolv-file", "address="} {
		if strings.Contains(conf, bad) {
			t.Errorf("the healthy lab's records hold %q:\n%s", bad, conf)
		}
	}
}

func TestResolvConfAndHosts(t *testing.T) {
	l, _ := NewLayout("lab", "")
	rc := l.ResolvConf()
	if !strings.Contains(rc, "\nnameserver 10.77.0.53\n") || !strings.Contains(rc, "\nsearch lab.test\n") {
		t.Errorf("resolv.conf:\n%s", rc)
	}
	if strings.Count(rc, "nameserver") != 1 {
		t.Errorf("resolv.conf names more than one server:\n%s", rc)
	}
	for _, line := range strings.Split(strings.TrimSpace(HostsFile()), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[1] != "localhost" || (f[0] != "127.0.0.1" && f[0] != "::1") {
			t.Errorf("hosts line %q is not a localhost line", line)
		}
	}
}

func TestNsswitchConf(t *testing.T) {
	orig := "passwd: files systemd\nhosts:   files mdns4_minimal [NOTFOUND=return] dns myhostname\nnetworks: files\n"
	got := NsswitchConf(orig)
	want := "passwd: files systemd\nhosts:          files dns\nnetworks: files\n"
	if got != want {
		t.Errorf("NsswitchConf = %q, want %q", got, want)
	}
	if got := NsswitchConf(""); got != "hosts:          files dns\n" {
		t.Errorf("NsswitchConf(\"\") = %q", got)
	}
	if got := NsswitchConf("passwd: files\n"); got != "passwd: files\nhosts:          files dns\n" {
		t.Errorf("NsswitchConf without hosts = %q", got)
	}
}

func TestNodeConfigYAML(t *testing.T) {
	l, _ := NewLayout("lab", "")
	b, _ := l.Host("b")
	var c config.Config
	if err := config.Parse([]byte(l.NodeConfigYAML(b)), &c); err != nil {
		t.Fatalf("tandemd would refuse the lab's config: %v\n%s", err, l.NodeConfigYAML(b))
	}
	if c.Node.Name != "b" || c.Node.IP != "10.77.0.12" || c.API.Listen != ":7400" {
		t.Errorf("node %+v api %+v", c.Node, c.API)
	}
	p := c.Postgres
	if p.DataDir != "/var/lib/tandem-lab/lab/b/pgdata" || p.SocketDir != "/var/lib/tandem-lab/lab/b/socket" ||
		p.Port != 5432 || p.OSUser != "postgres" || p.ListenAddresses != "*" {
		t.Errorf("postgres %+v", p)
	}
	// The client logs in as the superuser over TCP (psql, the tests'
	// writer); the other node does not.
	if len(p.SuperuserAllow) != 1 || p.SuperuserAllow[0] != "10.77.0.100" || len(p.HBA) != 1 || p.HBA[0] != "host all all all scram-sha-256" {
		t.Errorf("postgres.superuser_allow %q, postgres.hba %q", p.SuperuserAllow, p.HBA)
	}
	if c.StateDir != "/var/lib/tandem-lab/lab/b/state" || c.Log.Level != "info" {
		t.Errorf("state_dir %s log %+v", c.StateDir, c.Log)
	}
}

func TestEnvJSON(t *testing.T) {
	l, _ := NewLayout("lab", "")
	l.Dir = t.TempDir()
	for node, tok := range map[string]string{"a": "tok-a", "b": "tok-b"} {
		if err := os.MkdirAll(l.StateDir(node), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(l.StateDir(node), TokenFile), []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(l.StateDir("a"), PostgresPasswordFile), []byte("pw-a\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(l.Env())
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		ClusterIP string `json:"cluster_ip"`
		DNSName   string `json:"dns_name"`
		DNSServer string `json:"dns_server"`
		ClientIP  string `json:"client_ip"`
		Nodes     []struct {
			Name, IP, API, Token string
		} `json:"nodes"`
		Postgres struct {
			Port     int
			User     string
			Password string
		} `json:"postgres"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.ClusterIP != "10.77.0.10" || got.DNSName != "db.lab.test" || got.DNSServer != "10.77.0.53" || got.ClientIP != "10.77.0.100" {
		t.Errorf("env %s", b)
	}
	if len(got.Nodes) != 2 || got.Nodes[0].Name != "a" || got.Nodes[0].IP != "10.77.0.11" ||
		got.Nodes[0].API != "https://10.77.0.11:7400" || got.Nodes[0].Token != "tok-a" || got.Nodes[1].Token != "tok-b" {
		t.Errorf("nodes %+v", got.Nodes)
	}
	if got.Postgres.Port != 5432 || got.Postgres.User != "postgres" || got.Postgres.Password != "pw-a" {
		t.Errorf("postgres %+v", got.Postgres)
	}
	var text strings.Builder
	if err := l.Env().WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"10.77.0.10", "db.lab.test", "tok-a", "pw-a", "lab-client"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text env lacks %s:\n%s", want, text.String())
		}
	}
}

func TestEnvBeforeTandemdStarted(t *testing.T) {
	l, _ := NewLayout("lab", "")
	l.Dir = t.TempDir()
	e := l.Env()
	if e.Nodes[0].Token != "" || e.Postgres.Password != "" {
		t.Errorf("secrets invented: %+v", e)
	}
	b, _ := json.Marshal(e)
	if !strings.Contains(string(b), `"nodes":[{`) {
		t.Errorf("nodes not a list: %s", b)
	}
}

func TestEnvShell(t *testing.T) {
	l, _ := NewLayout("lab", "")
	l.Dir = t.TempDir()
	if err := os.MkdirAll(l.StateDir("a"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(l.StateDir("a"), PostgresPasswordFile), []byte("it's\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(l.StateDir("a"), TokenFile), []byte("tok-a\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := l.Env().WriteShell(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"export TANDEM_LAB='lab'\n",
		"export TANDEM_TOKEN_A='tok-a'\n",
		"export TANDEM_TOKEN_B=''\n",
		"export TANDEM_LAB_CLUSTER_IP='10.77.0.10'\n",
		"export TANDEM_LAB_PG_PASSWORD='it'\\''s'\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("shell env lacks %q:\n%s", want, b.String())
		}
	}
}

// Every namespace a lab of any shape makes is one down knows to remove:
// a host missing from knownSuffixes would outlive `lab down`.
func TestDownKnowsEveryHost(t *testing.T) {
	for _, shape := range []struct {
		failover string
		external bool
	}{{FailoverManual, false}, {FailoverAutomatic, false}, {FailoverAutomatic, true}} {
		l, err := NewLayoutQuorum("t", "", shape.failover, shape.external)
		if err != nil {
			t.Fatal(err)
		}
		for _, ns := range l.Namespaces() {
			if !ownedNamespace("t", ns) {
				t.Errorf("%s lab (external etcd %v): namespace %s is not one down removes", shape.failover, shape.external, ns)
			}
		}
	}
	if _, err := NewLayoutQuorum("t", "", FailoverManual, true); err == nil {
		t.Error("an external etcd was accepted for a manual-mode lab")
	}
	l, _ := NewLayoutQuorum("t", "", FailoverAutomatic, true)
	if _, ok := l.Witness(); ok || len(l.EtcdMembers()) != 3 || len(l.Daemons()) != 2 {
		t.Errorf("external-etcd lab: witness %v, etcd members %d, daemons %d; want no witness, 3, 2", ok, len(l.EtcdMembers()), len(l.Daemons()))
	}
	if got := strings.Join(l.EtcdEndpoints(), ","); got != "https://10.77.0.21:2379,https://10.77.0.22:2379,https://10.77.0.23:2379" {
		t.Errorf("endpoints %s", got)
	}
}
