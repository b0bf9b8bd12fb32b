package clusterip

import (
	"fmt"
	"net/netip"
)

// pickInterface returns the interface the cluster IP belongs on: the named
// one, or the one with a configured address whose subnet holds the cluster
// IP. With several, the most specific subnet wins, then the lowest index, so
// the choice is stable across passes.
func pickInterface(ls []link, name string, vip netip.Prefix) (link, error) {
	if name != "" {
		for _, l := range ls {
			if l.Name == name {
				return l, nil
			}
		}
		return link{}, fmt.Errorf("interface %q for cluster IP %s not found", name, vip.Addr())
	}
	var best link
	bestBits := -1
	for _, l := range ls {
		for _, a := range l.Addrs {
			if !nodeSubnetHolds(a.Prefix, vip.Addr()) {
				continue
			}
			if a.Prefix.Bits() > bestBits || (a.Prefix.Bits() == bestBits && l.Index < best.Index) {
				best, bestBits = l, a.Prefix.Bits()
			}
		}
	}
	if bestBits < 0 {
		return link{}, fmt.Errorf("no interface has an address in %s: the cluster IP must be in the node IPs' subnet", vip.Masked())
	}
	return best, nil
}

// nodeSubnetHolds reports whether a is a node address (not the cluster IP
// itself, not link-local) whose subnet contains ip.
func nodeSubnetHolds(a netip.Prefix, ip netip.Addr) bool {
	na := a.Addr()
	if na == ip || na.BitLen() != ip.BitLen() || na.IsLinkLocalUnicast() || na.IsLoopback() {
		return false
	}
	return a.Masked().Contains(ip)
}

// sourceFor picks the address to send probes and announcements from: the
// node IP in the cluster IP's subnet, else (IPv6) a link-local address. An
// invalid result lets the announcer fall back (0.0.0.0 for ARP, the
// kernel's choice for NDP).
func sourceFor(l link, vip netip.Prefix) netip.Addr {
	var linkLocal netip.Addr
	for _, a := range l.Addrs {
		if a.Tentative {
			continue
		}
		if nodeSubnetHolds(a.Prefix, vip.Addr()) {
			return a.Prefix.Addr()
		}
		if vip.Addr().Is6() && a.Prefix.Addr().Is6() && a.Prefix.Addr().IsLinkLocalUnicast() && !linkLocal.IsValid() {
			linkLocal = a.Prefix.Addr()
		}
	}
	return linkLocal
}
