//go:build e2e

package e2e

import (
	"net"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// clusterIPHoldersNow names the nodes that held ip on an interface that is
// up over one look, and proves it: every node is read twice, in the order
// a, b, a, b, through netlink sockets opened in the nodes' namespaces
// beforehand (tens of microseconds a read). A node counts only if both of
// its reads saw the address, so two nodes counted held it at the same
// moment (between the second node's first read and the first node's
// second read). A handover — one drops the address, the other takes it a
// millisecond later — that falls between two reads is not mistaken for
// two holders, as one pass that spawns `ip` per node (milliseconds each)
// could. A node whose namespace cannot be read is not counted.
func clusterIPHoldersNow(names, namespaces []string, ip string) []string {
	want := net.ParseIP(ip)
	handles := make([]*netlink.Handle, len(names))
	for i, ns := range namespaces {
		h, err := netns.GetFromName(ns)
		if err != nil {
			continue
		}
		nh, err := netlink.NewHandleAt(h)
		h.Close()
		if err != nil {
			continue
		}
		handles[i] = nh
		defer nh.Close()
	}
	seen := make([]int, len(names))
	for pass := 0; pass < 2; pass++ {
		for i, h := range handles {
			if h != nil && holdsUp(h, want) {
				seen[i]++
			}
		}
	}
	var out []string
	for i, n := range seen {
		if n == 2 {
			out = append(out, names[i])
		}
	}
	return out
}

// holdsUp reports whether the namespace of h has ip on a link that is up.
func holdsUp(h *netlink.Handle, ip net.IP) bool {
	addrs, err := h.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if a.IP.Equal(ip) {
			link, err := h.LinkByIndex(a.LinkIndex)
			if err == nil && link.Attrs().Flags&net.FlagUp != 0 {
				return true
			}
		}
	}
	return false
}
