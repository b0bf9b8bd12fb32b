package clusterip

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mdlayher/packet"
	"golang.org/x/net/bpf"
)

// A Relay carries what clients send to the cluster IP during a
// switchover's handover, when the old primary has dropped the address and
// the new one has not yet announced it. Clients still send to the old
// primary's MAC address then, and its kernel, no longer holding the
// address, drops what arrives: a connection attempt made in those few
// milliseconds is lost, and the client waits for its SYN's retransmission
// (a second on Linux) or its own connection timeout, far longer than the
// rest of the switchover.
//
// The old primary opens a Relay while it still holds the address (opening
// a packet socket takes no time on the critical path; closing one waits for
// an RCU grace period, so Close returns at once and closes behind). From
// Hold, called just before the address is dropped, it keeps the
// connection attempts (TCP SYNs) it captures for the cluster IP; when
// another host announces the address (its gratuitous ARP or unsolicited
// neighbour advertisement, which the old primary receives like every host
// on the link), it sends them on to that host's MAC address, and forwards
// the ones that follow until it closes. A relayed SYN reaches the new
// primary a few milliseconds late instead of never.
//
// Only connection attempts: a segment of a connection this host had is of
// no use to the new primary, which would answer it with a reset, and what
// the client then does with its connection is the same as without a relay.
// A SYN captured between Hold and the address's removal was also refused
// here (PostgreSQL is down by then); its copy at the new primary gets a
// SYN-ACK the client answers with a reset, as for any stale attempt. Hold
// comes first because the other order loses the attempts made between the
// removal and Hold, which can be milliseconds on a busy host.
//
// It never answers for the address, nor makes this host hold it: the
// invariant "at most one node holds the cluster IP" is untouched.
type Relay struct {
	conn *packet.Conn
	mac  net.HardwareAddr // this interface's
	ip   netip.Addr

	mu      sync.Mutex
	holding bool
	to      net.HardwareAddr // the announced new holder; nil until seen
	held    [][]byte

	relayed, dropped atomic.Int64
	done             chan struct{}
	closeOnce        sync.Once
}

// relayHoldMax bounds the frames kept before the new holder announces
// itself: a handover lasts milliseconds, and what piles up past this is
// not a few connection attempts.
const relayHoldMax = 512

// RelayStats says what a relay did.
type RelayStats struct {
	Relayed int64 // frames sent on to the new holder
	Dropped int64 // frames kept but never sent (no announcement, or too many)
}

// OpenRelay opens a relay for the cluster IP on the interface that holds
// it now. It needs the address held (or at least an interface chosen).
func (m *Manager) OpenRelay() (*Relay, error) {
	st := m.Status()
	if st.Address == "" || st.Interface == "" {
		return nil, errors.New("no cluster IP held here to relay for")
	}
	p, err := netip.ParsePrefix(st.Address)
	if err != nil {
		return nil, err
	}
	ifi, err := net.InterfaceByName(st.Interface)
	if err != nil {
		return nil, fmt.Errorf("while looking up interface %s: %w", st.Interface, err)
	}
	return openRelay(ifi, p.Addr())
}

func openRelay(ifi *net.Interface, ip netip.Addr) (*Relay, error) {
	if len(ifi.HardwareAddr) != 6 {
		return nil, fmt.Errorf("interface %s has no Ethernet address", ifi.Name)
	}
	filter, err := relayFilter(ip)
	if err != nil {
		return nil, err
	}
	c, err := packet.Listen(ifi, packet.Raw, ethPAll, nil)
	if err != nil {
		return nil, fmt.Errorf("while opening a packet socket on %s: %w", ifi.Name, err)
	}
	if err := c.SetBPF(filter); err != nil {
		go c.Close()
		return nil, fmt.Errorf("while filtering the packet socket on %s: %w", ifi.Name, err)
	}
	r := &Relay{conn: c, mac: ifi.HardwareAddr, ip: ip, done: make(chan struct{})}
	go r.run()
	return r, nil
}

// ethPAll: every protocol (the relay wants IPv4 or IPv6, and ARP).
const ethPAll = 0x0003

// Hold starts keeping the connection attempts that arrive for the cluster
// IP: call it just before the address is dropped, once nothing here
// accepts connections on it.
func (r *Relay) Hold() {
	if r == nil {
		return
	}
	r.mu.Lock()
	r.holding = true
	r.mu.Unlock()
}

// Close stops the relay; frames still kept are dropped. It returns at once.
func (r *Relay) Close() {
	if r == nil {
		return
	}
	r.closeOnce.Do(func() {
		r.mu.Lock()
		r.dropped.Add(int64(len(r.held)))
		r.held, r.holding = nil, false
		r.mu.Unlock()
		close(r.done)
		// The read loop sees the close as an error and ends.
		go r.conn.Close()
	})
}

// Stats says what the relay has done so far.
func (r *Relay) Stats() RelayStats {
	if r == nil {
		return RelayStats{}
	}
	return RelayStats{Relayed: r.relayed.Load(), Dropped: r.dropped.Load()}
}

// To is the MAC address the relay sends to, nil until a holder announced.
func (r *Relay) To() net.HardwareAddr {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.to
}

func (r *Relay) run() {
	buf := make([]byte, 65536+14)
	for {
		n, _, err := r.conn.ReadFrom(buf)
		if err != nil {
			select {
			case <-r.done:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		r.frame(buf[:n])
	}
}

// frame handles one captured frame (the filter already chose it; it is
// checked again here, so a frame captured before the filter was attached
// is judged like the rest).
func (r *Relay) frame(f []byte) {
	kind, src := classify(f, r.ip)
	if kind == frameOther || bytes.Equal(src, r.mac) {
		return // not for the cluster IP, or our own
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.holding {
		return
	}
	switch kind {
	case frameAnnounce:
		if r.to != nil {
			return
		}
		r.to = append(net.HardwareAddr(nil), src...)
		for _, h := range r.held {
			r.send(h)
		}
		r.held = nil
	case frameToIP:
		if r.to != nil {
			r.send(f)
			return
		}
		if len(r.held) >= relayHoldMax {
			r.dropped.Add(1)
			return
		}
		r.held = append(r.held, append([]byte(nil), f...))
	}
}

// send puts f back on the link addressed to the new holder (r.mu held).
func (r *Relay) send(f []byte) {
	fixChecksum(f)
	copy(f[0:6], r.to)
	copy(f[6:12], r.mac)
	_ = r.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := r.conn.WriteTo(f, &packet.Addr{HardwareAddr: r.to}); err != nil {
		r.dropped.Add(1)
		return
	}
	r.relayed.Add(1)
}

type frameKind int

const (
	frameOther    frameKind = iota
	frameToIP               // a TCP connection attempt (SYN) to the cluster IP
	frameAnnounce           // an ARP or neighbour advertisement naming the cluster IP as the sender's
)

// Offsets in an Ethernet frame (no VLAN tag: the kernel strips one before
// a packet socket on the tagged interface sees the frame).
const (
	offType      = 12
	offIPv4Dst   = 14 + 16
	offARPSendIP = 14 + 14
	offIPv6Next  = 14 + 6
	offIPv6Dst   = 14 + 24
	offICMPv6    = 14 + 40 // type, then code, checksum, flags, target at +8
	icmpv6NA     = 136
	protoICMPv6  = 58
	protoTCP     = 6
	etherIPv4    = 0x0800
	etherARP     = 0x0806
	etherIPv6    = 0x86dd
)

// classify says what f is to the relay, and who sent it.
func classify(f []byte, ip netip.Addr) (frameKind, net.HardwareAddr) {
	if len(f) < 14 {
		return frameOther, nil
	}
	src := net.HardwareAddr(f[6:12])
	at := func(off, n int) []byte {
		if len(f) < off+n {
			return nil
		}
		return f[off : off+n]
	}
	switch binary.BigEndian.Uint16(f[offType:]) {
	case etherIPv4:
		if d := at(offIPv4Dst, 4); ip.Is4() && d != nil && netip.AddrFrom4([4]byte(d)) == ip && f[14+9] == protoTCP {
			if h := at(14, 1); h != nil && isSYN(at(14+int(h[0]&0x0f)*4+13, 1)) {
				return frameToIP, src
			}
		}
	case etherARP:
		if s := at(offARPSendIP, 4); ip.Is4() && s != nil && netip.AddrFrom4([4]byte(s)) == ip {
			return frameAnnounce, src
		}
	case etherIPv6:
		if !ip.Is6() {
			return frameOther, nil
		}
		if nh := at(offIPv6Next, 1); nh != nil && nh[0] == protoICMPv6 {
			if t := at(offICMPv6, 1); t != nil && t[0] == icmpv6NA {
				if tgt := at(offICMPv6+8, 16); tgt != nil && netip.AddrFrom16([16]byte(tgt)) == ip {
					return frameAnnounce, src
				}
			}
		}
		if d := at(offIPv6Dst, 16); d != nil && netip.AddrFrom16([16]byte(d)) == ip && f[offIPv6Next] == protoTCP && isSYN(at(14+40+13, 1)) {
			return frameToIP, src
		}
	}
	return frameOther, nil
}

// isSYN: the TCP flags byte of a connection attempt (SYN without ACK).
func isSYN(flags []byte) bool {
	return flags != nil && flags[0]&0x12 == 0x02
}

// relayFilter is the kernel-side version of classify (without the
// neighbour advertisement's target check, which classify does), so that
// the relay's socket wakes only for what concerns the cluster IP; frames
// this host sends (packet type "outgoing") are left out.
func relayFilter(ip netip.Addr) ([]bpf.RawInstruction, error) {
	const pktOutgoing = 4
	var p bpfProgram
	p.op(bpf.LoadExtension{Num: bpf.ExtType})
	p.jeq(pktOutgoing, "drop", "")
	p.op(bpf.LoadAbsolute{Off: offType, Size: 2})
	if ip.Is4() {
		v := binary.BigEndian.Uint32(ip.AsSlice())
		p.jeq(etherIPv4, "", "arp")
		p.op(bpf.LoadAbsolute{Off: offIPv4Dst, Size: 4})
		p.jeq(v, "accept", "drop")
		p.label("arp")
		p.jeq(etherARP, "", "drop")
		p.op(bpf.LoadAbsolute{Off: offARPSendIP, Size: 4})
		p.jeq(v, "accept", "drop")
	} else {
		b := ip.As16()
		p.jeq(etherIPv6, "", "drop")
		for w := range 4 {
			p.op(bpf.LoadAbsolute{Off: uint32(offIPv6Dst + 4*w), Size: 4})
			t := ""
			if w == 3 {
				t = "accept"
			}
			p.jeq(binary.BigEndian.Uint32(b[4*w:]), t, "na")
		}
		p.label("na")
		p.op(bpf.LoadAbsolute{Off: offIPv6Next, Size: 1})
		p.jeq(protoICMPv6, "", "drop")
		p.op(bpf.LoadAbsolute{Off: offICMPv6, Size: 1})
		p.jeq(icmpv6NA, "accept", "drop")
	}
	p.label("drop")
	p.op(bpf.RetConstant{Val: 0})
	p.label("accept")
	p.op(bpf.RetConstant{Val: 1 << 18}) // the whole frame
	return p.assemble()
}

// bpfProgram assembles a classic BPF program whose jumps name labels ("" is
// the next instruction), so that no offset is counted by hand.
type bpfProgram struct {
	ops    []bpf.Instruction
	jumps  map[int][2]string
	labels map[string]int
}

func (p *bpfProgram) op(i bpf.Instruction) { p.ops = append(p.ops, i) }

func (p *bpfProgram) jeq(v uint32, ifTrue, ifFalse string) {
	if p.jumps == nil {
		p.jumps = map[int][2]string{}
	}
	p.jumps[len(p.ops)] = [2]string{ifTrue, ifFalse}
	p.ops = append(p.ops, bpf.JumpIf{Cond: bpf.JumpEqual, Val: v})
}

func (p *bpfProgram) label(name string) {
	if p.labels == nil {
		p.labels = map[string]int{}
	}
	p.labels[name] = len(p.ops)
}

func (p *bpfProgram) assemble() ([]bpf.RawInstruction, error) {
	skip := func(at int, to string) (uint8, error) {
		if to == "" {
			return 0, nil
		}
		t, ok := p.labels[to]
		if !ok || t <= at || t-at-1 > 255 {
			return 0, fmt.Errorf("bpf: bad jump from %d to %q", at, to)
		}
		return uint8(t - at - 1), nil
	}
	for at, j := range p.jumps {
		ji := p.ops[at].(bpf.JumpIf)
		var err error
		if ji.SkipTrue, err = skip(at, j[0]); err != nil {
			return nil, err
		}
		if ji.SkipFalse, err = skip(at, j[1]); err != nil {
			return nil, err
		}
		p.ops[at] = ji
	}
	return bpf.Assemble(p.ops)
}

// fixChecksum computes the TCP or UDP checksum of the packet in f again.
// A frame from a local sender on a virtual link (veth, a bridge to a
// container or VM) arrives with the checksum left for hardware to fill
// in, which never happens on this path: sent on unchanged, the new
// primary would drop it as corrupt. A frame that came off a wire had a
// valid checksum, which this recomputes to the same value (the Ethernet
// frame check already caught damage on the wire). Fragments and other
// protocols are left as they are.
func fixChecksum(f []byte) {
	if len(f) < 14 {
		return
	}
	var pseudo []byte
	var proto byte
	var l4 []byte
	switch binary.BigEndian.Uint16(f[offType:]) {
	case etherIPv4:
		ip := f[14:]
		if len(ip) < 20 || ip[0]>>4 != 4 {
			return
		}
		ihl := int(ip[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(ip[2:]))
		if ihl < 20 || total < ihl || total > len(ip) {
			return
		}
		if binary.BigEndian.Uint16(ip[6:])&0x3fff != 0 {
			return // a fragment: the checksum spans fragments
		}
		proto, l4 = ip[9], ip[ihl:total]
		pseudo = make([]byte, 0, 12)
		pseudo = append(pseudo, ip[12:20]...)
		pseudo = append(pseudo, 0, proto, byte(len(l4)>>8), byte(len(l4)))
	case etherIPv6:
		ip := f[14:]
		if len(ip) < 40 || ip[0]>>4 != 6 {
			return
		}
		plen := int(binary.BigEndian.Uint16(ip[4:]))
		if 40+plen > len(ip) {
			return
		}
		proto, l4 = ip[6], ip[40:40+plen] // extension headers: left alone (proto is not TCP or UDP)
		pseudo = make([]byte, 0, 40)
		pseudo = append(pseudo, ip[8:40]...)
		pseudo = append(pseudo, byte(len(l4)>>24), byte(len(l4)>>16), byte(len(l4)>>8), byte(len(l4)), 0, 0, 0, proto)
	default:
		return
	}
	var at int
	switch proto {
	case 6: // TCP
		at = 16
	case 17: // UDP
		at = 6
	default:
		return
	}
	if len(l4) < at+2 {
		return
	}
	if proto == 17 && binary.BigEndian.Uint16(l4[at:]) == 0 && f[offType] == 0x08 {
		return // IPv4 UDP without a checksum
	}
	l4[at], l4[at+1] = 0, 0
	sum := onesSum(onesSum(0, pseudo), l4)
	c := ^fold(sum)
	if proto == 17 && c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(l4[at:], c)
}

func onesSum(sum uint32, b []byte) uint32 {
	for len(b) >= 2 {
		sum += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	return sum
}

func fold(sum uint32) uint16 {
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum)
}
