// Package lab builds tandem's one-machine playground: network namespaces
// for two nodes, a client and a DNS server on one bridge, a real dnsmasq
// answering for the lab's domain, and tandemd on both nodes. It is the bed
// for every end-to-end test.
//
// Everything a lab owns carries its name: namespaces <name>-a, <name>-b,
// <name>-client, <name>-dns and <name>-sw (the bridge), /etc/netns/<name>-*
// and the directory BaseDir/<name>. Nothing lives in the root namespace, so
// two labs with different names run side by side, even on the same subnet.
package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
)

const (
	// DefaultName is the lab name when none is given.
	DefaultName = "lab"
	// DefaultSubnet is the lab's IPv4 subnet when none is given. Each lab has
	// its own namespaces, so two labs may use the same one.
	DefaultSubnet = "10.77.0.0/24"
	// BaseDir holds one directory per lab.
	BaseDir = "/var/lib/tandem-lab"
	// APIPort is the node API's port on both nodes.
	APIPort = 7400
	// PostgresPort is PostgreSQL's port on both nodes.
	PostgresPort = 5432
	// PostgresUser is both the OS user PostgreSQL runs as and its superuser.
	PostgresUser = "postgres"
	// SwitchSuffix names the namespace that holds the bridge.
	SwitchSuffix = "sw"
	// BridgeName is the bridge inside the switch namespace.
	BridgeName = "br0"
	// HostIface is each host's interface on the lab network.
	HostIface = "eth0"
	// ClusterHost is the first label of the cluster DNS name.
	ClusterHost = "db"
	layoutFile  = "layout.json"
)

// Host roles.
const (
	RoleNode   = "node"
	RoleClient = "client"
	RoleDNS    = "dns"
)

// Offsets of each address from the start of the subnet.
const (
	clusterOffset = 10
	dnsOffset     = 53
	clientOffset  = 100
)

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9]{0,7}$`)

// ValidateName checks a lab name. Names are short because they prefix
// namespace names, and have no '-' so that "<name>-" belongs to one lab only.
func ValidateName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("lab name %q must be 1-8 characters, lowercase letters and digits, starting with a letter (for example %q)", name, DefaultName)
	}
	return nil
}

// Host is one machine of the lab.
type Host struct {
	Name  string `json:"name"`  // a, b, client, dns
	Role  string `json:"role"`  // node, client or dns
	IP    string `json:"ip"`    // address on the lab network
	FQDN  string `json:"fqdn"`  // a.<lab>.test
	Netns string `json:"netns"` // <lab>-a
	Veth  string `json:"veth"`  // its port on the bridge, in the switch namespace
}

// Layout is everything that describes one lab; it is written to the lab
// directory by up and read by env, exec and down.
type Layout struct {
	Name        string `json:"name"`
	Dir         string `json:"dir"`
	Subnet      string `json:"subnet"`
	Domain      string `json:"domain"`
	ClusterIP   string `json:"cluster_ip"`
	DNSName     string `json:"dns_name"`
	DNSServer   string `json:"dns_server"`
	SwitchNetns string `json:"switch_netns"`
	Hosts       []Host `json:"hosts"`
}

// NewLayout plans a lab: names, addresses and paths. It touches nothing.
func NewLayout(name, subnet string) (*Layout, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	if subnet == "" {
		subnet = DefaultSubnet
	}
	p, err := netip.ParsePrefix(subnet)
	if err != nil || !p.Addr().Is4() {
		return nil, fmt.Errorf("subnet %q must be an IPv4 prefix such as %s", subnet, DefaultSubnet)
	}
	// The highest offset (the client) must fit, and leave room for a broadcast address.
	if p.Bits() < 8 || p.Bits() > 25 {
		return nil, fmt.Errorf("subnet %q must have a prefix length between /8 and /25 so that host .%d fits", subnet, clientOffset)
	}
	p = p.Masked()
	at := func(off int) string {
		b := p.Addr().As4()
		v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
		v += uint32(off)
		return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}).String()
	}
	domain := name + ".test"
	l := &Layout{
		Name:        name,
		Dir:         filepath.Join(BaseDir, name),
		Subnet:      p.String(),
		Domain:      domain,
		ClusterIP:   at(clusterOffset),
		DNSName:     ClusterHost + "." + domain,
		DNSServer:   at(dnsOffset),
		SwitchNetns: name + "-" + SwitchSuffix,
	}
	for _, h := range []struct {
		name, role string
		off        int
	}{
		{"a", RoleNode, 11},
		{"b", RoleNode, 12},
		{"client", RoleClient, clientOffset},
		{"dns", RoleDNS, dnsOffset},
	} {
		l.Hosts = append(l.Hosts, Host{
			Name:  h.name,
			Role:  h.role,
			IP:    at(h.off),
			FQDN:  h.name + "." + domain,
			Netns: name + "-" + h.name,
			Veth:  "veth-" + h.name,
		})
	}
	return l, nil
}

// Host returns the host called name.
func (l *Layout) Host(name string) (Host, bool) {
	for _, h := range l.Hosts {
		if h.Name == name {
			return h, true
		}
	}
	return Host{}, false
}

// HostNames lists the hosts' names in layout order.
func (l *Layout) HostNames() []string {
	var out []string
	for _, h := range l.Hosts {
		out = append(out, h.Name)
	}
	return out
}

// Nodes returns the hosts that run tandemd.
func (l *Layout) Nodes() []Host {
	var out []Host
	for _, h := range l.Hosts {
		if h.Role == RoleNode {
			out = append(out, h)
		}
	}
	return out
}

// Namespaces lists every namespace of the lab, the switch last.
func (l *Layout) Namespaces() []string {
	var out []string
	for _, h := range l.Hosts {
		out = append(out, h.Netns)
	}
	return append(out, l.SwitchNetns)
}

// PrefixLen is the subnet's prefix length, for addresses on eth0.
func (l *Layout) PrefixLen() int {
	return netip.MustParsePrefix(l.Subnet).Bits()
}

// Paths of one node's files inside the lab directory.
func (l *Layout) NodeDir(node string) string    { return filepath.Join(l.Dir, node) }
func (l *Layout) ConfigPath(node string) string { return filepath.Join(l.Dir, node, "tandemd.yaml") }
func (l *Layout) LogPath(node string) string    { return filepath.Join(l.Dir, node, "tandemd.log") }
func (l *Layout) PidPath(node string) string    { return filepath.Join(l.Dir, node, "tandemd.pid") }
func (l *Layout) StateDir(node string) string   { return filepath.Join(l.Dir, node, "state") }
func (l *Layout) DataDir(node string) string    { return filepath.Join(l.Dir, node, "pgdata") }
func (l *Layout) SocketDir(node string) string  { return filepath.Join(l.Dir, node, "socket") }

// Paths of the DNS server's files.
func (l *Layout) DNSPidPath() string { return filepath.Join(l.Dir, "dnsmasq.pid") }
func (l *Layout) DNSLogPath() string { return filepath.Join(l.Dir, "dnsmasq.log") }

// LayoutPath is where a lab's layout is persisted.
func LayoutPath(name string) string { return filepath.Join(BaseDir, name, layoutFile) }

// Save writes the layout to the lab directory, which must exist.
func (l *Layout) Save() error {
	b, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(l.Dir, layoutFile+".tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("while writing the lab layout: %w", err)
	}
	return os.Rename(tmp, filepath.Join(l.Dir, layoutFile))
}

// ErrNoLab means no lab of that name is up.
var ErrNoLab = errors.New("no such lab")

// Load reads the layout of the lab called name.
func Load(name string) (*Layout, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(LayoutPath(name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w %q (no %s): start it with `tandem lab up --name %s`", ErrNoLab, name, LayoutPath(name), name)
	}
	if err != nil {
		return nil, fmt.Errorf("while reading the layout of lab %q: %w", name, err)
	}
	var l Layout
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, fmt.Errorf("the layout of lab %q (%s) is damaged: %w; run `tandem lab down --name %s`", name, LayoutPath(name), err, name)
	}
	if l.Name != name || l.Dir != filepath.Join(BaseDir, name) {
		return nil, fmt.Errorf("the layout in %s names lab %q, not %q; run `tandem lab down --name %s`", LayoutPath(name), l.Name, name, name)
	}
	return &l, nil
}

// knownSuffixes are the namespace suffixes any version of the lab creates;
// down removes only these, so it never touches a namespace it did not make.
var knownSuffixes = []string{"a", "b", "client", "dns", SwitchSuffix}

// ownedNamespace tells whether ns belongs to the lab called name.
func ownedNamespace(name, ns string) bool {
	for _, s := range knownSuffixes {
		if ns == name+"-"+s {
			return true
		}
	}
	return false
}

// namespacesOf picks the lab's namespaces out of a list of existing ones.
func namespacesOf(name string, existing []string) []string {
	var out []string
	for _, ns := range existing {
		if ownedNamespace(name, ns) && !slices.Contains(out, ns) {
			out = append(out, ns)
		}
	}
	return out
}
