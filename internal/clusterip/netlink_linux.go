//go:build linux

package clusterip

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func newSystem() (links, announcer) { return netlinkLinks{}, sysAnnouncer{} }

// netlinkLinks uses the netlink package's default handle, which opens a
// socket per request in the namespace of the calling thread; tandemd runs
// wholly inside the node's namespace, so every thread is in the right one.
type netlinkLinks struct{}

func (netlinkLinks) List() ([]link, error) {
	var (
		nls   []netlink.Link
		addrs []netlink.Addr
		err   error
	)
	// A dump interrupted by a concurrent change is inconsistent; retry.
	for range 3 {
		if nls, err = netlink.LinkList(); err == nil {
			if addrs, err = netlink.AddrList(nil, netlink.FAMILY_ALL); err == nil {
				break
			}
		}
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("while listing interfaces and addresses with netlink: %w", err)
	}
	out := make([]link, 0, len(nls))
	at := make(map[int]int, len(nls))
	for _, nl := range nls {
		a := nl.Attrs()
		at[a.Index] = len(out)
		out = append(out, link{Index: a.Index, Name: a.Name, MAC: a.HardwareAddr})
	}
	for _, a := range addrs {
		i, ok := at[a.LinkIndex]
		if !ok || a.IPNet == nil {
			continue
		}
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		bits, _ := a.Mask.Size()
		out[i].Addrs = append(out[i].Addrs, ifAddr{
			Prefix:    netip.PrefixFrom(ip.Unmap(), bits),
			Tentative: a.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) != 0,
		})
	}
	return out, nil
}

func (netlinkLinks) Add(l link, p netip.Prefix) error {
	err := netlink.AddrAdd(nil, nlAddr(l.Index, p))
	if errors.Is(err, unix.EEXIST) {
		return nil // added meanwhile (by us or by hand): the goal is met
	}
	return err
}

func (netlinkLinks) Del(l link, p netip.Prefix) error {
	a := &netlink.Addr{IPNet: ipNet(p), LinkIndex: l.Index}
	err := netlink.AddrDel(nil, a)
	if errors.Is(err, unix.EADDRNOTAVAIL) || errors.Is(err, unix.ESRCH) || errors.Is(err, unix.ENODEV) {
		return nil // already gone
	}
	return err
}

// forever is the kernel's infinite address lifetime (INFINITY_LIFE_TIME).
var forever = ^uint32(0)

// nlAddr builds the cluster IP's address. IPv6 gets IFA_F_NODAD because we
// probe ourselves (kernel DAD would hold the address tentative for a second
// or more), and a preferred lifetime of 0 with an infinite valid lifetime:
// "deprecated" addresses still accept traffic but are never picked as the
// source of new outgoing connections, so replication and other outbound
// traffic keep using the node IP and do not break when the cluster IP moves.
// IPv4 needs neither: a second address in a subnet is a secondary, and the
// kernel sources from the primary (the node IP).
func nlAddr(index int, p netip.Prefix) *netlink.Addr {
	a := &netlink.Addr{IPNet: ipNet(p), LinkIndex: index}
	if p.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD
		a.PreferedLft = 0
		a.ValidLft = int(forever)
	}
	return a
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func (netlinkLinks) Watch(ctx context.Context) (<-chan struct{}, error) {
	updates := make(chan netlink.AddrUpdate, 16)
	if err := netlink.AddrSubscribeWithOptions(updates, ctx.Done(), netlink.AddrSubscribeOptions{}); err != nil {
		return nil, fmt.Errorf("while subscribing to netlink address updates: %w", err)
	}
	out := make(chan struct{}, 1)
	go func() {
		defer close(out)
		// Drain until the library closes updates (ctx done or a receive
		// error), so its goroutine never blocks on a send.
		for range updates {
			select {
			case out <- struct{}{}:
			default: // one pending wake-up is enough: reconcile reads the whole table
			}
		}
	}()
	return out, nil
}
