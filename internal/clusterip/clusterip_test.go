package clusterip

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

var (
	vip     = netip.MustParsePrefix("10.77.0.100/24")
	peerMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0b}
)

func testLinks() *fakeLinks {
	return newFakeLinks(
		link{Index: 1, Name: "lo", Addrs: []ifAddr{{Prefix: netip.MustParsePrefix("127.0.0.1/8")}}},
		link{Index: 2, Name: "eth0", MAC: net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0a}, Addrs: []ifAddr{
			{Prefix: netip.MustParsePrefix("10.77.0.1/24")},
			{Prefix: netip.MustParsePrefix("fd00:77::1/64")},
			{Prefix: netip.MustParsePrefix("fe80::1/64")},
		}},
		link{Index: 3, Name: "eth1", MAC: net.HardwareAddr{0x02, 0, 0, 0, 1, 0x0a}, Addrs: []ifAddr{
			{Prefix: netip.MustParsePrefix("192.168.5.1/24")},
		}},
	)
}

// testLogger writes to the test's own output: shown with -v or on failure.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// start returns a started manager with fast timings; opts overrides them.
func start(t *testing.T, fl *fakeLinks, fa *fakeAnnouncer, opts Options) *Manager {
	t.Helper()
	if opts.AnnounceInterval == 0 {
		opts.AnnounceInterval = 5 * time.Millisecond
	}
	if opts.ReconcileInterval == 0 {
		opts.ReconcileInterval = 20 * time.Millisecond
	}
	m := newManager(opts, testLogger(t), fl, fa)
	m.SetAddress(vip)
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Stop(context.Background()) })
	return m
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func held(fl *fakeLinks) bool { return len(fl.holders(vip.Addr())) > 0 }

func TestAcquireAddsAndAnnounces(t *testing.T) {
	fl, fa := testLinks(), &fakeAnnouncer{}
	m := start(t, fl, fa, Options{AnnounceCount: 4})
	if err := m.Acquire(context.Background()); err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	if got := fl.holders(vip.Addr()); len(got) != 1 || got[0] != "eth0" {
		t.Fatalf("holders after Acquire = %v, want [eth0]", got)
	}
	if probes, ann := fa.counts(); probes != 1 || ann < 1 {
		t.Fatalf("after Acquire: %d probes, %d announcements; want 1 probe and the first announcement", probes, ann)
	}
	eventually(t, "4 announcements", func() bool { _, n := fa.counts(); return n == 4 })
	time.Sleep(30 * time.Millisecond)
	if _, n := fa.counts(); n != 4 {
		t.Fatalf("announcements = %d, want exactly AnnounceCount=4", n)
	}
	st := m.Status()
	want := Status{Address: "10.77.0.100/24", Interface: "eth0", Desired: true, Held: true}
	if st != want {
		t.Fatalf("Status = %+v, want %+v", st, want)
	}
}

// A switchover's new primary prepares while the old one holds the
// address; the trusted acquisition then adds it without listing the
// interfaces again (the listing would sit in the moment nobody holds it).
func TestPrepareThenTrustedAddsWithoutListing(t *testing.T) {
	fl, fa := testLinks(), &fakeAnnouncer{}
	m := start(t, fl, fa, Options{AnnounceCount: 1, ReconcileInterval: time.Hour})
	if err := m.Prepare(context.Background()); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	if held(fl) {
		t.Fatal("Prepare added the address")
	}
	fl.setListErr(errors.New("listing is not expected now"))
	if err := m.AcquireTrusted(context.Background()); err != nil {
		t.Fatalf("AcquireTrusted after Prepare: %v", err)
	}
	if got := fl.holders(vip.Addr()); len(got) != 1 || got[0] != "eth0" {
		t.Fatalf("holders = %v, want [eth0]", got)
	}
	if probes, ann := fa.counts(); probes != 0 || ann != 1 {
		t.Fatalf("%d probes, %d announcements; want none and one", probes, ann)
	}
	// Used once: the next trusted acquisition looks again (and here
	// fails to list, which it reports).
	if err := m.Release(context.Background()); err == nil {
		t.Fatal("Release listed the interfaces although listing fails")
	}
	fl.setListErr(nil)
	if err := m.Release(context.Background()); err != nil || held(fl) {
		t.Fatalf("Release: %v, held %v", err, held(fl))
	}
}

// A prepared look that went stale (the interface was recreated with a new
// index) is not trusted blindly: the add fails, the manager looks again
// and adds the address where the interface is now.
func TestPreparedStaleLooksAgain(t *testing.T) {
	fl, fa := testLinks(), &fakeAnnouncer{}
	m := start(t, fl, fa, Options{AnnounceCount: 1, ReconcileInterval: time.Hour})
	if err := m.Prepare(context.Background()); err != nil {
		t.Fatal(err)
	}
	fl.renumber("eth0", 7)
	if err := m.AcquireTrusted(context.Background()); err != nil {
		t.Fatalf("AcquireTrusted with a stale preparation: %v", err)
	}
	if got := fl.holders(vip.Addr()); len(got) != 1 || got[0] != "eth0" {
		t.Fatalf("holders = %v, want [eth0]", got)
	}
	if st := m.Status(); !st.Held || st.LastError != "" {
		t.Fatalf("Status = %+v, want held and no error", st)
	}
}

// Prepare without an address, or before Start, says so and changes nothing.
func TestPrepareRefusals(t *testing.T) {
	m := newManager(Options{}, testLogger(t), testLinks(), &fakeAnnouncer{})
	if err := m.Prepare(context.Background()); !errors.Is(err, ErrNotStarted) {
		t.Fatalf("Prepare before Start: %v, want ErrNotStarted", err)
	}
	fl := testLinks()
	m = start(t, fl, &fakeAnnouncer{}, Options{})
	m.SetAddress(netip.Prefix{})
	if err := m.Prepare(context.Background()); !errors.Is(err, ErrNoAddress) {
		t.Fatalf("Prepare without an address: %v, want ErrNoAddress", err)
	}
}

func TestAcquireWhenHeldAnnouncesWithoutProbe(t *testing.T) {
	fl, fa := testLinks(), &fakeAnnouncer{}
	fl.addByHand("eth0", vip)
	m := start(t, fl, fa, Options{AnnounceCount: 2})
	if err := m.Acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "2 announcements", func() bool { _, n := fa.counts(); return n == 2 })
	if probes, _ := fa.counts(); probes != 0 {
		t.Fatalf("probes = %d, want 0: our own address needs no probe", probes)
	}
}

func TestReconcileReaddsMissing(t *testing.T) {
	fl, fa := testLinks(), &fakeAnnouncer{}
	m := start(t, fl, fa, Options{AnnounceCount: 1})
	if err := m.Acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	fl.delByHand(vip.Addr())
	eventually(t, "the address is re-added", func() bool { return held(fl) })
	if probes, ann := fa.counts(); probes != 2 || ann != 2 {
		t.Fatalf("probes=%d announcements=%d, want 2 and 2 (probe and announce again on re-add)", probes, ann)
	}
	eventually(t, "Status.Held", func() bool { return m.Status().Held })
}

func TestWatchTriggersReconcile(t *testing.T) {
	fl, fa := testLinks(), &fakeAnnouncer{}
	fl.watch = make(chan struct{}, 1)
	m := start(t, fl, fa, Options{AnnounceCount: 1, ReconcileInterval: time.Hour})
	if err := m.Acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	fl.delByHand(vip.Addr())
	fl.watch <- struct{}{}
	eventually(t, "the address is re-added on a netlink event", func() bool { return held(fl) })
}

func TestReconcileRemovesWhenNotDesired(t *testing.T) {
	fl, fa := testLinks(), &fakeAnnouncer{}
	m := start(t, fl, fa, Options{})
	if err := m.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
	fl.addByHand("eth0", vip)
	eventually(t, "the hand-added address is removed", func() bool { return !held(fl) })
	// Anywhere on the node, not only on the interface it belongs on.
	fl.addByHand("eth1", netip.PrefixFrom(vip.Addr(), 32))
	eventually(t, "the address is removed from another interface too", func() bool { return !held(fl) })
	if st := m.Status(); st.Held || st.Desired {
		t.Fatalf("Status = %+v, want neither held nor desired", st)
	}
}

func TestUndecidedLeavesAddressAlone(t *testing.T) {
	fl, fa := testLinks(), &fakeAnnouncer{}
	fl.addByHand("eth0", vip)
	m := start(t, fl, fa, Options{})
	time.Sleep(100 * time.Millisecond) // several reconcile passes
	if !held(fl) {
		t.Fatal("address removed before any Acquire or Release")
	}
	if st := m.Status(); !st.Held || st.Desired {
		t.Fatalf("Status = %+v, want held and not desired", st)
	}
}

func TestConflictNotAdded(t *testing.T) {
	fl, fa := testLinks(), &fakeAnnouncer{conflict: peerMAC}
	m := start(t, fl, fa, Options{AnnounceCount: 1})
	err := m.Acquire(context.Background())
	var ce *ConflictError
	if !errors.As(err, &ce) {
		t.Fatalf("Acquire error = %v, want *ConflictError", err)
	}
	if ce.IP != vip.Addr() || ce.MAC.String() != peerMAC.String() {
		t.Fatalf("ConflictError = %+v, want IP %s MAC %s", ce, vip.Addr(), peerMAC)
	}
	if held(fl) {
		t.Fatal("address added despite the conflict")
	}
	if _, n := fa.counts(); n != 0 {
		t.Fatalf("%d announcements despite the conflict", n)
	}
	st := m.Status()
	if st.Held || !st.Desired || !strings.Contains(st.Conflict, peerMAC.String()) {
		t.Fatalf("Status = %+v, want desired, not held, conflict naming %s", st, peerMAC)
	}
	// The loop keeps probing and takes it once the other host lets go.
	fa.setConflict(nil)
	eventually(t, "the address is added after the conflict clears", func() bool { return held(fl) })
	eventually(t, "Status.Conflict cleared", func() bool { return m.Status().Conflict == "" })
}

func TestReleaseRemovesAtOnceAndStopsAnnouncing(t *testing.T) {
	fl, fa := testLinks(), &fakeAnnouncer{}
	m := start(t, fl, fa, Options{AnnounceCount: 1000, AnnounceInterval: time.Millisecond})
	if err := m.Acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a few announcements", func() bool { _, n := fa.counts(); return n > 3 })
	if err := m.Release(context.Background()); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if held(fl) {
		t.Fatal("address still present when Release returned")
	}
	_, before := fa.counts()
	time.Sleep(20 * time.Millisecond)
	if _, after := fa.counts(); after != before {
		t.Fatalf("%d announcements after Release returned", after-before)
	}
	if st := m.Status(); st.Held || st.Desired {
		t.Fatalf("Status = %+v, want neither held nor desired", st)
	}
}

func TestReleaseInterruptsProbe(t *testing.T) {
	fl := testLinks()
	fa := &fakeAnnouncer{block: true, probing: make(chan struct{}, 1)}
	m := start(t, fl, fa, Options{ProbeTimeout: time.Hour})
	acquired := make(chan error, 1)
	go func() { acquired <- m.Acquire(context.Background()) }()
	<-fa.probing
	t0 := time.Now()
	if err := m.Release(context.Background()); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if d := time.Since(t0); d > 500*time.Millisecond {
		t.Fatalf("Release took %v behind a probe", d)
	}
	if err := <-acquired; !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted Acquire returned %v, want context.Canceled", err)
	}
	if held(fl) {
		t.Fatal("address present after Release")
	}
}

func TestStopRemoves(t *testing.T) {
	fl, fa := testLinks(), &fakeAnnouncer{}
	m := start(t, fl, fa, Options{AnnounceCount: 1})
	if err := m.Acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := m.Stop(context.Background()); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if held(fl) {
		t.Fatal("address present after Stop")
	}
	if err := m.Acquire(context.Background()); !errors.Is(err, ErrStopped) {
		t.Fatalf("Acquire after Stop = %v, want ErrStopped", err)
	}
	if err := m.Release(context.Background()); err != nil {
		t.Fatalf("Release after Stop = %v, want nil", err)
	}
}

// A reload: the old process's manager detaches, the new one starts with
// the address on the interface and acquires it. The address must never
// leave the interface: no removal, no re-add, no probe (our own kernel
// would not answer one), only fresh announcements.
func TestDetachThenNewManagerKeepsAddress(t *testing.T) {
	fl, fa := testLinks(), &fakeAnnouncer{}
	old := start(t, fl, fa, Options{AnnounceCount: 1})
	if err := old.Acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := old.Detach(context.Background()); err != nil {
		t.Fatalf("Detach: %v", err)
	}
	if !held(fl) {
		t.Fatal("address removed by Detach")
	}
	if err := old.Acquire(context.Background()); !errors.Is(err, ErrStopped) {
		t.Fatalf("Acquire after Detach = %v, want ErrStopped", err)
	}
	probes, ann := fa.counts()

	next := start(t, fl, fa, Options{AnnounceCount: 1})
	time.Sleep(60 * time.Millisecond) // reconcile passes while undecided
	if !held(fl) {
		t.Fatal("the new manager removed the address before deciding")
	}
	if err := next.Acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	if adds, dels := fl.changes(); adds != 1 || dels != 0 {
		t.Fatalf("address added %d times and removed %d times across the handover, want 1 and 0", adds, dels)
	}
	if p, a := fa.counts(); p != probes || a <= ann {
		t.Fatalf("after the new Acquire: %d probes (was %d), %d announcements (was %d); want no probe and a new announcement", p, probes, a, ann)
	}
	// A stop, unlike a detach, still takes the address away.
	if err := next.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if held(fl) {
		t.Fatal("address present after Stop")
	}
}

func TestContextEndRemoves(t *testing.T) {
	fl, fa := testLinks(), &fakeAnnouncer{}
	m := newManager(Options{AnnounceCount: 1}, testLogger(t), fl, fa)
	m.SetAddress(vip)
	ctx, cancel := context.WithCancel(context.Background())
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.Acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := m.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if held(fl) {
		t.Fatal("address present after the loop's context ended")
	}
}

func TestBeforeStart(t *testing.T) {
	fl, fa := testLinks(), &fakeAnnouncer{}
	fl.addByHand("eth0", vip)
	m := newManager(Options{}, testLogger(t), fl, fa)
	m.SetAddress(vip)
	if err := m.Acquire(context.Background()); !errors.Is(err, ErrNotStarted) {
		t.Fatalf("Acquire before Start = %v, want ErrNotStarted", err)
	}
	if err := m.Release(context.Background()); err != nil || held(fl) {
		t.Fatalf("Release before Start = %v, held %v; want it removed", err, held(fl))
	}
	fl.addByHand("eth0", vip)
	if err := m.Stop(context.Background()); err != nil || held(fl) {
		t.Fatalf("Stop before Start = %v, held %v; want it removed", err, held(fl))
	}
}

func TestAcquireWithoutAddress(t *testing.T) {
	fl, fa := testLinks(), &fakeAnnouncer{}
	m := newManager(Options{}, testLogger(t), fl, fa)
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m.Stop(context.Background())
	if err := m.Acquire(context.Background()); !errors.Is(err, ErrNoAddress) {
		t.Fatalf("Acquire = %v, want ErrNoAddress", err)
	}
	// Desired stays held: setting the address later takes it.
	m.SetAddress(vip)
	eventually(t, "the address is taken once set", func() bool { return held(fl) })
}

func TestAcquireNoInterfaceInSubnet(t *testing.T) {
	fl, fa := testLinks(), &fakeAnnouncer{}
	m := newManager(Options{}, testLogger(t), fl, fa)
	m.SetAddress(netip.MustParsePrefix("10.99.0.100/24"))
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m.Stop(context.Background())
	err := m.Acquire(context.Background())
	const want = "no interface has an address in 10.99.0.0/24: the cluster IP must be in the node IPs' subnet"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Acquire = %v, want it to say %q", err, want)
	}
	if st := m.Status(); !strings.Contains(st.LastError, want) {
		t.Fatalf("Status.LastError = %q, want %q", st.LastError, want)
	}
}

func TestSetAddressMovesAndZeroLeaves(t *testing.T) {
	fl, fa := testLinks(), &fakeAnnouncer{}
	m := start(t, fl, fa, Options{AnnounceCount: 1})
	if err := m.Acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	next := netip.MustParsePrefix("10.77.0.101/24")
	m.SetAddress(next)
	if held(fl) {
		t.Fatal("old cluster IP still present after SetAddress moved it")
	}
	eventually(t, "the new address is held", func() bool { return len(fl.holders(next.Addr())) == 1 })
	m.SetAddress(netip.Prefix{})
	time.Sleep(50 * time.Millisecond)
	if len(fl.holders(next.Addr())) != 1 {
		t.Fatal("SetAddress(zero) removed the address; it must leave it")
	}
	if st := m.Status(); st.Address != "" {
		t.Fatalf("Status.Address = %q after SetAddress(zero)", st.Address)
	}
}

func TestPickInterface(t *testing.T) {
	ls, _ := testLinks().List()
	ls = append(ls, link{Index: 4, Name: "eth2", Addrs: []ifAddr{{Prefix: netip.MustParsePrefix("10.77.0.0/16")}}})
	cases := []struct {
		vip, name, want, err string
	}{
		{vip: "10.77.0.100/24", want: "eth0"}, // /24 beats eth2's /16
		{vip: "10.77.9.9/24", want: "eth2"},
		{vip: "192.168.5.7/24", want: "eth1"},
		{vip: "fd00:77::100/64", want: "eth0"},
		{vip: "192.168.5.7/24", name: "eth0", want: "eth0"}, // named wins
		{vip: "10.1.2.3/24", err: "no interface has an address in 10.1.2.0/24: the cluster IP must be in the node IPs' subnet"},
		{vip: "fe80::99/64", err: "no interface has an address in fe80::/64"}, // link-local does not count
		{vip: "10.77.0.100/24", name: "wlan9", err: `interface "wlan9" for cluster IP 10.77.0.100 not found`},
	}
	for _, c := range cases {
		l, err := pickInterface(ls, c.name, netip.MustParsePrefix(c.vip))
		switch {
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("pickInterface(%s, %q) = %v, %v; want error %q", c.vip, c.name, l.Name, err, c.err)
		case c.err == "" && (err != nil || l.Name != c.want):
			t.Errorf("pickInterface(%s, %q) = %v, %v; want %s", c.vip, c.name, l.Name, err, c.want)
		}
	}
	// The cluster IP itself (held as a secondary) is not a node address.
	only := []link{{Index: 2, Name: "eth0", Addrs: []ifAddr{{Prefix: vip}}}}
	if _, err := pickInterface(only, "", vip); err == nil {
		t.Error("pickInterface chose an interface by the cluster IP itself")
	}
}

func TestSourceFor(t *testing.T) {
	l := link{Addrs: []ifAddr{
		{Prefix: netip.MustParsePrefix("10.77.0.100/24")}, // the cluster IP
		{Prefix: netip.MustParsePrefix("10.77.0.1/24")},
		{Prefix: netip.MustParsePrefix("fd00:77::2/64"), Tentative: true},
		{Prefix: netip.MustParsePrefix("fe80::1/64")},
	}}
	if got := sourceFor(l, vip); got != netip.MustParseAddr("10.77.0.1") {
		t.Errorf("IPv4 source = %v, want the node IP", got)
	}
	if got := sourceFor(l, netip.MustParsePrefix("fd00:77::100/64")); got != netip.MustParseAddr("fe80::1") {
		t.Errorf("IPv6 source = %v, want the link-local address (the node IP is tentative)", got)
	}
	if got := sourceFor(l, netip.MustParsePrefix("10.5.0.1/24")); got.IsValid() {
		t.Errorf("source outside every subnet = %v, want none (ARP falls back to 0.0.0.0)", got)
	}
}

func TestProbeOrAddFailureNotHeld(t *testing.T) {
	fl, fa := testLinks(), &fakeAnnouncer{probeErr: errors.New("operation not permitted")}
	m := start(t, fl, fa, Options{})
	err := m.Acquire(context.Background())
	if err == nil || !strings.Contains(err.Error(), "while probing for cluster IP 10.77.0.100 on eth0") {
		t.Fatalf("Acquire = %v, want a probe error saying what was done", err)
	}
	if held(fl) {
		t.Fatal("added without a working probe")
	}
	if st := m.Status(); !strings.Contains(st.LastError, "operation not permitted") {
		t.Fatalf("Status.LastError = %q", st.LastError)
	}

	fa.mu.Lock()
	fa.probeErr = nil
	fa.mu.Unlock()
	fl.mu.Lock()
	fl.addErr = errors.New("file exists")
	fl.mu.Unlock()
	if err := m.Acquire(context.Background()); err == nil || !strings.Contains(err.Error(), "while adding cluster IP 10.77.0.100/24 to eth0") {
		t.Fatalf("Acquire = %v, want an add error saying what was done", err)
	}
	fl.mu.Lock()
	fl.addErr = nil
	fl.mu.Unlock()
	eventually(t, "the loop adds it once adding works", func() bool { return held(fl) })
	eventually(t, "LastError cleared", func() bool { return m.Status().LastError == "" })
}
