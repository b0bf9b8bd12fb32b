package clusterip

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// What the relay takes for the cluster IP's: packets to it, and the new
// holder's announcement (ARP, or a neighbour advertisement for it);
// nothing else.
func TestClassify(t *testing.T) {
	v4 := netip.MustParseAddr("10.98.0.10")
	v6 := netip.MustParseAddr("fd00:98::10")
	src := net.HardwareAddr{2, 0, 0, 0, 0, 9}
	eth := func(etype uint16, payload []byte) []byte {
		f := append(make([]byte, 0, 14+len(payload)), 2, 0, 0, 0, 0, 1)
		f = append(f, src...)
		f = append(f, byte(etype>>8), byte(etype))
		return append(f, payload...)
	}
	ipv4 := func(dst netip.Addr, flags byte) []byte {
		h := make([]byte, 40)
		h[0], h[9] = 0x45, protoTCP
		copy(h[16:], dst.AsSlice())
		h[20+13] = flags
		return h
	}
	arpFrom := func(sender netip.Addr) []byte {
		a := make([]byte, 28)
		copy(a[14:18], sender.AsSlice())
		return a
	}
	ipv6 := func(next byte, dst netip.Addr, l4 []byte) []byte {
		h := make([]byte, 40)
		h[0] = 0x60
		h[6] = next
		copy(h[24:], dst.AsSlice())
		return append(h, l4...)
	}
	tcp := func(flags byte) []byte {
		h := make([]byte, 20)
		h[13] = flags
		return h
	}
	const syn, ack, rst = 0x02, 0x10, 0x04
	na := func(target netip.Addr) []byte {
		m := make([]byte, 24)
		m[0] = icmpv6NA
		copy(m[8:], target.AsSlice())
		return m
	}
	other4, other6 := netip.MustParseAddr("10.98.0.11"), netip.MustParseAddr("fd00:98::11")
	for _, c := range []struct {
		name  string
		frame []byte
		ip    netip.Addr
		want  frameKind
	}{
		{"an IPv4 connection attempt to the cluster IP", eth(etherIPv4, ipv4(v4, syn)), v4, frameToIP},
		{"an IPv4 segment of a connection to the cluster IP", eth(etherIPv4, ipv4(v4, ack)), v4, frameOther},
		{"an IPv4 reset to the cluster IP", eth(etherIPv4, ipv4(v4, rst|ack)), v4, frameOther},
		{"a SYN-ACK to the cluster IP", eth(etherIPv4, ipv4(v4, syn|ack)), v4, frameOther},
		{"an IPv4 attempt elsewhere", eth(etherIPv4, ipv4(other4, syn)), v4, frameOther},
		{"ARP from the cluster IP", eth(etherARP, arpFrom(v4)), v4, frameAnnounce},
		{"ARP from another host", eth(etherARP, arpFrom(other4)), v4, frameOther},
		{"an IPv6 connection attempt to the cluster IP", eth(etherIPv6, ipv6(6, v6, tcp(syn))), v6, frameToIP},
		{"an IPv6 segment to the cluster IP", eth(etherIPv6, ipv6(6, v6, tcp(ack))), v6, frameOther},
		{"UDP to the cluster IP", eth(etherIPv6, ipv6(17, v6, tcp(syn))), v6, frameOther},
		{"an IPv6 attempt elsewhere", eth(etherIPv6, ipv6(6, other6, tcp(syn))), v6, frameOther},
		{"an advertisement of the cluster IP", eth(etherIPv6, ipv6(protoICMPv6, netip.MustParseAddr("ff02::1"), na(v6))), v6, frameAnnounce},
		{"an advertisement of another address", eth(etherIPv6, ipv6(protoICMPv6, netip.MustParseAddr("ff02::1"), na(other6))), v6, frameOther},
		{"IPv4 while the cluster IP is IPv6", eth(etherIPv4, ipv4(v4, syn)), v6, frameOther},
		{"truncated", eth(etherIPv4, ipv4(v4, syn))[:20], v4, frameOther},
		{"truncated before the flags", eth(etherIPv4, ipv4(v4, syn))[:14+20+10], v4, frameOther},
		{"runt", []byte{1, 2, 3}, v4, frameOther},
	} {
		got, from := classify(c.frame, c.ip)
		if got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
		if got != frameOther && from.String() != src.String() {
			t.Errorf("%s: from %s, want %s", c.name, from, src)
		}
	}
	for _, ip := range []netip.Addr{v4, v6} {
		if _, err := relayFilter(ip); err != nil {
			t.Errorf("the filter for %s does not assemble: %v", ip, err)
		}
	}
}

// TestRelayCarriesTheHandover: a client, the old primary and the new one on
// one bridge, each in its own namespace. The old primary drops the cluster
// IP; a connection attempt made before the new primary announces it goes
// to the old primary's MAC address. Without a relay it is lost (the client
// waits for its SYN's retransmission, a second away); with one it is
// carried to the new primary once that announces itself, and the
// connection opens.
func TestRelayCarriesTheHandover(t *testing.T) {
	requireRoot(t)
	t.Run("IPv4", func(t *testing.T) { relayHandover(t, "4", netip.MustParsePrefix("10.98.0.10/24"), "10.98.0.%d/24") })
	t.Run("IPv6", func(t *testing.T) { relayHandover(t, "6", netip.MustParsePrefix("fd00:98::10/64"), "fd00:98::%d/64") })
}

func relayHandover(t *testing.T, family string, vip netip.Prefix, addrFmt string) {
	network := "tcp" + family
	n := newBridged(t, family, addrFmt)
	const port = 15432
	addVIP := func(ns string) {
		args := []string{"-n", ns, "addr", "add", vip.String(), "dev", "eth0"}
		if family == "6" {
			args = append(args, "nodad")
		}
		ipCmd(t, args...)
	}
	announce := func(t *testing.T, role string) {
		inNS(t, n.ns[role], func() (struct{}, error) {
			ifi, err := net.InterfaceByName("eth0")
			if err != nil {
				return struct{}{}, err
			}
			l := link{Index: ifi.Index, Name: ifi.Name, MAC: ifi.HardwareAddr}
			if family == "6" {
				return struct{}{}, announceNDP(l, vip.Addr(), n.addr[role])
			}
			return struct{}{}, announceARP(l, vip.Addr())
		})
	}
	ln := inNS(t, n.ns["new"], func() (net.Listener, error) { return net.Listen(network, fmt.Sprintf(":%d", port)) })
	defer ln.Close()
	accepted := make(chan string, 8)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c.RemoteAddr().String()
			c.Close()
		}
	}()
	target := netip.AddrPortFrom(vip.Addr(), port).String()
	dial := func(timeout time.Duration) <-chan error {
		out := make(chan error, 1)
		go func() {
			c, err := inNSErr(n.ns["client"], func() (net.Conn, error) { return net.DialTimeout(network, target, timeout) })
			if err == nil {
				c.Close()
			}
			out <- err
		}()
		return out
	}
	// The old primary holds the address; the client has its MAC address
	// (the attempt is refused: nothing listens there).
	addVIP(n.ns["old"])
	if err := <-dial(2 * time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("an attempt at the old primary: %v, want it refused", err)
	}

	handover := func(t *testing.T, relay *Relay) (time.Duration, error) {
		relay.Hold()
		ipCmd(t, "-n", n.ns["old"], "addr", "del", vip.String(), "dev", "eth0")
		res := dial(800 * time.Millisecond)
		select {
		case err := <-res:
			t.Fatalf("the attempt ended before anyone held the address: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
		addVIP(n.ns["new"])
		announced := time.Now()
		announce(t, "new")
		err := <-res
		return time.Since(announced), err
	}
	giveBack := func(t *testing.T) {
		ipCmd(t, "-n", n.ns["new"], "addr", "del", vip.String(), "dev", "eth0")
		addVIP(n.ns["old"])
		announce(t, "old")
		time.Sleep(50 * time.Millisecond)
	}

	t.Run("without a relay the attempt is lost", func(t *testing.T) {
		_, err := handover(t, nil)
		if err == nil {
			t.Fatal("the attempt made while nobody held the address succeeded without a relay: this test no longer shows what the relay is for")
		}
		giveBack(t)
	})
	t.Run("with a relay it reaches the new primary", func(t *testing.T) {
		relay := inNS(t, n.ns["old"], func() (*Relay, error) {
			ifi, err := net.InterfaceByName("eth0")
			if err != nil {
				return nil, err
			}
			return openRelay(ifi, vip.Addr())
		})
		defer relay.Close()
		// Before Hold the old primary's kernel answers: nothing is kept.
		if err := <-dial(2 * time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("an attempt at the old primary before Hold: %v, want it refused there", err)
		}
		after, err := handover(t, relay)
		if err != nil {
			t.Fatalf("the attempt made while nobody held the address: %v, want it carried to the new primary (relay %+v)", err, relay.Stats())
		}
		t.Logf("the connection opened %s after the announcement (relay %+v)", after.Round(time.Microsecond), relay.Stats())
		select {
		case from := <-accepted:
			if ap, err := netip.ParseAddrPort(from); err != nil || ap.Addr() != n.addr["client"] {
				t.Errorf("the new primary accepted from %s, want the client %s", from, n.addr["client"])
			}
		case <-time.After(time.Second):
			t.Fatal("the new primary accepted nothing")
		}
		if got := relay.To().String(); got != n.mac["new"] {
			t.Errorf("relayed to %s, want the new primary's %s", got, n.mac["new"])
		}
		if s := relay.Stats(); s.Relayed < 1 || s.Dropped != 0 {
			t.Errorf("relay stats %+v: want at least the one SYN relayed and nothing dropped", s)
		}
	})
}

// bridged is a client, an old and a new primary on one bridge, each in a
// namespace with eth0.
type bridged struct {
	ns, mac map[string]string
	addr    map[string]netip.Addr
}

func newBridged(t *testing.T, family, addrFmt string) bridged {
	t.Helper()
	base := fmt.Sprintf("tr%d%s", os.Getpid()%100000, family)
	b := bridged{ns: map[string]string{}, mac: map[string]string{}, addr: map[string]netip.Addr{}}
	sw := base + "sw"
	for _, ns := range []string{sw, base + "old", base + "new", base + "cli"} {
		ipCmd(t, "netns", "add", ns)
		t.Cleanup(func() {
			if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
				t.Errorf("cleanup: ip netns del %s: %v: %s", ns, err, out)
			}
		})
		ipCmd(t, "-n", ns, "link", "set", "lo", "up")
	}
	ipCmd(t, "-n", sw, "link", "add", "br0", "type", "bridge")
	ipCmd(t, "-n", sw, "link", "set", "br0", "up")
	for i, role := range []string{"old", "new", "client"} {
		ns := base + map[string]string{"old": "old", "new": "new", "client": "cli"}[role]
		b.ns[role] = ns
		ipCmd(t, "-n", sw, "link", "add", role, "type", "veth", "peer", "name", "eth0", "netns", ns)
		ipCmd(t, "-n", sw, "link", "set", role, "master", "br0", "up")
		p := netip.MustParsePrefix(fmt.Sprintf(addrFmt, 11+i))
		b.addr[role] = p.Addr()
		args := []string{"-n", ns, "addr", "add", p.String(), "dev", "eth0"}
		if family == "6" {
			args = append(args, "nodad") // usable at once, as on a long-running node
		}
		ipCmd(t, args...)
		ipCmd(t, "-n", ns, "link", "set", "eth0", "up")
		b.mac[role] = macOfDev(t, ns, "eth0")
	}
	return b
}

func macOfDev(t *testing.T, ns, dev string) string {
	t.Helper()
	out := inNS(t, ns, func() (string, error) {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return "", err
		}
		return ifi.HardwareAddr.String(), nil
	})
	return out
}

// inNS runs f on a thread in the named namespace: sockets opened there
// stay in it.
func inNS[T any](t *testing.T, name string, f func() (T, error)) T {
	t.Helper()
	v, err := inNSErr(name, f)
	if err != nil {
		t.Fatalf("in %s: %v", name, err)
	}
	return v
}

func inNSErr[T any](name string, f func() (T, error)) (T, error) {
	var zero T
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return zero, err
	}
	defer orig.Close()
	target, err := netns.GetFromName(name)
	if err != nil {
		runtime.UnlockOSThread()
		return zero, err
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		return zero, err
	}
	v, ferr := f()
	if err := netns.Set(orig); err != nil {
		// This thread stays in the other namespace: leave it locked, so it
		// ends with the goroutine instead of running anything else.
		return v, errors.Join(ferr, err)
	}
	runtime.UnlockOSThread()
	return v, ferr
}

// A relayed TCP or UDP packet carries a checksum its receiver accepts,
// whatever the captured one held (a local sender on a virtual link leaves
// it for hardware that is never on this path); a valid one is unchanged.
func TestFixChecksum(t *testing.T) {
	tcp4 := func() []byte {
		f := make([]byte, 14+20+20+3)
		f[12], f[13] = 0x08, 0x00
		ip := f[14:]
		ip[0], ip[8], ip[9] = 0x45, 64, 6
		binary.BigEndian.PutUint16(ip[2:], 20+20+3)
		copy(ip[12:], []byte{10, 98, 0, 13})
		copy(ip[16:], []byte{10, 98, 0, 10})
		l4 := ip[20:]
		binary.BigEndian.PutUint16(l4[0:], 40000)
		binary.BigEndian.PutUint16(l4[2:], 5432)
		l4[12], l4[13] = 5<<4, 0x02 // SYN
		copy(l4[20:], "abc")        // odd length on purpose
		l4[16], l4[17] = 0xde, 0xad // a partial checksum
		return f
	}
	udp6 := func() []byte {
		f := make([]byte, 14+40+8+5)
		f[12], f[13] = 0x86, 0xdd
		ip := f[14:]
		ip[0], ip[6], ip[7] = 0x60, 17, 64
		binary.BigEndian.PutUint16(ip[4:], 8+5)
		copy(ip[8:], netip.MustParseAddr("fd00:98::13").AsSlice())
		copy(ip[24:], netip.MustParseAddr("fd00:98::10").AsSlice())
		l4 := ip[40:]
		binary.BigEndian.PutUint16(l4[4:], 8+5)
		copy(l4[8:], "hello")
		return f
	}
	verify := func(name string, f []byte) {
		t.Helper()
		var pseudo, l4 []byte
		if f[12] == 0x08 {
			ip := f[14:]
			l4 = ip[20:binary.BigEndian.Uint16(ip[2:])]
			pseudo = append(append([]byte(nil), ip[12:20]...), 0, ip[9], byte(len(l4)>>8), byte(len(l4)))
		} else {
			ip := f[14:]
			l4 = ip[40:]
			pseudo = append(append([]byte(nil), ip[8:40]...), 0, 0, byte(len(l4)>>8), byte(len(l4)), 0, 0, 0, ip[6])
		}
		if got := fold(onesSum(onesSum(0, pseudo), l4)); got != 0xffff {
			t.Errorf("%s: the receiver's check sums to %#04x, want 0xffff", name, got)
		}
	}
	for _, c := range []struct {
		name string
		f    []byte
	}{{"IPv4 TCP", tcp4()}, {"IPv6 UDP", udp6()}} {
		f := c.f
		fixChecksum(f)
		verify(c.name, f)
		again := append([]byte(nil), f...)
		fixChecksum(again)
		if string(again) != string(f) {
			t.Errorf("%s: a valid checksum was changed", c.name)
		}
	}
}
