package clusterip

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// The integration tests build two network namespaces joined by a veth pair
// and run a Manager inside one of them. Packet sockets and netlink sockets
// bind to the namespace of the thread that opens them, and the Go runtime
// moves goroutines between threads, so instead of switching one thread the
// test re-executes its own binary under `ip netns exec` in helper mode
// (selected by helperEnv), the way tandemd runs in the lab. The parent
// drives it with one command per line on stdin and reads one JSON reply per
// line on stdout.

const (
	helperEnv      = "TANDEM_CLUSTERIP_HELPER"
	helperVIPEnv   = "TANDEM_CLUSTERIP_HELPER_VIP"
	helperIfaceEnv = "TANDEM_CLUSTERIP_HELPER_IFACE"
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(runHelper())
	}
	os.Exit(m.Run())
}

type helperReply struct {
	Err         string `json:"err,omitempty"`
	Conflict    bool   `json:"conflict,omitempty"`
	ConflictIP  string `json:"conflict_ip,omitempty"`
	ConflictMAC string `json:"conflict_mac,omitempty"`
	Status      Status `json:"status"`
}

// runHelper runs a Manager in the current namespace and obeys stdin.
func runHelper() int {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	vip, err := netip.ParsePrefix(os.Getenv(helperVIPEnv))
	if err != nil {
		log.Error("bad helper VIP", "err", err)
		return 2
	}
	m := New(Options{
		Interface:         os.Getenv(helperIfaceEnv),
		AnnounceInterval:  200 * time.Millisecond,
		ReconcileInterval: 500 * time.Millisecond,
	}, log)
	m.SetAddress(vip)
	if err := m.Start(context.Background()); err != nil {
		log.Error("start", "err", err)
		return 2
	}
	out := json.NewEncoder(os.Stdout)
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		var err error
		cmd := strings.TrimSpace(in.Text())
		switch cmd {
		case "acquire":
			err = m.Acquire(ctx)
		case "release":
			err = m.Release(ctx)
		case "status":
		case "stop":
			err = m.Stop(ctx)
		default:
			err = fmt.Errorf("unknown helper command %q", cmd)
		}
		cancel()
		r := helperReply{Status: m.Status()}
		if err != nil {
			r.Err = err.Error()
		}
		var ce *ConflictError
		if errors.As(err, &ce) {
			r.Conflict, r.ConflictIP, r.ConflictMAC = true, ce.IP.String(), macString(ce.MAC)
		}
		if err := out.Encode(r); err != nil {
			return 2
		}
		if cmd == "stop" {
			return 0
		}
	}
	// Parent gone: leave nothing behind.
	_ = m.Stop(context.Background())
	return 0
}

func requireRoot(t *testing.T) {
	t.Helper()
	why := ""
	if os.Geteuid() != 0 {
		why = "needs root to create network namespaces (run: sudo go test ./internal/clusterip/)"
	} else if _, err := exec.LookPath("ip"); err != nil {
		why = "needs the ip command (iproute2)"
	}
	if why == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal(why + "; CI=true, so this is a failure, not a skip")
	}
	t.Skip(why)
}

func ipCmd(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// netPair is node namespace a and peer namespace b, one veth between them.
type netPair struct {
	a, b       string // namespace names, also the interface names inside
	macA, macB string
}

func newNetPair(t *testing.T, tag string, nodeA, nodeB netip.Prefix) netPair {
	t.Helper()
	base := fmt.Sprintf("tcip%d%s", os.Getpid(), tag)
	p := netPair{a: base + "a", b: base + "b"}
	for _, ns := range []string{p.a, p.b} {
		ipCmd(t, "netns", "add", ns)
		t.Cleanup(func() {
			if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
				t.Errorf("cleanup: ip netns del %s: %v: %s", ns, err, out)
			}
		})
		ipCmd(t, "-n", ns, "link", "set", "lo", "up")
	}
	ipCmd(t, "-n", p.a, "link", "add", p.a, "type", "veth", "peer", "name", p.b, "netns", p.b)
	for _, x := range []struct {
		ns   string
		addr netip.Prefix
	}{{p.a, nodeA}, {p.b, nodeB}} {
		args := []string{"-n", x.ns, "addr", "add", x.addr.String(), "dev", x.ns}
		if x.addr.Addr().Is6() {
			args = append(args, "nodad") // usable at once, as on a long-running node
		}
		ipCmd(t, args...)
		ipCmd(t, "-n", x.ns, "link", "set", x.ns, "up")
	}
	p.macA, p.macB = macOf(t, p.a), macOf(t, p.b)
	return p
}

func macOf(t *testing.T, ns string) string {
	t.Helper()
	var links []struct {
		Address string `json:"address"`
	}
	out := ipCmd(t, "-n", ns, "-j", "link", "show", "dev", ns)
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
		t.Fatalf("parsing ip -j link show in %s: %v: %s", ns, err, out)
	}
	return links[0].Address
}

// hasAddr reports whether interface ns (in namespace ns) has ip.
func hasAddr(t *testing.T, ns string, ip netip.Addr) bool {
	t.Helper()
	var links []struct {
		AddrInfo []struct {
			Local string `json:"local"`
		} `json:"addr_info"`
	}
	out := ipCmd(t, "-n", ns, "-j", "addr", "show", "dev", ns)
	if err := json.Unmarshal([]byte(out), &links); err != nil {
		t.Fatalf("parsing ip -j addr show in %s: %v: %s", ns, err, out)
	}
	for _, l := range links {
		for _, a := range l.AddrInfo {
			if a.Local == ip.String() {
				return true
			}
		}
	}
	return false
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type helperProc struct {
	cmd     *exec.Cmd
	in      io.WriteCloser
	replies chan helperReply
	mu      sync.Mutex
	log     bytes.Buffer
}

func (h *helperProc) Write(b []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.log.Write(b)
}

func startHelper(t *testing.T, ns string, vip netip.Prefix) *helperProc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	h := &helperProc{replies: make(chan helperReply)}
	h.cmd = exec.Command("ip", "netns", "exec", ns, exe)
	h.cmd.Env = append(os.Environ(), helperEnv+"=1", helperVIPEnv+"="+vip.String())
	h.cmd.Stderr = h
	if h.in, err = h.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := h.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := h.cmd.Start(); err != nil {
		t.Fatalf("starting the helper in %s: %v", ns, err)
	}
	go func() {
		defer close(h.replies)
		dec := json.NewDecoder(stdout)
		for {
			var r helperReply
			if dec.Decode(&r) != nil {
				return
			}
			h.replies <- r
		}
	}()
	t.Cleanup(func() {
		_ = h.in.Close()
		done := make(chan error, 1)
		go func() { done <- h.cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = h.cmd.Process.Kill() // the ip process we started; the namespace goes anyway
			<-done
		}
		if t.Failed() || testing.Verbose() {
			h.mu.Lock()
			t.Logf("helper log (namespace %s):\n%s", ns, h.log.String())
			h.mu.Unlock()
		}
	})
	return h
}

func (h *helperProc) call(t *testing.T, cmd string) helperReply {
	t.Helper()
	if _, err := io.WriteString(h.in, cmd+"\n"); err != nil {
		t.Fatalf("helper %s: %v", cmd, err)
	}
	select {
	case r, ok := <-h.replies:
		if !ok {
			t.Fatalf("helper exited during %s", cmd)
		}
		return r
	case <-time.After(15 * time.Second):
		t.Fatalf("helper did not answer %s", cmd)
	}
	panic("unreachable")
}

const bogusMAC = "02:00:00:00:00:01"

func TestIntegrationIPv4(t *testing.T) {
	requireRoot(t)
	x := os.Getpid()%200 + 20
	pfx := func(host int) netip.Prefix {
		return netip.MustParsePrefix(fmt.Sprintf("10.99.%d.%d/24", x, host))
	}
	runScenario(t, "4", pfx(1), pfx(2), pfx(100))
}

func TestIntegrationIPv6(t *testing.T) {
	requireRoot(t)
	runScenario(t, "6",
		netip.MustParsePrefix("fd00:99::1/64"),
		netip.MustParsePrefix("fd00:99::2/64"),
		netip.MustParsePrefix("fd00:99::100/64"))
}

func runScenario(t *testing.T, tag string, nodeA, nodeB, vip netip.Prefix) {
	p := newNetPair(t, tag, nodeA, nodeB)
	ip := vip.Addr()
	family := "-4"
	if ip.Is6() {
		family = "-6"
	}
	neigh := func() string {
		return ipCmd(t, "-n", p.b, family, "neigh", "show", ip.String(), "dev", p.b)
	}

	// A stale entry on the peer pointing at a bogus MAC, as a client that
	// last talked to a former holder would have.
	ipCmd(t, "-n", p.b, family, "neigh", "replace", ip.String(), "lladdr", bogusMAC, "dev", p.b, "nud", "stale")

	if !strings.Contains(neigh(), "lladdr "+bogusMAC) {
		t.Fatalf("peer's stale neighbour entry not in place: %q", neigh())
	}

	h := startHelper(t, p.a, vip)

	// (1) Acquire puts the address on the interface.
	if r := h.call(t, "acquire"); r.Err != "" {
		t.Fatalf("Acquire: %s", r.Err)
	}
	if !hasAddr(t, p.a, ip) {
		t.Fatal("(1) cluster IP not on the interface after Acquire")
	}

	// (2) The announcements move the peer's neighbour entry to us.
	waitFor(t, time.Second, "(2) peer's neighbour entry points at the holder's MAC "+p.macA, func() bool {
		return strings.Contains(neigh(), "lladdr "+p.macA)
	})

	// The peer reaches the cluster IP: an IPv6 one is deprecated (so the
	// holder never picks it as a source), which must not stop it from
	// accepting traffic.
	// The neighbour entry is dropped first so the peer must resolve the
	// address afresh; a TCP connect to a closed port then proves the holder
	// both answers the solicitation and takes the address as its own
	// (it resets the connection).
	ipCmd(t, "-n", p.b, family, "neigh", "del", ip.String(), "dev", p.b)
	connect := exec.Command("ip", "netns", "exec", p.b, "timeout", "3", "bash", "-c",
		fmt.Sprintf("exec 3<>/dev/tcp/%s/9", ip))
	if out, _ := connect.CombinedOutput(); !strings.Contains(string(out), "refused") {
		t.Fatalf("peer's TCP connect to the cluster IP was not refused by the holder: %s", out)
	}
	if ip.Is6() {
		if out := ipCmd(t, "-n", p.a, "-6", "addr", "show", "dev", p.a, "to", vip.String()); !strings.Contains(out, "deprecated") || !strings.Contains(out, "nodad") {
			t.Fatalf("IPv6 cluster IP not added nodad and deprecated (never a source address): %s", out)
		}
	}

	// (4) Deleted by hand, it comes back.
	ipCmd(t, "-n", p.a, "addr", "del", vip.String(), "dev", p.a)
	waitFor(t, 3*time.Second, "(4) reconcile re-adds the deleted cluster IP", func() bool { return hasAddr(t, p.a, ip) })

	// Release removes it before it returns.
	if r := h.call(t, "release"); r.Err != "" {
		t.Fatalf("Release: %s", r.Err)
	}
	if hasAddr(t, p.a, ip) {
		t.Fatal("cluster IP still on the interface when Release returned")
	}

	// (3) When the peer holds it, Acquire reports the peer and adds nothing.
	ipCmd(t, "-n", p.b, "addr", "add", vip.String(), "dev", p.b, "nodad")
	r := h.call(t, "acquire")
	if !r.Conflict {
		t.Fatalf("(3) Acquire with the peer holding the address = %+v, want a ConflictError", r)
	}
	if r.ConflictMAC != p.macB || r.ConflictIP != ip.String() {
		t.Fatalf("(3) ConflictError names %s at %s, want %s at %s", r.ConflictIP, r.ConflictMAC, ip, p.macB)
	}
	if hasAddr(t, p.a, ip) {
		t.Fatal("(3) cluster IP added despite the conflict")
	}
	if r.Status.Conflict == "" || r.Status.Held || !r.Status.Desired {
		t.Fatalf("(3) Status = %+v, want desired, not held, with the conflict", r.Status)
	}

	// Once the peer lets go, the loop (still desiring it) takes it.
	ipCmd(t, "-n", p.b, "addr", "del", vip.String(), "dev", p.b)
	waitFor(t, 3*time.Second, "cluster IP taken after the peer released it", func() bool { return hasAddr(t, p.a, ip) })

	// (5) Stop removes it.
	if r := h.call(t, "stop"); r.Err != "" {
		t.Fatalf("Stop: %s", r.Err)
	}
	if hasAddr(t, p.a, ip) {
		t.Fatal("(5) cluster IP still on the interface after Stop")
	}
}
