//go:build linux

package clusterip

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
	"golang.org/x/net/ipv6"
)

// sysAnnouncer speaks ARP on an AF_PACKET socket and NDP on a raw ICMPv6
// socket. Sockets are opened per call (a probe or an announcement is a few
// frames) and bind to the calling thread's network namespace.
type sysAnnouncer struct{}

const writeTimeout = time.Second

// zeroMAC fills the ARP target hardware address, which RFC 5227 says to
// leave zero in probes and announcements.
var zeroMAC = net.HardwareAddr{0, 0, 0, 0, 0, 0}

func (a sysAnnouncer) Probe(ctx context.Context, l link, ip, src netip.Addr, timeout time.Duration) (bool, net.HardwareAddr, error) {
	if ip.Is4() {
		return probeARP(ctx, l, ip, src, timeout)
	}
	return probeNDP(ctx, l, ip, src, timeout)
}

func (a sysAnnouncer) Announce(l link, ip, src netip.Addr) error {
	if ip.Is4() {
		return announceARP(l, ip)
	}
	return announceNDP(l, ip, src)
}

// listenARP opens an AF_PACKET socket that sends and receives ARP, for
// probes: binding it waits for an RCU grace period (synchronize_net),
// milliseconds, since the kernel registers a receive hook for it.
func listenARP(l link) (*packet.Conn, error) { return openARP(l, int(ethernet.EtherTypeARP)) }

// sendOnlyARP opens an AF_PACKET socket that sends ARP frames and
// receives nothing, for announcements. With protocol 0 the kernel
// registers no receive hook, so nothing waits for a grace period: that
// wait, 5–20 ms measured in the lab, came between a new primary taking the
// cluster IP and its first gratuitous ARP, while clients still sent to the
// old holder's MAC address and lost what they sent. The kernel takes the
// frame's protocol from its Ethernet header (packet_parse_headers).
func sendOnlyARP(l link) (*packet.Conn, error) { return openARP(l, 0) }

func openARP(l link, proto int) (*packet.Conn, error) {
	if len(l.MAC) != 6 {
		return nil, fmt.Errorf("interface %s has no Ethernet address; ARP needs one", l.Name)
	}
	c, err := packet.Listen(&net.Interface{Index: l.Index, Name: l.Name, HardwareAddr: l.MAC}, packet.Raw, proto, nil)
	if err != nil {
		return nil, fmt.Errorf("while opening an ARP socket on %s: %w", l.Name, err)
	}
	return c, nil
}

func writeARP(c *packet.Conn, l link, p *arp.Packet) error {
	pb, err := p.MarshalBinary()
	if err != nil {
		return err
	}
	fb, err := (&ethernet.Frame{
		Destination: ethernet.Broadcast,
		Source:      l.MAC,
		EtherType:   ethernet.EtherTypeARP,
		Payload:     pb,
	}).MarshalBinary()
	if err != nil {
		return err
	}
	if err := c.SetWriteDeadline(time.Now().Add(writeTimeout)); err != nil {
		return err
	}
	_, err = c.WriteTo(fb, &packet.Addr{HardwareAddr: ethernet.Broadcast})
	return err
}

// probeARP broadcasts "who has ip" and waits for anyone but us to claim it.
//
// The sender IP is our node IP, not 0.0.0.0 as in an RFC 5227 probe. That
// form exists for hosts with no address yet; we have one, and a plain
// request from it is answered by every stack, including Linux with
// arp_ignore=2, which ignores requests whose sender is outside the subnet
// (0.0.0.0 is). The only cache entry it can create elsewhere is node IP ->
// our MAC, which is true anyway. 0.0.0.0 is used only if the interface has
// no node IP. The request goes out twice (at 0 and timeout/2) so one lost
// frame does not hide a holder.
func probeARP(ctx context.Context, l link, ip, src netip.Addr, timeout time.Duration) (bool, net.HardwareAddr, error) {
	if !src.IsValid() || !src.Is4() {
		src = netip.IPv4Unspecified()
	}
	c, err := listenARP(l)
	if err != nil {
		return false, nil, err
	}
	defer c.Close()
	// Wake the read below at once when ctx ends (Release interrupts probes).
	stop := context.AfterFunc(ctx, func() { _ = c.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()

	req, err := arp.NewPacket(arp.OperationRequest, l.MAC, src, zeroMAC, ip)
	if err != nil {
		return false, nil, fmt.Errorf("while building an ARP probe for %s: %w", ip, err)
	}
	start := time.Now()
	end := start.Add(timeout)
	sends := []time.Time{start, start.Add(timeout / 2)}
	buf := make([]byte, 1600)
	for {
		if ctx.Err() != nil {
			return false, nil, ctx.Err()
		}
		now := time.Now()
		if !now.Before(end) {
			return false, nil, nil
		}
		wake := end
		for len(sends) > 0 && !now.Before(sends[0]) {
			if err := writeARP(c, l, req); err != nil {
				return false, nil, fmt.Errorf("while sending an ARP probe for %s on %s: %w", ip, l.Name, err)
			}
			sends = sends[1:]
		}
		if len(sends) > 0 && sends[0].Before(wake) {
			wake = sends[0]
		}
		if err := c.SetReadDeadline(wake); err != nil {
			return false, nil, err
		}
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			return false, nil, fmt.Errorf("while reading ARP answers on %s: %w", l.Name, err)
		}
		var f ethernet.Frame
		if f.UnmarshalBinary(buf[:n]) != nil || f.EtherType != ethernet.EtherTypeARP {
			continue
		}
		var p arp.Packet
		if p.UnmarshalBinary(f.Payload) != nil {
			continue
		}
		// A reply, or another host's own announcement, for ip. Frames from
		// our MAC are our own requests seen on the way out.
		if p.SenderIP == ip && !bytes.Equal(p.SenderHardwareAddr, l.MAC) {
			return true, append(net.HardwareAddr(nil), p.SenderHardwareAddr...), nil
		}
	}
}

// announceARP sends a gratuitous ARP in the request form (sender IP = target
// IP = ip, broadcast): the RFC 5227 "ARP announcement". Every stack runs a
// broadcast request through its ARP input, while some ignore unsolicited
// replies; Linux treats either as gratuitous and lets it override an entry
// still inside its locktime.
func announceARP(l link, ip netip.Addr) error {
	c, err := sendOnlyARP(l)
	if err != nil {
		return err
	}
	// Closing a packet socket waits for an RCU grace period
	// (synchronize_net in packet_release, milliseconds): not on the
	// caller's path, which is a switchover's or a failover's.
	defer func() { go c.Close() }()
	p, err := arp.NewPacket(arp.OperationRequest, l.MAC, ip, zeroMAC, ip)
	if err != nil {
		return fmt.Errorf("while building a gratuitous ARP for %s: %w", ip, err)
	}
	if err := writeARP(c, l, p); err != nil {
		return fmt.Errorf("while sending a gratuitous ARP for %s on %s: %w", ip, l.Name, err)
	}
	return nil
}

// listenNDP opens an ICMPv6 socket bound to src, else to a link-local
// address, else unbound (the kernel picks the source).
func listenNDP(l link, src netip.Addr) (*ndp.Conn, error) {
	ifi, err := net.InterfaceByIndex(l.Index)
	if err != nil {
		return nil, fmt.Errorf("while looking up interface %s: %w", l.Name, err)
	}
	tries := []ndp.Addr{ndp.LinkLocal, ndp.Unspecified}
	if src.IsValid() {
		tries = append([]ndp.Addr{ndp.Addr(src.WithZone("").String())}, tries...)
	}
	var errs []error
	for _, a := range tries {
		c, _, err := ndp.Listen(ifi, a)
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("while opening an NDP socket on %s: %w", l.Name, errors.Join(errs...))
}

// probeNDP sends a neighbour solicitation for ip to its solicited-node
// multicast group (the group every holder of ip listens on) and waits for a
// neighbour advertisement from another host. The source is our node IP, so
// the holder answers us by unicast; the unspecified source of kernel DAD
// would also make a host that is itself still adding ip drop it. Sent twice,
// like the ARP probe.
func probeNDP(ctx context.Context, l link, ip, src netip.Addr, timeout time.Duration) (bool, net.HardwareAddr, error) {
	c, err := listenNDP(l, src)
	if err != nil {
		return false, nil, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()

	var filter ipv6.ICMPFilter
	filter.SetAll(true)
	filter.Accept(ipv6.ICMPTypeNeighborAdvertisement)
	if err := c.SetICMPFilter(&filter); err != nil {
		return false, nil, fmt.Errorf("while filtering ICMPv6 on %s: %w", l.Name, err)
	}
	group, err := ndp.SolicitedNodeMulticast(ip)
	if err != nil {
		return false, nil, err
	}
	ns := &ndp.NeighborSolicitation{
		TargetAddress: ip,
		Options:       []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: l.MAC}},
	}
	start := time.Now()
	end := start.Add(timeout)
	sends := []time.Time{start, start.Add(timeout / 2)}
	for {
		if ctx.Err() != nil {
			return false, nil, ctx.Err()
		}
		now := time.Now()
		if !now.Before(end) {
			return false, nil, nil
		}
		wake := end
		for len(sends) > 0 && !now.Before(sends[0]) {
			if err := c.SetWriteDeadline(now.Add(writeTimeout)); err != nil {
				return false, nil, err
			}
			if err := c.WriteTo(ns, nil, group); err != nil {
				return false, nil, fmt.Errorf("while sending a neighbour solicitation for %s on %s: %w", ip, l.Name, err)
			}
			sends = sends[1:]
		}
		if len(sends) > 0 && sends[0].Before(wake) {
			wake = sends[0]
		}
		if err := c.SetReadDeadline(wake); err != nil {
			return false, nil, err
		}
		msg, _, _, err := c.ReadFrom()
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			return false, nil, fmt.Errorf("while reading neighbour advertisements on %s: %w", l.Name, err)
		}
		na, ok := msg.(*ndp.NeighborAdvertisement)
		if !ok || na.TargetAddress.WithZone("") != ip {
			continue
		}
		mac := targetMAC(na)
		if bytes.Equal(mac, l.MAC) {
			continue // our own, looped back
		}
		return true, mac, nil
	}
}

func targetMAC(na *ndp.NeighborAdvertisement) net.HardwareAddr {
	for _, o := range na.Options {
		if lla, ok := o.(*ndp.LinkLayerAddress); ok && lla.Direction == ndp.Target {
			return append(net.HardwareAddr(nil), lla.Addr...)
		}
	}
	return nil
}

// announceNDP sends an unsolicited neighbour advertisement to all nodes with
// the override flag, so neighbours replace an entry pointing at the former
// holder (RFC 4861 7.2.6).
func announceNDP(l link, ip, src netip.Addr) error {
	c, err := listenNDP(l, src)
	if err != nil {
		return err
	}
	defer c.Close()
	na := &ndp.NeighborAdvertisement{
		Override:      true,
		TargetAddress: ip,
		Options:       []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: l.MAC}},
	}
	if err := c.SetWriteDeadline(time.Now().Add(writeTimeout)); err != nil {
		return err
	}
	if err := c.WriteTo(na, nil, netip.IPv6LinkLocalAllNodes()); err != nil {
		return fmt.Errorf("while sending a neighbour advertisement for %s on %s: %w", ip, l.Name, err)
	}
	return nil
}
