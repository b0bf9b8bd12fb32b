package lab

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/bpf"
)

// Faults is what has been done to a running lab, recorded in the lab
// directory (faults.json) so that later commands, `lab env` and whoever
// reads a failed test know it. Network faults (Cuts, Links) are the
// desired tc configuration of every host: each change rewrites the hosts
// concerned from this record, so it and the kernel agree.
type Faults struct {
	// Off lists the hosts powered off.
	Off []string `json:"off,omitempty"`
	// Cuts lists one-way partitions: frames from From never reach To.
	Cuts []Cut `json:"cuts,omitempty"`
	// Links lists degraded links between two hosts (both directions).
	Links []Link `json:"links,omitempty"`
	// Paused lists processes stopped with SIGSTOP.
	Paused []Paused `json:"paused,omitempty"`
}

// Cut drops everything From sends to To (frames with From's MAC as source,
// dropped on arrival at To): IP to any of To's addresses (the cluster IP
// included), ARP and neighbour discovery alike.
type Cut struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// Link is a degraded link between hosts A and B (A first in layout order):
// both directions get the same netem settings.
type Link struct {
	A     string `json:"a"`
	B     string `json:"b"`
	Netem Netem  `json:"netem"`
}

// Netem is how a link is degraded.
type Netem struct {
	Delay  time.Duration `json:"delay,omitempty"`
	Jitter time.Duration `json:"jitter,omitempty"`
	Loss   float64       `json:"loss_percent,omitempty"`
}

// Paused is a set of stopped processes on a host: every process there
// (Process "") or only tandemd or PostgreSQL.
type Paused struct {
	Host    string `json:"host"`
	Process string `json:"process,omitempty"`
}

// Processes pause can single out.
const (
	ProcessAll      = ""
	ProcessTandemd  = "tandemd"
	ProcessPostgres = "postgres"
)

// Validate checks a netem setting.
func (n Netem) Validate() error {
	var p []string
	if n.Delay < 0 || n.Delay > time.Minute {
		p = append(p, fmt.Sprintf("--delay %s must be between 0 and 1m", n.Delay))
	}
	if n.Jitter < 0 || n.Jitter > n.Delay {
		p = append(p, fmt.Sprintf("--jitter %s must be between 0 and --delay", n.Jitter))
	}
	if n.Loss < 0 || n.Loss > 100 {
		p = append(p, fmt.Sprintf("--loss %g%% must be between 0%% and 100%%", n.Loss))
	}
	if len(p) == 0 && n.Delay == 0 && n.Loss == 0 {
		p = append(p, "give --delay, --loss or both (for example --delay 300ms --loss 20%)")
	}
	if len(p) > 0 {
		return errors.New(strings.Join(p, "; "))
	}
	return nil
}

// ParseLoss reads a loss rate such as "20%", "20" or "0.5%".
func ParseLoss(s string) (float64, error) {
	v, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(s), "%"), 64)
	if err != nil {
		return 0, fmt.Errorf("--loss %q: give a percentage such as 20%%", s)
	}
	return v, nil
}

func (n Netem) String() string {
	var p []string
	if n.Delay > 0 {
		d := "delay " + n.Delay.String()
		if n.Jitter > 0 {
			d += " ± " + n.Jitter.String()
		}
		p = append(p, d)
	}
	if n.Loss > 0 {
		p = append(p, fmt.Sprintf("loss %g%%", n.Loss))
	}
	return strings.Join(p, ", ")
}

// netemArgs is the netem qdisc's parameters.
func (n Netem) args() []string {
	var a []string
	if n.Delay > 0 {
		a = append(a, "delay", tcTime(n.Delay))
		if n.Jitter > 0 {
			a = append(a, tcTime(n.Jitter))
		}
	}
	if n.Loss > 0 {
		a = append(a, "loss", strconv.FormatFloat(n.Loss, 'f', -1, 64)+"%")
	}
	return a
}

// tcTime writes d in microseconds, which tc reads exactly.
func tcTime(d time.Duration) string {
	return strconv.FormatInt(d.Microseconds(), 10) + "us"
}

// LoadFaults reads the lab's fault record; none means no faults.
func (l *Layout) LoadFaults() (*Faults, error) {
	b, err := os.ReadFile(l.FaultsPath())
	if errors.Is(err, os.ErrNotExist) {
		return &Faults{}, nil
	}
	if err != nil {
		return nil, err
	}
	f := &Faults{}
	if err := json.Unmarshal(b, f); err != nil {
		return nil, fmt.Errorf("the fault record of lab %s (%s) is damaged: %w", l.Name, l.FaultsPath(), err)
	}
	return f, nil
}

// SaveFaults writes the lab's fault record.
func (l *Layout) SaveFaults(f *Faults) error {
	if err := writeJSON(l.FaultsPath(), f); err != nil {
		return fmt.Errorf("while recording the lab's faults: %w", err)
	}
	return nil
}

// IsOff tells whether host is powered off.
func (f *Faults) IsOff(host string) bool { return slices.Contains(f.Off, host) }

func (f *Faults) setOff(host string, off bool) {
	f.Off = slices.DeleteFunc(f.Off, func(h string) bool { return h == host })
	if off {
		f.Off = append(f.Off, host)
	}
}

// cut records a partition from → to (and back unless oneway).
func (f *Faults) cut(from, to string, oneway bool) {
	add := func(c Cut) {
		if !slices.Contains(f.Cuts, c) {
			f.Cuts = append(f.Cuts, c)
		}
	}
	add(Cut{From: from, To: to})
	if !oneway {
		add(Cut{From: to, To: from})
	}
}

// setLink records a degraded link; a, b in layout order.
func (f *Faults) setLink(a, b string, n Netem) {
	f.Links = slices.DeleteFunc(f.Links, func(k Link) bool { return k.A == a && k.B == b })
	f.Links = append(f.Links, Link{A: a, B: b, Netem: n})
}

// heal removes partitions and degraded links between h1 and h2, or all of
// them when both are empty. It returns the hosts whose tc configuration
// changed.
func (f *Faults) heal(h1, h2 string) []string {
	var touched []string
	touch := func(hs ...string) {
		for _, h := range hs {
			if !slices.Contains(touched, h) {
				touched = append(touched, h)
			}
		}
	}
	pair := func(x, y string) bool {
		return h1 == "" || (x == h1 && y == h2) || (x == h2 && y == h1)
	}
	f.Cuts = slices.DeleteFunc(f.Cuts, func(c Cut) bool {
		if pair(c.From, c.To) {
			touch(c.From, c.To)
			return true
		}
		return false
	})
	f.Links = slices.DeleteFunc(f.Links, func(k Link) bool {
		if pair(k.A, k.B) {
			touch(k.A, k.B)
			return true
		}
		return false
	})
	return touched
}

// Summary describes the faults in one line each, for people.
func (f *Faults) Summary() []string {
	var out []string
	for _, h := range f.Off {
		out = append(out, "host "+h+" is powered off")
	}
	seen := map[Cut]bool{}
	for _, c := range f.Cuts {
		if seen[c] {
			continue
		}
		back := Cut{From: c.To, To: c.From}
		if slices.Contains(f.Cuts, back) {
			seen[back] = true
			out = append(out, fmt.Sprintf("partition between %s and %s", c.From, c.To))
		} else {
			out = append(out, fmt.Sprintf("partition: %s cannot reach %s (one way)", c.From, c.To))
		}
	}
	for _, k := range f.Links {
		out = append(out, fmt.Sprintf("link %s <-> %s degraded: %s", k.A, k.B, k.Netem))
	}
	for _, p := range f.Paused {
		what := "every process"
		if p.Process != ProcessAll {
			what = p.Process
		}
		out = append(out, fmt.Sprintf("%s paused on %s", what, p.Host))
	}
	return out
}

// CheckPair validates two distinct hosts of the lab.
func (l *Layout) CheckPair(h1, h2 string) error {
	if _, err := l.LookupHost(h1); err != nil {
		return err
	}
	if _, err := l.LookupHost(h2); err != nil {
		return err
	}
	if h1 == h2 {
		return fmt.Errorf("name two different hosts, not %s twice", h1)
	}
	return nil
}

// ordered returns h1 and h2 in layout order.
func (l *Layout) ordered(h1, h2 string) (string, string) {
	if l.hostIndex(h2) < l.hostIndex(h1) {
		return h2, h1
	}
	return h1, h2
}

// CheckProcess validates pause's --process.
func CheckProcess(p string) error {
	switch p {
	case ProcessAll, ProcessTandemd, ProcessPostgres:
		return nil
	}
	return fmt.Errorf("--process %q: use tandemd or postgres (or leave it out to pause every process on the host)", p)
}

// tcStep is one tc invocation (after `tc -n NETNS`). Tolerate names the
// failure that means "already as wanted", so that every plan can be run
// again whatever the kernel holds.
type tcStep struct {
	Args     []string
	Tolerate tolerate
}

type tolerate int

const (
	tolerateNothing tolerate = iota
	tolerateMissing          // deleting what is not there
	tolerateExists           // adding what is there
)

// tolerated tells whether tc's complaint means the step's goal is met.
func (t tolerate) tolerated(stderr string) bool {
	var pats []string
	switch t {
	case tolerateMissing:
		pats = []string{"not found", "No such file or directory", "Cannot find", "doesn't exist", "does not exist", "handle of zero", "Invalid handle"}
	case tolerateExists:
		pats = []string{"Exclusivity flag on", "File exists"}
	}
	for _, p := range pats {
		if strings.Contains(stderr, p) {
			return true
		}
	}
	return false
}

// Numbers of the tc objects that concern one peer: the filter priority on
// ingress (partitions) and egress (netem), and the htb class and netem
// qdisc of the link to it. Fixed by the peer's place in the layout, so a
// plan never needs to read what the kernel holds.
func peerPref(idx int) string   { return strconv.Itoa(100 + idx) }
func peerMinor(idx int) string  { return strconv.FormatInt(int64(0x10+idx), 16) }
func peerClass(idx int) string  { return "1:" + peerMinor(idx) }
func peerHandle(idx int) string { return peerMinor(idx) + ":" }

// linkRate caps the htb class of a degraded link; netem does the harm.
const linkRate = "10gbit"

// tcPlan is the tc configuration host must have for f, as steps that take
// any current configuration there in place: partitions toward host are
// filters on the ingress hook of a clsact qdisc on eth0 that drop frames
// by source MAC; degraded links are netem qdiscs under an htb root qdisc
// whose unclassified traffic goes straight out, with a filter per peer
// that sends frames for that peer's MAC to its netem. Filters are classic
// BPF, so only cls_bpf, clsact, htb and netem are needed (no flower, no
// gact). With no fault left, the qdiscs go and eth0 is as up made it.
func (l *Layout) tcPlan(f *Faults, host string) ([]tcStep, error) {
	var steps []tcStep
	add := func(t tolerate, args ...string) { steps = append(steps, tcStep{Args: args, Tolerate: t}) }
	var inbound, links []int
	netem := map[int]Netem{}
	for _, c := range f.Cuts {
		if c.To == host {
			inbound = append(inbound, l.hostIndex(c.From))
		}
	}
	for _, k := range f.Links {
		switch host {
		case k.A:
			links = append(links, l.hostIndex(k.B))
			netem[l.hostIndex(k.B)] = k.Netem
		case k.B:
			links = append(links, l.hostIndex(k.A))
			netem[l.hostIndex(k.A)] = k.Netem
		}
	}
	if len(inbound) == 0 {
		add(tolerateMissing, "qdisc", "del", "dev", HostIface, "clsact")
	} else {
		add(tolerateNothing, "qdisc", "replace", "dev", HostIface, "clsact")
	}
	if len(links) == 0 {
		add(tolerateMissing, "qdisc", "del", "dev", HostIface, "root")
	} else {
		add(tolerateExists, "qdisc", "add", "dev", HostIface, "root", "handle", "1:", "htb")
	}
	self, _ := l.Host(host)
	for idx, peer := range l.Hosts {
		if peer.Name == host || (len(inbound) == 0 && len(links) == 0) {
			continue
		}
		from, to, err := l.peerPrograms(self, peer)
		if err != nil {
			return nil, err
		}
		if len(inbound) > 0 {
			if slices.Contains(inbound, idx) {
				add(tolerateNothing, "filter", "replace", "dev", HostIface, "ingress", "protocol", "all", "pref", peerPref(idx), "handle", "1",
					"bpf", "da", "bytecode", from)
			} else {
				add(tolerateMissing, "filter", "del", "dev", HostIface, "ingress", "protocol", "all", "pref", peerPref(idx))
			}
		}
		if len(links) > 0 {
			if n, ok := netem[idx]; ok {
				add(tolerateNothing, "class", "replace", "dev", HostIface, "parent", "1:", "classid", peerClass(idx), "htb", "rate", linkRate, "quantum", "60000")
				add(tolerateNothing, append([]string{"qdisc", "replace", "dev", HostIface, "parent", peerClass(idx), "handle", peerHandle(idx), "netem"}, n.args()...)...)
				add(tolerateNothing, "filter", "replace", "dev", HostIface, "parent", "1:", "protocol", "all", "pref", peerPref(idx), "handle", "1",
					"bpf", "bytecode", to, "classid", peerClass(idx))
			} else {
				add(tolerateMissing, "filter", "del", "dev", HostIface, "parent", "1:", "protocol", "all", "pref", peerPref(idx))
				add(tolerateMissing, "class", "del", "dev", HostIface, "classid", peerClass(idx))
			}
		}
	}
	return steps, nil
}

// peerPrograms are the filters that pick out peer's traffic on self's
// eth0: from drops what peer sends (ingress), to classifies what self
// sends peer (egress). On one segment they match peer's MAC, which also
// catches ARP and neighbour discovery and any address peer holds. Across
// the router every frame carries the router's MAC, so they match peer's
// IPv4 address instead: no ARP crosses the router, and a cross-subnet lab
// holds no cluster IP, so the cut is as complete.
func (l *Layout) peerPrograms(self, peer Host) (from, to string, err error) {
	if !l.sameSegment(self, peer) {
		ip, err := netip.ParseAddr(peer.IP)
		if err != nil || !ip.Is4() {
			return "", "", fmt.Errorf("host %s has no IPv4 address in the lab layout (%q): recreate the lab with `tandem lab up`", peer.Name, peer.IP)
		}
		return dropFromIPProgram(ip), toIPProgram(ip), nil
	}
	mac, err := net.ParseMAC(peer.MAC)
	if err != nil || len(mac) != 6 {
		return "", "", fmt.Errorf("host %s has no usable MAC address in the lab layout (%q): recreate the lab with `tandem lab up`", peer.Name, peer.MAC)
	}
	return dropFromProgram(mac), toMACProgram(mac), nil
}

// tc actions a direct-action filter returns.
const (
	tcActShot   = 2          // drop
	tcActUnspec = 0xffffffff // no verdict: the next filter decides
)

// dropFromProgram is a classic BPF program for a direct-action filter: drop
// frames whose Ethernet source is mac, leave the rest to other filters.
// tc runs it with the Ethernet header at offset 0 on ingress and egress.
func dropFromProgram(mac net.HardwareAddr) string {
	return macProgram(mac, 6, tcActShot, tcActUnspec)
}

// toMACProgram classifies frames whose Ethernet destination is mac into
// the filter's class (-1: "use the filter's classid"), and no others (0).
func toMACProgram(mac net.HardwareAddr) string {
	return macProgram(mac, 0, 0xffffffff, 0)
}

func macProgram(mac net.HardwareAddr, off uint32, match, other uint32) string {
	hi := uint32(mac[0])<<24 | uint32(mac[1])<<16 | uint32(mac[2])<<8 | uint32(mac[3])
	lo := uint32(mac[4])<<8 | uint32(mac[5])
	raw, err := bpf.Assemble([]bpf.Instruction{
		bpf.LoadAbsolute{Off: off, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: hi, SkipFalse: 3},
		bpf.LoadAbsolute{Off: off + 4, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: lo, SkipFalse: 1},
		bpf.RetConstant{Val: match},
		bpf.RetConstant{Val: other},
	})
	if err != nil {
		panic(err) // a fixed program: cannot fail
	}
	return bytecode(raw)
}

// Offsets in an Ethernet frame carrying IPv4 (no VLAN tag): the
// EtherType, and the IPv4 header's source and destination addresses.
const (
	etherTypeOff = 12
	ipv4SrcOff   = 14 + 12
	ipv4DstOff   = 14 + 16
	etherTypeIP4 = 0x0800
)

// dropFromIPProgram drops IPv4 packets whose source is ip and leaves the
// rest to other filters (direct action, as dropFromProgram).
func dropFromIPProgram(ip netip.Addr) string {
	return ipv4Program(ip, ipv4SrcOff, tcActShot, tcActUnspec)
}

// toIPProgram classifies IPv4 packets for ip into the filter's class, as
// toMACProgram does frames for a MAC.
func toIPProgram(ip netip.Addr) string {
	return ipv4Program(ip, ipv4DstOff, 0xffffffff, 0)
}

func ipv4Program(ip netip.Addr, off uint32, match, other uint32) string {
	a := ip.As4()
	raw, err := bpf.Assemble([]bpf.Instruction{
		bpf.LoadAbsolute{Off: etherTypeOff, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: etherTypeIP4, SkipFalse: 3},
		bpf.LoadAbsolute{Off: off, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: binary.BigEndian.Uint32(a[:]), SkipFalse: 1},
		bpf.RetConstant{Val: match},
		bpf.RetConstant{Val: other},
	})
	if err != nil {
		panic(err) // a fixed program: cannot fail
	}
	return bytecode(raw)
}

// bytecode writes a program the way tc's "bytecode" argument takes it:
// "count,op jt jf k,...".
func bytecode(raw []bpf.RawInstruction) string {
	parts := []string{strconv.Itoa(len(raw))}
	for _, r := range raw {
		parts = append(parts, fmt.Sprintf("%d %d %d %d", r.Op, r.Jt, r.Jf, r.K))
	}
	return strings.Join(parts, ",")
}
