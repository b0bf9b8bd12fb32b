// Package lab builds tandem's one-machine playground: network namespaces
// for two nodes, a client and a DNS server on one bridge, a real dnsmasq
// answering for the lab's domain, and tandemd on both nodes; in automatic
// failover mode also a witness host, w, running `tandem-witness` (the
// quorum's third member). It is the bed for every end-to-end test.
//
// Everything a lab owns carries its name: namespaces <name>-a, <name>-b,
// <name>-client, <name>-dns, <name>-w and <name>-sw (the bridges), in a
// cross-subnet lab also <name>-r (the router, crosssubnet.go),
// /etc/netns/<name>-* and the directory BaseDir/<name>. Nothing lives in the root namespace, so
// two labs with different names run side by side, even on the same subnet.
//
// A lab is IPv4 or IPv6, never both: the family follows from its subnet.
// Its fault tools (power, partitions, slow links, paused processes) and its
// DNS edits are recorded in the lab directory beside the layout.
package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/tandem-ha/tandem/internal/config"
)

const (
	// DefaultName is the lab name when none is given.
	DefaultName = "lab"
	// DefaultSubnet is the lab's IPv4 subnet when none is given. Each lab has
	// its own namespaces, so two labs may use the same one.
	DefaultSubnet = "10.77.0.0/24"
	// DefaultSubnet6 is the subnet of an IPv6 lab (`lab up --ipv6`).
	DefaultSubnet6 = "fd00:77::/64"
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
	// WitnessHost is the witness's host name in an automatic-mode lab.
	WitnessHost = "w"
	// QuorumPeerPort and QuorumClientPort are the etcd member's ports on
	// the witness (and, in automatic mode, on both nodes): tandemd's
	// defaults, written out in the witness's configuration so that the lab
	// says which ports the quorum uses.
	QuorumPeerPort   = config.DefaultQuorumPeerPort
	QuorumClientPort = config.DefaultQuorumClientPort
	layoutFile       = "layout.json"
)

// Failover modes a lab is built for (`lab up --failover`).
const (
	// FailoverManual is today's default: two nodes, failover by a person.
	FailoverManual = "manual"
	// FailoverAutomatic adds the witness host w, and assembles with
	// --failover automatic --witness w.<domain>.
	FailoverAutomatic = "automatic"
)

// CheckFailover validates `lab up --failover`; empty is manual.
func CheckFailover(mode string) error {
	switch mode {
	case "", FailoverManual, FailoverAutomatic:
		return nil
	}
	return fmt.Errorf("--failover %q: use manual (the default: two nodes, failover by a person) or automatic (adds the witness host %s)", mode, WitnessHost)
}

// Host roles.
const (
	RoleNode   = "node"
	RoleClient = "client"
	RoleDNS    = "dns"
	// RoleWitness runs `tandem-witness`: an etcd member and nothing else
	// (no PostgreSQL).
	RoleWitness = "witness"
	// RoleEtcd runs one member of the site's own etcd cluster (Debian's
	// etcd-server), in a lab built with --etcd-external.
	RoleEtcd = "etcd"
)

// Offsets of each address from the start of the subnet. In an IPv6 lab the
// same digits are read as hex, so that addresses look alike in both
// families: 10.77.0.11 and fd00:77::11.
const (
	clusterOffset = 10
	// The witness comes after the nodes (.11, .12): the quorum's members
	// read as one block, .11 to .13.
	witnessOffset = 13
	// The external etcd's members (e1, e2, e3) are .21 to .23.
	etcdOffset   = 21
	dnsOffset    = 53
	clientOffset = 100
)

// macPrefix starts every lab MAC address (locally administered, "tl"); the
// last two bytes repeat the host's address suffix (02:74:6c:00:00:11 is
// the host at .11 or ::11), so a neighbour table reads at a glance. Labs
// never share a bridge, so two labs may use the same MACs.
var macPrefix = [4]byte{0x02, 0x74, 0x6c, 0x00}

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
	Name  string `json:"name"`  // a, b, client, dns, w
	Role  string `json:"role"`  // node, client, dns or witness
	IP    string `json:"ip"`    // address on the lab network
	FQDN  string `json:"fqdn"`  // a.<lab>.test
	Netns string `json:"netns"` // <lab>-a
	Veth  string `json:"veth"`  // its port on the bridge, in the switch namespace
	MAC   string `json:"mac"`   // eth0's hardware address, fixed at up
	// Subnet and Gateway are set in a cross-subnet lab only: the host's own
	// subnet (one of the lab's segments) and its default route, the
	// router's address there. Elsewhere every host is in Layout.Subnet and
	// needs no route.
	Subnet  string `json:"subnet,omitempty"`
	Gateway string `json:"gateway,omitempty"`
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
	// Tandemd is the executable up started on the nodes (and the witness);
	// power-on starts it again.
	Tandemd string `json:"tandemd,omitempty"`
	// Failover is the mode the lab was built for: manual or automatic (with
	// the witness host). Layouts written before the mode existed have none,
	// which is manual.
	Failover string `json:"failover,omitempty"`
	// ExternalEtcd: an automatic-mode lab whose quorum is a three-member
	// etcd cluster on hosts e1, e2 and e3 (etcd.go) instead of the witness.
	ExternalEtcd bool `json:"external_etcd,omitempty"`
	// CrossSubnet: a, b and the other hosts sit in three subnets
	// (Segments) joined by a router namespace (RouterNetns); there is no
	// cluster IP (ClusterIP is empty) and the DNS server is BIND 9, which
	// takes dynamic updates signed with the lab's TSIG key
	// (crosssubnet.go, bind.go). Subnet is then the range the segments are
	// carved from.
	CrossSubnet bool      `json:"cross_subnet,omitempty"`
	RouterNetns string    `json:"router_netns,omitempty"`
	Segments    []Segment `json:"segments,omitempty"`
}

// NewLayout plans a lab for manual failover (no witness); see
// NewLayoutFailover.
func NewLayout(name, subnet string) (*Layout, error) {
	return NewLayoutFailover(name, subnet, FailoverManual)
}

// NewLayoutFailover plans a lab: names, addresses and paths. It touches
// nothing. The subnet's family is the lab's: an IPv6 prefix makes an IPv6
// lab. An empty subnet is DefaultSubnet. In automatic failover mode the
// lab also has the witness host w, last in layout order so that the
// other hosts keep their places (and with them their tc handles).
func NewLayoutFailover(name, subnet, failover string) (*Layout, error) {
	return NewLayoutQuorum(name, subnet, failover, false)
}

// NewLayoutQuorum is NewLayoutFailover; with externalEtcd (automatic mode
// only) the lab's quorum is an etcd cluster on hosts e1, e2 and e3, and it
// has no witness.
func NewLayoutQuorum(name, subnet, failover string, externalEtcd bool) (*Layout, error) {
	return PlanLayout(Spec{Name: name, Subnet: subnet, Failover: failover, ExternalEtcd: externalEtcd})
}

// Spec is the shape of a lab, as `lab up`'s flags give it.
type Spec struct {
	Name   string
	Subnet string // empty: DefaultSubnet, or DefaultCrossSubnet with CrossSubnet
	// Failover is manual (empty) or automatic; ExternalEtcd (automatic
	// only) puts the quorum on hosts e1-e3 instead of the witness.
	Failover     string
	ExternalEtcd bool
	// CrossSubnet puts a, b and the others in three subnets joined by a
	// router, with BIND 9 as the DNS server (crosssubnet.go).
	CrossSubnet bool
}

// PlanLayout plans a lab: names, addresses and paths. It touches nothing.
// The subnet's family is the lab's: an IPv6 prefix makes an IPv6 lab.
func PlanLayout(s Spec) (*Layout, error) {
	name, subnet, failover, externalEtcd := s.Name, s.Subnet, s.Failover, s.ExternalEtcd
	if externalEtcd && failover != FailoverAutomatic {
		return nil, fmt.Errorf("--etcd-external is for --failover automatic (a manual-mode cluster has no quorum)")
	}
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	if err := CheckFailover(failover); err != nil {
		return nil, err
	}
	if failover == "" {
		failover = FailoverManual
	}
	if s.CrossSubnet {
		return planCrossSubnet(s, failover)
	}
	if subnet == "" {
		subnet = DefaultSubnet
	}
	p, err := parseSubnet(subnet)
	if err != nil {
		return nil, err
	}
	domain := name + ".test"
	l := &Layout{
		Name:         name,
		Dir:          filepath.Join(BaseDir, name),
		Subnet:       p.String(),
		Domain:       domain,
		ClusterIP:    hostAddr(p, clusterOffset).String(),
		DNSName:      ClusterHost + "." + domain,
		DNSServer:    hostAddr(p, dnsOffset).String(),
		SwitchNetns:  name + "-" + SwitchSuffix,
		Failover:     failover,
		ExternalEtcd: externalEtcd,
	}
	for _, h := range hostPlan(failover, externalEtcd) {
		l.Hosts = append(l.Hosts, l.newHost(h, p))
	}
	return l, nil
}

// plannedHost is a host before it has an address: its name, role and the
// offset of its address in its subnet.
type plannedHost struct {
	name, role string
	off        int
}

// hostPlan lists the hosts of a lab of the given quorum shape, in layout
// order: a, b, client, dns, then the witness or the etcd members, last so
// that the others keep their places (and with them their tc handles).
func hostPlan(failover string, externalEtcd bool) []plannedHost {
	hosts := []plannedHost{
		{"a", RoleNode, 11},
		{"b", RoleNode, 12},
		{"client", RoleClient, clientOffset},
		{"dns", RoleDNS, dnsOffset},
	}
	switch {
	case externalEtcd:
		for i, e := range EtcdHosts {
			hosts = append(hosts, plannedHost{e, RoleEtcd, etcdOffset + i})
		}
	case failover == FailoverAutomatic:
		hosts = append(hosts, plannedHost{WitnessHost, RoleWitness, witnessOffset})
	}
	return hosts
}

// newHost is host h of the lab at its offset in subnet p.
func (l *Layout) newHost(h plannedHost, p netip.Prefix) Host {
	return Host{
		Name:  h.name,
		Role:  h.role,
		IP:    hostAddr(p, h.off).String(),
		FQDN:  h.name + "." + l.Domain,
		Netns: l.Name + "-" + h.name,
		Veth:  "veth-" + h.name,
		MAC:   hostMAC(h.off).String(),
	}
}

// parseSubnet checks a lab subnet and returns it masked.
func parseSubnet(subnet string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(subnet)
	if err != nil || p.Addr().Zone() != "" || p.Addr().Is4In6() {
		return netip.Prefix{}, fmt.Errorf("subnet %q must be an IPv4 prefix such as %s or an IPv6 prefix such as %s", subnet, DefaultSubnet, DefaultSubnet6)
	}
	// The highest offset (the client) must fit, and leave room for a
	// broadcast address in IPv4.
	if p.Addr().Is4() && (p.Bits() < 8 || p.Bits() > 25) {
		return netip.Prefix{}, fmt.Errorf("subnet %q must have a prefix length between /8 and /25 so that host .%d fits", subnet, clientOffset)
	}
	if p.Addr().Is6() && (p.Bits() < 16 || p.Bits() > 112) {
		return netip.Prefix{}, fmt.Errorf("IPv6 subnet %q must have a prefix length between /16 and /112 (for example %s)", subnet, DefaultSubnet6)
	}
	return p.Masked(), nil
}

// suffix is the host part of the address at offset off: off itself in
// IPv4, off's decimal digits read as hex in IPv6 (11 → ::11).
func suffix(off int, v6 bool) uint64 {
	if !v6 {
		return uint64(off)
	}
	v, _ := strconv.ParseUint(strconv.Itoa(off), 16, 64)
	return v
}

// hostAddr is the address at offset off in p.
func hostAddr(p netip.Prefix, off int) netip.Addr {
	b := p.Addr().AsSlice()
	carry := suffix(off, p.Addr().Is6())
	for i := len(b) - 1; i >= 0 && carry > 0; i-- {
		sum := uint64(b[i]) + carry&0xff
		b[i] = byte(sum)
		carry = carry>>8 + sum>>8
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// hostMAC is the MAC address of the host at offset off.
func hostMAC(off int) net.HardwareAddr {
	v := suffix(off, true)
	return net.HardwareAddr{macPrefix[0], macPrefix[1], macPrefix[2], macPrefix[3], byte(v >> 8), byte(v)}
}

// IPv6 tells whether the lab is an IPv6 lab.
func (l *Layout) IPv6() bool {
	return netip.MustParsePrefix(l.Subnet).Addr().Is6()
}

// Family is "ipv4" or "ipv6".
func (l *Layout) Family() string {
	if l.IPv6() {
		return "ipv6"
	}
	return "ipv4"
}

// ClusterPrefix is the cluster IP with the subnet's prefix length, as
// assembly takes it (10.77.0.10/24); empty in a cross-subnet lab, which
// has no cluster IP.
func (l *Layout) ClusterPrefix() string {
	if l.ClusterIP == "" {
		return ""
	}
	return l.ClusterIP + "/" + strconv.Itoa(l.PrefixLen())
}

// HostPrefix is a host's address with its subnet's prefix length: the
// lab's subnet, or in a cross-subnet lab the host's segment.
func (l *Layout) HostPrefix(h Host) string {
	bits := l.PrefixLen()
	if h.Subnet != "" {
		bits = netip.MustParsePrefix(h.Subnet).Bits()
	}
	return h.IP + "/" + strconv.Itoa(bits)
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

// LookupHost returns the host called name, or an error naming the lab's hosts.
func (l *Layout) LookupHost(name string) (Host, error) {
	if h, ok := l.Host(name); ok {
		return h, nil
	}
	return Host{}, fmt.Errorf("lab %s has no host %q; its hosts are %s", l.Name, name, strings.Join(l.HostNames(), ", "))
}

// hostIndex is the host's position in the layout, which fixes the tc
// handles and filter priorities that concern it; -1 when unknown.
func (l *Layout) hostIndex(name string) int {
	for i, h := range l.Hosts {
		if h.Name == name {
			return i
		}
	}
	return -1
}

// HostNames lists the hosts' names in layout order.
func (l *Layout) HostNames() []string {
	var out []string
	for _, h := range l.Hosts {
		out = append(out, h.Name)
	}
	return out
}

// Nodes returns the hosts that run tandemd with PostgreSQL.
func (l *Layout) Nodes() []Host {
	return l.withRole(RoleNode)
}

// Witness returns the witness host; ok is false in a manual-mode lab.
func (l *Layout) Witness() (Host, bool) {
	if w := l.withRole(RoleWitness); len(w) > 0 {
		return w[0], true
	}
	return Host{}, false
}

// Daemons returns the hosts that run tandemd: the nodes, then the witness
// if the lab has one.
func (l *Layout) Daemons() []Host {
	return append(l.Nodes(), l.withRole(RoleWitness)...)
}

// Automatic tells whether the lab was built for automatic failover.
func (l *Layout) Automatic() bool { return l.Failover == FailoverAutomatic }

func (l *Layout) withRole(role string) []Host {
	var out []Host
	for _, h := range l.Hosts {
		if h.Role == role {
			out = append(out, h)
		}
	}
	return out
}

// Namespaces lists every namespace of the lab: the hosts', the router's
// in a cross-subnet lab, the switch last.
func (l *Layout) Namespaces() []string {
	var out []string
	for _, h := range l.Hosts {
		out = append(out, h.Netns)
	}
	if l.RouterNetns != "" {
		out = append(out, l.RouterNetns)
	}
	return append(out, l.SwitchNetns)
}

// PrefixLen is the subnet's prefix length, for addresses on eth0.
func (l *Layout) PrefixLen() int {
	return netip.MustParsePrefix(l.Subnet).Bits()
}

// Paths of one node's (or the witness's) files inside the lab directory:
// the witness keeps the same scheme, without PostgreSQL's directories.
func (l *Layout) NodeDir(node string) string    { return filepath.Join(l.Dir, node) }
func (l *Layout) ConfigPath(node string) string { return filepath.Join(l.Dir, node, "tandemd.yaml") }
func (l *Layout) LogPath(node string) string    { return filepath.Join(l.Dir, node, "tandemd.log") }
func (l *Layout) PidPath(node string) string    { return filepath.Join(l.Dir, node, "tandemd.pid") }
func (l *Layout) StateDir(node string) string   { return filepath.Join(l.Dir, node, "state") }
func (l *Layout) DataDir(node string) string    { return filepath.Join(l.Dir, node, "pgdata") }
func (l *Layout) SocketDir(node string) string  { return filepath.Join(l.Dir, node, "socket") }

// Paths of the DNS server's files: dnsmasq's, or in a cross-subnet lab
// named's (bind.go).
func (l *Layout) DNSPidPath() string {
	if l.CrossSubnet {
		return l.namedPidPath()
	}
	return l.dnsmasqPidPath()
}

func (l *Layout) DNSLogPath() string {
	if l.CrossSubnet {
		return l.namedLogPath()
	}
	return filepath.Join(l.Dir, "dnsmasq.log")
}

func (l *Layout) dnsmasqPidPath() string { return filepath.Join(l.Dir, "dnsmasq.pid") }

// DNSZonePath holds the lab's DNS records (see Zone); DNSConfPath is the
// dnsmasq configuration rendered from them (in a cross-subnet lab,
// named.conf, and the records are zone files beside it).
func (l *Layout) DNSZonePath() string { return filepath.Join(l.Dir, "dns.json") }
func (l *Layout) DNSConfPath() string {
	if l.CrossSubnet {
		return l.NamedConfPath()
	}
	return filepath.Join(l.Dir, "dnsmasq.conf")
}

// FaultsPath records the faults injected into the lab (see Faults).
func (l *Layout) FaultsPath() string { return filepath.Join(l.Dir, "faults.json") }

// lockPath serialises the commands that change a running lab.
func (l *Layout) lockPath() string { return filepath.Join(l.Dir, "lab.lock") }

// LayoutPath is where a lab's layout is persisted.
func LayoutPath(name string) string { return filepath.Join(BaseDir, name, layoutFile) }

// Save writes the layout to the lab directory, which must exist.
func (l *Layout) Save() error {
	if err := writeJSON(filepath.Join(l.Dir, layoutFile), l); err != nil {
		return fmt.Errorf("while writing the lab layout: %w", err)
	}
	return nil
}

// writeJSON writes v to path atomically (temporary file, then rename).
func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(path, append(b, '\n'))
}

func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
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
var knownSuffixes = []string{"a", "b", "client", "dns", WitnessHost, "e1", "e2", "e3", RouterSuffix, SwitchSuffix}

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
