package lab

import (
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/bpf"
)

func TestNetemValidate(t *testing.T) {
	for _, ok := range []Netem{
		{Delay: 300 * time.Millisecond},
		{Loss: 20},
		{Delay: time.Second, Jitter: 100 * time.Millisecond, Loss: 0.5},
		{Loss: 100},
	} {
		if err := ok.Validate(); err != nil {
			t.Errorf("%+v: %v", ok, err)
		}
	}
	for _, bad := range []Netem{
		{},
		{Delay: -time.Millisecond},
		{Delay: 2 * time.Minute},
		{Delay: 10 * time.Millisecond, Jitter: 20 * time.Millisecond},
		{Loss: 101},
		{Loss: -1},
	} {
		if err := bad.Validate(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

func TestParseLoss(t *testing.T) {
	for in, want := range map[string]float64{"20%": 20, "20": 20, "0.5%": 0.5, " 100% ": 100} {
		if got, err := ParseLoss(in); err != nil || got != want {
			t.Errorf("ParseLoss(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "%", "lots", "20%%"} {
		if _, err := ParseLoss(bad); err == nil {
			t.Errorf("ParseLoss(%q) accepted", bad)
		}
	}
}

func TestCheckPairAndProcess(t *testing.T) {
	l, _ := NewLayout("lab", "")
	if err := l.CheckPair("a", "b"); err != nil {
		t.Error(err)
	}
	for _, p := range [][2]string{{"a", "a"}, {"a", "x"}, {"", "b"}} {
		if err := l.CheckPair(p[0], p[1]); err == nil {
			t.Errorf("CheckPair(%q, %q) accepted", p[0], p[1])
		}
	}
	if err := l.CheckPair("a", "nosuch"); err == nil || !strings.Contains(err.Error(), "a, b, client, dns") {
		t.Errorf("an unknown host's error should list the hosts: %v", err)
	}
	for _, p := range []string{"", "tandemd", "postgres"} {
		if err := CheckProcess(p); err != nil {
			t.Error(err)
		}
	}
	if err := CheckProcess("dnsmasq"); err == nil {
		t.Error("CheckProcess(dnsmasq) accepted")
	}
}

func TestFaultsRecord(t *testing.T) {
	f := &Faults{}
	f.cut("a", "b", false)
	f.cut("a", "b", false) // twice changes nothing
	f.cut("client", "dns", true)
	f.setLink("a", "client", Netem{Delay: 300 * time.Millisecond})
	f.setLink("a", "client", Netem{Loss: 20}) // replaces
	f.setOff("b", true)
	f.Paused = append(f.Paused, Paused{Host: "a", Process: ProcessTandemd})
	if len(f.Cuts) != 3 || len(f.Links) != 1 || f.Links[0].Netem.Loss != 20 || !f.IsOff("b") {
		t.Fatalf("record %+v", f)
	}
	sum := strings.Join(f.Summary(), "\n")
	for _, want := range []string{
		"host b is powered off",
		"partition between a and b",
		"partition: client cannot reach dns (one way)",
		"link a <-> client degraded: loss 20%",
		"tandemd paused on a",
	} {
		if !strings.Contains(sum, want) {
			t.Errorf("summary lacks %q:\n%s", want, sum)
		}
	}
	if strings.Count(sum, "partition between") != 1 {
		t.Errorf("a two-way partition is listed twice:\n%s", sum)
	}
	touched := f.heal("b", "a")
	slices.Sort(touched)
	if !slices.Equal(touched, []string{"a", "b"}) || len(f.Cuts) != 1 || len(f.Links) != 1 {
		t.Errorf("heal b a: touched %v, left %+v", touched, f)
	}
	if touched := f.heal("a", "dns"); len(touched) != 0 {
		t.Errorf("heal of a healthy pair touched %v", touched)
	}
	f.heal("", "")
	if len(f.Cuts) != 0 || len(f.Links) != 0 || !f.IsOff("b") || len(f.Paused) != 1 {
		t.Errorf("heal all must clear the network only: %+v", f)
	}
	f.setOff("b", false)
	if f.IsOff("b") || len(f.Off) != 0 {
		t.Errorf("power-on not recorded: %+v", f.Off)
	}
}

// parseBytecode reads tc's "count,op jt jf k,..." form back.
func parseBytecode(t *testing.T, s string) []bpf.Instruction {
	t.Helper()
	parts := strings.Split(s, ",")
	n, err := strconv.Atoi(parts[0])
	if err != nil || n != len(parts)-1 {
		t.Fatalf("bytecode %q: count %q does not match %d instructions", s, parts[0], len(parts)-1)
	}
	var raw []bpf.RawInstruction
	for _, p := range parts[1:] {
		f := strings.Fields(p)
		if len(f) != 4 {
			t.Fatalf("bytecode %q: instruction %q", s, p)
		}
		var v [4]uint64
		for i := range f {
			if v[i], err = strconv.ParseUint(f[i], 10, 32); err != nil {
				t.Fatalf("bytecode %q: %v", s, err)
			}
		}
		raw = append(raw, bpf.RawInstruction{Op: uint16(v[0]), Jt: uint8(v[1]), Jf: uint8(v[2]), K: uint32(v[3])})
	}
	insts, ok := bpf.Disassemble(raw)
	if !ok {
		t.Fatalf("bytecode %q does not disassemble", s)
	}
	return insts
}

// frame is an Ethernet frame from src to dst carrying an ARP payload.
func frame(dst, src string) []byte {
	d, _ := net.ParseMAC(dst)
	s, _ := net.ParseMAC(src)
	b := append(append(append([]byte{}, d...), s...), 0x08, 0x06)
	return append(b, make([]byte, 28)...)
}

func runProgram(t *testing.T, prog string, pkt []byte) uint32 {
	t.Helper()
	vm, err := bpf.NewVM(parseBytecode(t, prog))
	if err != nil {
		t.Fatalf("program %q: %v", prog, err)
	}
	// x/net/bpf's VM returns the program's return value as it is.
	n, err := vm.Run(pkt)
	if err != nil {
		t.Fatal(err)
	}
	return uint32(n)
}

func TestDropFromProgram(t *testing.T) {
	a, _ := net.ParseMAC("02:74:6c:00:00:11")
	prog := dropFromProgram(a)
	insts := parseBytecode(t, prog)
	// The two verdicts the program can reach.
	if r, ok := insts[len(insts)-2].(bpf.RetConstant); !ok || r.Val != tcActShot {
		t.Errorf("match verdict %v, want TC_ACT_SHOT", insts[len(insts)-2])
	}
	if r, ok := insts[len(insts)-1].(bpf.RetConstant); !ok || r.Val != tcActUnspec {
		t.Errorf("other verdict %v, want TC_ACT_UNSPEC", insts[len(insts)-1])
	}
	for _, c := range []struct {
		pkt  []byte
		drop bool
	}{
		{frame("ff:ff:ff:ff:ff:ff", "02:74:6c:00:00:11"), true}, // a's broadcast (ARP)
		{frame("02:74:6c:00:00:12", "02:74:6c:00:00:11"), true}, // a to b
		{frame("02:74:6c:00:00:11", "02:74:6c:00:00:12"), false},
		{frame("ff:ff:ff:ff:ff:ff", "02:74:6c:00:01:00"), false},
		{frame("ff:ff:ff:ff:ff:ff", "02:74:6c:00:00:10"), false}, // same first four bytes
		{frame("ff:ff:ff:ff:ff:ff", "03:74:6c:00:00:11"), false}, // same last two bytes
	} {
		got := runProgram(t, prog, c.pkt)
		if (got == tcActShot) != c.drop || (!c.drop && got != tcActUnspec) {
			t.Errorf("frame %x: verdict %d, drop want %v", c.pkt[:12], got, c.drop)
		}
	}
}

func TestToMACProgram(t *testing.T) {
	b, _ := net.ParseMAC("02:74:6c:00:00:12")
	prog := toMACProgram(b)
	if got := runProgram(t, prog, frame("02:74:6c:00:00:12", "02:74:6c:00:00:11")); got == 0 {
		t.Error("a frame for b's MAC is not classified")
	}
	for _, other := range []string{"02:74:6c:00:00:11", "ff:ff:ff:ff:ff:ff", "02:74:6c:00:01:12"} {
		if got := runProgram(t, prog, frame(other, "02:74:6c:00:00:12")); got != 0 {
			t.Errorf("a frame for %s is classified (%d)", other, got)
		}
	}
}

func planStrings(steps []tcStep) []string {
	var out []string
	for _, s := range steps {
		line := strings.Join(s.Args, " ")
		switch s.Tolerate {
		case tolerateMissing:
			line += "  [ok if missing]"
		case tolerateExists:
			line += "  [ok if there]"
		}
		out = append(out, line)
	}
	return out
}

func TestTCPlanHealthy(t *testing.T) {
	l, _ := NewLayout("lab", "")
	steps, err := l.tcPlan(&Faults{}, "a")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"qdisc del dev eth0 clsact  [ok if missing]",
		"qdisc del dev eth0 root  [ok if missing]",
	}
	if got := planStrings(steps); !slices.Equal(got, want) {
		t.Errorf("plan for a healthy host:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestTCPlanPartition(t *testing.T) {
	l, _ := NewLayout("lab", "")
	f := &Faults{}
	f.cut("a", "b", false)
	f.cut("dns", "b", true)
	steps, err := l.tcPlan(f, "b")
	if err != nil {
		t.Fatal(err)
	}
	a, _ := net.ParseMAC("02:74:6c:00:00:11")
	dns, _ := net.ParseMAC("02:74:6c:00:00:53")
	want := []string{
		"qdisc replace dev eth0 clsact",
		"qdisc del dev eth0 root  [ok if missing]",
		"filter replace dev eth0 ingress protocol all pref 100 handle 1 bpf da bytecode " + dropFromProgram(a),
		"filter del dev eth0 ingress protocol all pref 102  [ok if missing]",
		"filter replace dev eth0 ingress protocol all pref 103 handle 1 bpf da bytecode " + dropFromProgram(dns),
	}
	if got := planStrings(steps); !slices.Equal(got, want) {
		t.Errorf("plan for b:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// a only loses what b sends it; dns receives from b as before.
	steps, _ = l.tcPlan(f, "dns")
	if got := planStrings(steps); got[0] != "qdisc del dev eth0 clsact  [ok if missing]" || len(got) != 2 {
		t.Errorf("plan for dns (one-way cut toward b only):\n%s", strings.Join(got, "\n"))
	}
}

func TestTCPlanNetem(t *testing.T) {
	l, _ := NewLayout("lab", "")
	f := &Faults{}
	f.setLink("a", "b", Netem{Delay: 300 * time.Millisecond, Jitter: 50 * time.Millisecond, Loss: 20})
	b, _ := net.ParseMAC("02:74:6c:00:00:12")
	steps, err := l.tcPlan(f, "a")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"qdisc del dev eth0 clsact  [ok if missing]",
		"qdisc add dev eth0 root handle 1: htb  [ok if there]",
		"class replace dev eth0 parent 1: classid 1:11 htb rate 10gbit quantum 60000",
		"qdisc replace dev eth0 parent 1:11 handle 11: netem delay 300000us 50000us loss 20%",
		"filter replace dev eth0 parent 1: protocol all pref 101 handle 1 bpf bytecode " + toMACProgram(b) + " classid 1:11",
		"filter del dev eth0 parent 1: protocol all pref 102  [ok if missing]",
		"class del dev eth0 classid 1:12  [ok if missing]",
		"filter del dev eth0 parent 1: protocol all pref 103  [ok if missing]",
		"class del dev eth0 classid 1:13  [ok if missing]",
	}
	if got := planStrings(steps); !slices.Equal(got, want) {
		t.Errorf("plan for a:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// b's side points at a's MAC, with a's class numbers.
	steps, _ = l.tcPlan(f, "b")
	got := strings.Join(planStrings(steps), "\n")
	if !strings.Contains(got, "classid 1:10 htb") || !strings.Contains(got, "parent 1:10 handle 10: netem delay 300000us 50000us loss 20%") {
		t.Errorf("plan for b:\n%s", got)
	}
	// Nothing for hosts outside the link.
	steps, _ = l.tcPlan(f, "client")
	if len(steps) != 2 {
		t.Errorf("plan for client:\n%s", strings.Join(planStrings(steps), "\n"))
	}
}

func TestTCPlanNeedsMACs(t *testing.T) {
	l, _ := NewLayout("lab", "")
	l.Hosts[1].MAC = "" // a layout from before MACs were fixed
	f := &Faults{}
	f.cut("b", "a", true)
	if _, err := l.tcPlan(f, "a"); err == nil || !strings.Contains(err.Error(), "lab up") {
		t.Errorf("want an error saying to recreate the lab, got %v", err)
	}
}

func TestTolerated(t *testing.T) {
	if !tolerateMissing.tolerated("Error: Filter with specified priority/protocol not found.") ||
		!tolerateMissing.tolerated("Error: Cannot delete qdisc with handle of zero.") ||
		!tolerateExists.tolerated("Error: Exclusivity flag on, cannot modify.") {
		t.Error("a harmless tc complaint is not tolerated")
	}
	if tolerateNothing.tolerated("not found") || tolerateExists.tolerated("Error: Specified qdisc kind is unknown.") {
		t.Error("a real failure is tolerated")
	}
}
