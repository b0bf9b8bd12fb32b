package lab

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
)

// The cross-subnet lab (`lab up --cross-subnet`, issue 14): a and b in two
// subnets of their own, the other hosts (client, dns, and w or e1-e3) in a
// third, joined by a router namespace. Two nodes in different subnets
// share no address, so such a cluster has no cluster IP: its DNS name is
// an A record that the primary points at itself by dynamic update, which is
// why the DNS server is BIND 9 here (dnsmasq takes no updates) with a TSIG
// key the lab makes (bind.go).
//
// Each subnet is a bridge in the switch namespace, as the one subnet of
// the default lab is, and the router has a port on each. Keeping hosts on
// bridges leaves a host's eth0 as it is in the default lab, so power-off,
// pause and the tc-based faults work alike; only their matching changes
// for peers across the router (see tcPlan).

const (
	// DefaultCrossSubnet is the range a cross-subnet lab's subnets are
	// carved from when no --subnet is given: 10.77.1.0/24 (a),
	// 10.77.2.0/24 (b) and 10.77.3.0/24 (client, dns and the quorum's hosts).
	DefaultCrossSubnet = "10.77.0.0/16"
	// RouterSuffix names the router's namespace (<lab>-r).
	RouterSuffix = "r"
	// segmentBits is every segment's prefix length: one /24 per subnet
	// reads at a glance, and its reverse zone is a whole octet.
	segmentBits = 24
	// gatewayOffset is the router's address in each segment (.1).
	gatewayOffset = 1
)

// Segment is one subnet of a cross-subnet lab: a bridge in the switch
// namespace and the router's port on it.
type Segment struct {
	// Name is whose subnet it is: "a", "b", or "client" (which also holds
	// dns, w and e1-e3).
	Name   string `json:"name"`
	Subnet string `json:"subnet"` // 10.77.1.0/24
	Bridge string `json:"bridge"` // br1, in the switch namespace
	// Gateway is the router's address on the segment, every host's
	// default route there.
	Gateway string `json:"gateway"`
	// RouterIface is the router's interface (eth1, in the router's
	// namespace); RouterVeth is its peer on the bridge (veth-r1).
	RouterIface string `json:"router_iface"`
	RouterVeth  string `json:"router_veth"`
	RouterMAC   string `json:"router_mac"`
}

// segmentOwners are the segments in order: the nth is the (n+1)th /24 of
// the lab's range, so the default range gives 10.77.1.0/24 to a.
var segmentOwners = []string{"a", "b", "client"}

// planCrossSubnet plans a cross-subnet lab: the segments carved from the
// range, the router on .1 of each, and every host at its usual offset in
// its segment (a 10.77.1.11, b 10.77.2.12, client 10.77.3.100, dns
// 10.77.3.53, w 10.77.3.13, e1-e3 10.77.3.21-23), so that addresses and
// MACs read as in the default lab.
func planCrossSubnet(s Spec, failover string) (*Layout, error) {
	subnet := s.Subnet
	if subnet == "" {
		subnet = DefaultCrossSubnet
	}
	p, err := parseCrossSubnet(subnet)
	if err != nil {
		return nil, err
	}
	domain := s.Name + ".test"
	l := &Layout{
		Name:         s.Name,
		Dir:          filepath.Join(BaseDir, s.Name),
		Subnet:       p.String(),
		Domain:       domain,
		DNSName:      ClusterHost + "." + domain,
		SwitchNetns:  s.Name + "-" + SwitchSuffix,
		Failover:     failover,
		ExternalEtcd: s.ExternalEtcd,
		CrossSubnet:  true,
		RouterNetns:  s.Name + "-" + RouterSuffix,
	}
	for i, owner := range segmentOwners {
		n := i + 1
		sp := netip.PrefixFrom(hostAddr(p, n<<(32-segmentBits)), segmentBits)
		l.Segments = append(l.Segments, Segment{
			Name:        owner,
			Subnet:      sp.String(),
			Bridge:      fmt.Sprintf("br%d", n),
			Gateway:     hostAddr(sp, gatewayOffset).String(),
			RouterIface: fmt.Sprintf("eth%d", n),
			RouterVeth:  fmt.Sprintf("veth-r%d", n),
			RouterMAC:   routerMAC(n).String(),
		})
	}
	for _, ph := range hostPlan(failover, s.ExternalEtcd) {
		seg := l.Segments[len(l.Segments)-1]
		for _, sg := range l.Segments {
			if sg.Name == ph.name {
				seg = sg
			}
		}
		h := l.newHost(ph, netip.MustParsePrefix(seg.Subnet))
		h.Subnet, h.Gateway = seg.Subnet, seg.Gateway
		l.Hosts = append(l.Hosts, h)
	}
	dns, _ := l.Host("dns")
	l.DNSServer = dns.IP
	return l, nil
}

// parseCrossSubnet checks the range of a cross-subnet lab: IPv4 (the
// cross-subnet lab has no IPv6 form yet), large enough for the three /24s
// after its first.
func parseCrossSubnet(subnet string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(subnet)
	if err != nil || p.Addr().Zone() != "" || p.Addr().Is4In6() {
		return netip.Prefix{}, fmt.Errorf("--subnet %q must be an IPv4 prefix such as %s", subnet, DefaultCrossSubnet)
	}
	if p.Addr().Is6() {
		return netip.Prefix{}, fmt.Errorf("--cross-subnet builds an IPv4 lab only for now: give an IPv4 --subnet such as %s (or none), and no --ipv6", DefaultCrossSubnet)
	}
	if p.Bits() < 8 || p.Bits() > 22 {
		return netip.Prefix{}, fmt.Errorf("--subnet %q: --cross-subnet carves the 2nd, 3rd and 4th /24 out of it (for a, b and the client), so give /8 to /22, such as %s", subnet, DefaultCrossSubnet)
	}
	return p.Masked(), nil
}

// routerMAC is the MAC of the router's port on segment n (1-3):
// 02:74:6c:00:fe:0n. The router is on .1 everywhere, so its ports cannot
// repeat their address suffix as the hosts' MACs do.
func routerMAC(n int) net.HardwareAddr {
	return net.HardwareAddr{macPrefix[0], macPrefix[1], macPrefix[2], macPrefix[3], 0xfe, byte(n)}
}

// segmentOf is the segment host h is on, in a cross-subnet lab.
func (l *Layout) segmentOf(h Host) (Segment, bool) {
	for _, s := range l.Segments {
		if s.Subnet == h.Subnet {
			return s, true
		}
	}
	return Segment{}, false
}

// bridgeOf is the bridge h's veth is plugged into.
func (l *Layout) bridgeOf(h Host) string {
	if s, ok := l.segmentOf(h); ok {
		return s.Bridge
	}
	return BridgeName
}

// sameSegment tells whether frames from host from reach host to with
// from's own MAC as their source, rather than the router's: always in the
// default lab, only within one segment in a cross-subnet lab.
func (l *Layout) sameSegment(from, to Host) bool {
	return from.Subnet == to.Subnet
}
