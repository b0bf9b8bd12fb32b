// Package dnscheck is the network preflight one node runs before a cluster
// is assembled: DNS records (forward and reverse) for the cluster name and
// both nodes, one subnet, one address family, one DNS suffix, the cluster IP
// not in use, and the peer's ports reachable.
//
// Every check is run from the point of view of the node that calls Run: its
// resolver (or the DNS server it is told to ask), its interfaces, its network
// path to the peer. The console asks both nodes and shows both lists.
//
// Run never panics and never returns an error: anything that goes wrong,
// including bad input, becomes a Result with Status "problem", a Detail
// naming what was found and a Fix naming what to change.
package dnscheck

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/tandem-ha/tandem/internal/valid"
)

// Status values of a Result.
const (
	StatusOK      = "ok"
	StatusProblem = "problem"
	StatusSkipped = "skipped"
)

// DefaultTimeout bounds one DNS query (per server) and one TCP connect when
// Input.Timeout is zero.
const DefaultTimeout = 2 * time.Second

// Node is one of the two nodes as the operator named it.
type Node struct {
	// Name labels the node in check IDs and messages ("a", "primary"...).
	// Use the same name for a node on both sides so the IDs line up:
	// "forward.node.<name>". Letters, digits, '-' and '_' only; empty means
	// "self" or "peer".
	Name string `json:"name"`
	// IP is the node IP (static, in the cluster subnet).
	IP netip.Addr `json:"ip"`
	// APIPort is the node API's TCP port (tandemd), PostgresPort
	// PostgreSQL's. Only the peer's are dialled.
	APIPort      int `json:"api_port"`
	PostgresPort int `json:"postgres_port"`
}

// Input is what one node needs to run the preflight.
type Input struct {
	Self, Peer Node
	// ClusterIP is the cluster IP with the cluster subnet's prefix length,
	// e.g. 10.77.0.10/24.
	ClusterIP netip.Prefix
	// NoClusterIP: the cluster has none (its endpoint is the DNS name,
	// which the primary points at its own node IP; the nodes may be in
	// different subnets). The checks of the cluster IP and of the shared
	// subnet are left out, and ClusterIP is not asked for.
	NoClusterIP bool
	// DNSName is the cluster DNS name, e.g. db.lab.test.
	DNSName string
	// DNSServer is "ip" or "ip:port" ("[v6]:port"). Empty: the servers of
	// /etc/resolv.conf, first one first, the others when it fails.
	DNSServer string
	// Prober probes the cluster IP on the wire (ARP / NDP). nil: the check
	// is reported as skipped.
	Prober func(ctx context.Context, ip netip.Addr) (holderMAC string, inUse bool, err error)
	// LocalPrefixes lists this node's interface addresses with their prefix
	// lengths. nil: read with net.Interfaces().
	LocalPrefixes func() ([]netip.Prefix, error)
	// Timeout bounds each DNS query (per server) and each TCP connect.
	// Zero: DefaultTimeout.
	Timeout time.Duration

	// Test hooks (unexported: the package's own tests only).
	dial       func(ctx context.Context, addr netip.AddrPort) (net.Conn, error)
	resolvConf string
}

// Result is the outcome of one check.
type Result struct {
	ID     string `json:"id"`               // stable, e.g. "forward.cluster"
	Title  string `json:"title"`            // one line: what is checked
	Status string `json:"status"`           // "ok", "problem", "skipped"
	Detail string `json:"detail,omitempty"` // what was found
	Fix    string `json:"fix,omitempty"`    // for a problem: what to change
}

// Check IDs. Node checks end in ".<node name>" (see Node.Name).
const (
	IDDNSServer       = "dns.server"
	IDForwardCluster  = "forward.cluster"
	IDReverseCluster  = "reverse.cluster"
	IDForwardNode     = "forward.node." // + node name
	IDReverseNode     = "reverse.node." // + node name
	IDSubnet          = "subnet"
	IDSubnetInterface = "subnet.interface"
	IDFamily          = "family"
	IDSuffix          = "suffix"
	IDClusterIPFree   = "cluster_ip_free"
	IDPortAPI         = "port.api"
	IDPortPostgres    = "port.postgres"
	IDInput           = "input." // + field; only present when the input is wrong
	IDInternal        = "internal"
)

// clusterIPChecks are the checks left out with Input.NoClusterIP: those of
// the cluster IP and of a subnet both nodes share.
var clusterIPChecks = map[string]bool{
	IDForwardCluster: true, IDReverseCluster: true, IDSubnet: true, IDSubnetInterface: true,
	IDFamily: true, IDClusterIPFree: true,
}

// Problems counts the results whose Status is "problem".
func Problems(rs []Result) int {
	n := 0
	for _, r := range rs {
		if r.Status == StatusProblem {
			n++
		}
	}
	return n
}

// Run runs every check and returns one Result per check, in a fixed order:
// input problems (if any), dns.server, forward.cluster, reverse.cluster,
// reverse.node.<self>, forward.node.<self>, reverse.node.<peer>,
// forward.node.<peer>, subnet, subnet.interface, family, suffix,
// cluster_ip_free, port.api, port.postgres. Checks run concurrently; a check
// whose input is missing is "skipped" with the reason.
//
// Time: DNS lookups go at most three deep (PTR, then the name's address,
// then the other family), each bounded by Timeout per server (a server that
// failed once is asked last afterwards); port connects by Timeout; the
// Prober by max(5s, 5*Timeout). A deadline on ctx bounds the whole run.
func Run(ctx context.Context, in Input) (out []Result) {
	defer func() {
		if p := recover(); p != nil {
			out = append(out, internalError(IDInternal, p))
		}
	}()
	if ctx == nil {
		ctx = context.Background()
	}
	r := newRunner(ctx, in)

	type check struct {
		id  string
		run func() Result
	}
	checks := []check{
		{IDDNSServer, r.checkDNSServer},
		{IDForwardCluster, r.checkForwardCluster},
		{IDReverseCluster, r.checkReverseCluster},
		{r.self.reverseID(), func() Result { return r.checkReverseNode(&r.self) }},
		{r.self.forwardID(), func() Result { return r.checkForwardNode(&r.self) }},
		{r.peer.reverseID(), func() Result { return r.checkReverseNode(&r.peer) }},
		{r.peer.forwardID(), func() Result { return r.checkForwardNode(&r.peer) }},
		{IDSubnet, r.checkSubnet},
		{IDSubnetInterface, r.checkSubnetInterface},
		{IDFamily, r.checkFamily},
		{IDSuffix, r.checkSuffix},
		{IDClusterIPFree, r.checkClusterIPFree},
		{IDPortAPI, func() Result { return r.checkPort(IDPortAPI) }},
		{IDPortPostgres, func() Result { return r.checkPort(IDPortPostgres) }},
	}
	if in.NoClusterIP {
		checks = slices.DeleteFunc(checks, func(c check) bool { return clusterIPChecks[c.id] })
	}
	results := make([]Result, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				if p := recover(); p != nil {
					results[i] = internalError(c.id, p)
				}
			}()
			res := c.run()
			res.ID = c.id
			results[i] = res
		}()
	}
	wg.Wait()
	return append(r.inputProblems, results...)
}

func internalError(id string, p any) Result {
	return Result{
		ID:     id,
		Title:  "preflight check " + id,
		Status: StatusProblem,
		Detail: fmt.Sprintf("internal error in the check: %v\n%s", p, debug.Stack()),
		Fix:    "report this as a tandem bug, with this detail",
	}
}

// node is a Node after validation.
type node struct {
	Node
	id    string // used in check IDs
	label string // "node a", "this node"...
	ipOK  bool   // IP usable
	ipWhy string // why not: "see input.node.a"
	apiOK bool
	pgOK  bool
}

func (n *node) reverseID() string { return IDReverseNode + n.id }
func (n *node) forwardID() string { return IDForwardNode + n.id }

// desc is "node a (10.77.0.11)".
func (n *node) desc() string {
	if n.ipOK {
		return fmt.Sprintf("%s (%s)", n.label, n.IP)
	}
	return n.label
}

// runner holds the validated input and what the checks share.
type runner struct {
	ctx     context.Context
	in      Input
	timeout time.Duration

	self, peer node

	clusterOK bool         // ClusterIP usable
	cip       netip.Addr   // ClusterIP.Addr(), unmapped
	subnet    netip.Prefix // ClusterIP.Masked()

	name   string // DNSName, lower case, no trailing dot ("" if invalid)
	nameOK bool

	inputProblems []Result

	res      *resolver
	resErr   error  // the servers could not be determined
	resFrom  string // where the servers came from
	serverOK bool

	memoMu sync.Mutex
	memo   map[memoKey]*memoEntry

	localOnce sync.Once
	local     []netip.Prefix
	localErr  error
}

var nodeNameRE = valid.Bounded(`^[A-Za-z0-9_-]+$`, 1, 63)

func newRunner(ctx context.Context, in Input) *runner {
	r := &runner{ctx: ctx, in: in, timeout: in.Timeout, memo: map[memoKey]*memoEntry{}}
	if r.timeout <= 0 {
		r.timeout = DefaultTimeout
	}
	r.self = node{Node: in.Self, id: "self", label: "this node"}
	r.peer = node{Node: in.Peer, id: "peer", label: "the peer node"}

	// Node names → IDs and labels.
	sn, pn := strings.ToLower(in.Self.Name), strings.ToLower(in.Peer.Name)
	switch {
	case sn == "" && pn == "":
	case !nodeNameRE.MatchString(sn) || !nodeNameRE.MatchString(pn):
		r.problem("node_names", "node names are short labels",
			fmt.Sprintf("node names %q and %q: each must be 1-63 letters, digits, '-' or '_'", in.Self.Name, in.Peer.Name),
			"name the nodes with short labels such as \"a\" and \"b\" (the same names on both nodes)")
	case sn == pn:
		r.problem("node_names", "the two nodes have different names",
			fmt.Sprintf("both nodes are named %q", in.Self.Name),
			"give the two nodes different names, such as \"a\" and \"b\"")
	default:
		r.self.id, r.self.label = sn, "node "+in.Self.Name
		r.peer.id, r.peer.label = pn, "node "+in.Peer.Name
	}

	// Node IPs and ports.
	for _, n := range []*node{&r.self, &r.peer} {
		n.IP = n.IP.Unmap()
		if msg := badHostAddr(n.IP); msg != "" {
			r.problem("node."+n.id, fmt.Sprintf("%s has a usable node IP", n.label),
				fmt.Sprintf("node IP of %s: %s", n.label, msg),
				fmt.Sprintf("give the static node IP of %s (for example 10.77.0.11)", n.label))
			n.ipWhy = "no valid node IP for " + n.label + " (see " + IDInput + "node." + n.id + ")"
		} else {
			n.ipOK = true
		}
		n.apiOK = n.APIPort > 0 && n.APIPort < 65536
		n.pgOK = n.PostgresPort > 0 && n.PostgresPort < 65536
	}
	if r.self.ipOK && r.peer.ipOK && r.self.IP == r.peer.IP {
		r.problem("nodes", "the two nodes have different IPs",
			fmt.Sprintf("both nodes have the node IP %s", r.self.IP),
			"give each node its own node IP: --primary and --secondary must be different machines")
		r.peer.ipOK = false
		r.peer.ipWhy = "both nodes have the same node IP (see " + IDInput + "nodes)"
	}
	if !r.peer.apiOK {
		r.problem("port.api", "the peer's node API port is valid",
			fmt.Sprintf("node API port of %s is %d", r.peer.label, r.peer.APIPort),
			"give the node API port of tandemd on the peer (1-65535)")
	}
	if !r.peer.pgOK {
		r.problem("port.postgres", "the peer's PostgreSQL port is valid",
			fmt.Sprintf("PostgreSQL port of %s is %d", r.peer.label, r.peer.PostgresPort),
			"give PostgreSQL's port on the peer (1-65535, usually 5432)")
	}

	// Cluster IP.
	switch {
	case in.NoClusterIP:
	case !in.ClusterIP.IsValid():
		r.problem("cluster_ip", "the cluster IP is given with its prefix",
			"no valid cluster IP with prefix length",
			"pass --cluster-ip IP/PREFIX with the subnet's prefix length, e.g. 10.77.0.10/24")
	default:
		a := in.ClusterIP.Addr()
		bits := in.ClusterIP.Bits()
		if a.Is4In6() {
			a = a.Unmap()
			bits -= 96
		}
		if msg := badHostAddr(a); msg != "" {
			r.problem("cluster_ip", "the cluster IP is a usable unicast address",
				"cluster IP: "+msg,
				"choose a free unicast address in the nodes' subnet as the cluster IP, e.g. 10.77.0.10/24")
			break
		}
		if bits < 0 || bits >= a.BitLen() {
			r.problem("cluster_ip", "the cluster IP carries the subnet's prefix length",
				fmt.Sprintf("%s: /%d leaves no room for the nodes in the subnet", in.ClusterIP, in.ClusterIP.Bits()),
				fmt.Sprintf("give the prefix length of the nodes' subnet, e.g. %s/24 (IPv4) or /64 (IPv6)", a))
			break
		}
		r.cip = a
		r.subnet = netip.PrefixFrom(a, bits).Masked()
		r.clusterOK = true
	}

	// DNS name.
	name := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(in.DNSName), "."))
	switch {
	case name == "":
		r.problem("dns_name", "the cluster DNS name is given",
			"no cluster DNS name",
			"pass --dns-name with the cluster's DNS name, e.g. db.example.com")
	case isIPLiteral(name):
		r.problem("dns_name", "the cluster DNS name is a name",
			fmt.Sprintf("%q is an address, not a name", in.DNSName),
			"pass --dns-name with a DNS name such as db.example.com, not an address")
	case !validName(name):
		r.problem("dns_name", "the cluster DNS name is a valid name",
			fmt.Sprintf("%q is not a valid DNS name", in.DNSName),
			"pass --dns-name with a valid DNS name: labels of letters, digits and '-', joined by dots, e.g. db.example.com")
	default:
		r.name = name
		r.nameOK = true
	}

	// DNS servers.
	// A bad --dns-server is reported by the dns.server check.
	r.res, r.resFrom, r.resErr = newResolver(in.DNSServer, in.resolvConf, r.timeout)
	r.serverOK = r.resErr == nil
	return r
}

func (r *runner) problem(field, title, detail, fix string) {
	r.inputProblems = append(r.inputProblems, Result{
		ID: IDInput + field, Title: title, Status: StatusProblem, Detail: detail, Fix: fix,
	})
}

// badHostAddr says what is wrong with a as a host address, or "".
func badHostAddr(a netip.Addr) string {
	switch {
	case !a.IsValid():
		return "missing"
	case a.Zone() != "":
		return fmt.Sprintf("%s has a zone; use an address without %%zone", a)
	case a.IsUnspecified():
		return fmt.Sprintf("%s is the unspecified address", a)
	case a.IsLoopback():
		return fmt.Sprintf("%s is a loopback address", a)
	case a.IsMulticast():
		return fmt.Sprintf("%s is a multicast address", a)
	case a.IsLinkLocalUnicast():
		return fmt.Sprintf("%s is a link-local address", a)
	case a.Is4() && a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return fmt.Sprintf("%s is the broadcast address", a)
	}
	return ""
}

func isIPLiteral(s string) bool {
	_, err := netip.ParseAddr(strings.Trim(s, "[]"))
	return err == nil
}

// validName reports whether s (lower case, no trailing dot) is a host name
// made of letters, digits, '-' and '_' labels.
func validName(s string) bool {
	if _, ok := dns.IsDomainName(s); !ok || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// skipped builds a skipped result.
func skipped(title, why string) Result {
	return Result{Title: title, Status: StatusSkipped, Detail: why}
}

func ok(title, detail string) Result {
	return Result{Title: title, Status: StatusOK, Detail: detail}
}

func problem(title, detail, fix string) Result {
	return Result{Title: title, Status: StatusProblem, Detail: detail, Fix: fix}
}

// localPrefixes returns this node's interface prefixes, read once.
func (r *runner) localPrefixes() ([]netip.Prefix, error) {
	r.localOnce.Do(func() {
		f := r.in.LocalPrefixes
		if f == nil {
			f = interfacePrefixes
		}
		ps, err := f()
		for i := range ps {
			if ps[i].Addr().Is4In6() {
				ps[i] = netip.PrefixFrom(ps[i].Addr().Unmap(), ps[i].Bits()-96)
			}
		}
		r.local, r.localErr = ps, err
	})
	return r.local, r.localErr
}

// interfacePrefixes reads the addresses of this machine's interfaces.
func interfacePrefixes() ([]netip.Prefix, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var out []netip.Prefix
	for _, ifc := range ifs {
		addrs, err := ifc.Addrs()
		if err != nil {
			return nil, fmt.Errorf("addresses of %s: %w", ifc.Name, err)
		}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(ipn.IP)
			if !ok {
				continue
			}
			ones, bits := ipn.Mask.Size()
			if bits == 0 {
				continue
			}
			if ip.Is4In6() {
				ip = ip.Unmap()
				if bits == 128 {
					ones -= 96
				}
			}
			p := netip.PrefixFrom(ip, ones)
			if p.IsValid() {
				out = append(out, p)
			}
		}
	}
	return out, nil
}
