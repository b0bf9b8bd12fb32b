package dnscheck

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// testZone is a tiny authoritative DNS server for one test: it answers
// from its records, NXDOMAIN for unknown names, no data for known names
// without the asked type, and CNAMEs without chasing them (so the client's
// follow-up is exercised). Names can be made to fail with an rcode or to
// never be answered.
type testZone struct {
	mu    sync.Mutex
	rrs   map[string][]dns.RR // by lower-case fqdn
	rcode map[string]int      // forced rcode by fqdn
	drop  map[string]bool     // never answered
	asked []string            // "name type" in the order asked
}

func newTestZone(t *testing.T, records ...string) *testZone {
	t.Helper()
	z := &testZone{rrs: map[string][]dns.RR{}, rcode: map[string]int{}, drop: map[string]bool{}}
	for _, rec := range records {
		z.add(t, rec)
	}
	return z
}

func (z *testZone) add(t *testing.T, rec string) {
	t.Helper()
	rr, err := dns.NewRR(rec)
	if err != nil {
		t.Fatalf("bad test record %q: %v", rec, err)
	}
	z.mu.Lock()
	defer z.mu.Unlock()
	k := strings.ToLower(rr.Header().Name)
	z.rrs[k] = append(z.rrs[k], rr)
}

func (z *testZone) failName(name string, rcode int) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.rcode[dns.Fqdn(strings.ToLower(name))] = rcode
}

func (z *testZone) dropName(name string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.drop[dns.Fqdn(strings.ToLower(name))] = true
}

func (z *testZone) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	if len(req.Question) != 1 {
		m := new(dns.Msg)
		m.SetRcode(req, dns.RcodeFormatError)
		_ = w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	z.mu.Lock()
	z.asked = append(z.asked, normName(name)+" "+dns.TypeToString[q.Qtype])
	drop := z.drop[name]
	rcode, forced := z.rcode[name]
	rrs := z.rrs[name]
	z.mu.Unlock()
	if drop {
		return // the client times out
	}
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	m.RecursionAvailable = true
	switch {
	case forced:
		m.Rcode = rcode
	case len(rrs) == 0:
		m.Rcode = dns.RcodeNameError
	default:
		for _, rr := range rrs {
			if rr.Header().Rrtype == q.Qtype || rr.Header().Rrtype == dns.TypeCNAME {
				m.Answer = append(m.Answer, dns.Copy(rr))
			}
		}
	}
	_ = w.WriteMsg(m)
}

// serveZone starts z on a random UDP port of 127.0.0.1 and returns its
// address.
func serveZone(t *testing.T, z *testZone) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, Handler: z, NotifyStartedFunc: func() { close(started) }}
	go func() { _ = srv.ActivateAndServe() }()
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("test DNS server did not start")
	}
	t.Cleanup(func() { _ = srv.Shutdown() })
	return pc.LocalAddr().String()
}

// listen opens a TCP listener on 127.0.0.1 that accepts and closes
// connections; it returns the port.
func listen(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return l.Addr().(*net.TCPAddr).Port
}

// closedPort returns a TCP port of 127.0.0.1 that nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return p
}

// closedUDP returns a 127.0.0.1 UDP address nothing listens on.
func closedUDP(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := pc.LocalAddr().String()
	pc.Close()
	return a
}

// loopbackDial sends every port check to 127.0.0.1 on the same port, and
// fails the test if a check dials anything but the expected peer IP.
func loopbackDial(t *testing.T, peer netip.Addr) func(ctx context.Context, ap netip.AddrPort) (net.Conn, error) {
	return func(ctx context.Context, ap netip.AddrPort) (net.Conn, error) {
		if ap.Addr() != peer {
			t.Errorf("port check dialled %s, want the peer %s", ap, peer)
		}
		var d net.Dialer
		return d.DialContext(ctx, "tcp", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), ap.Port()).String())
	}
}

// serveZoneUDPandTCP serves z on one port over UDP and TCP, and returns the
// address; it skips the test if the TCP port is taken.
func serveZoneUDPandTCP(t *testing.T, h dns.Handler) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		pc.Close()
		t.Skipf("TCP port of %s taken: %v", pc.LocalAddr(), err)
	}
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: l, Handler: h}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go func() { _ = srv.ActivateAndServe() }()
		<-started
		t.Cleanup(func() { _ = srv.Shutdown() })
	}
	return pc.LocalAddr().String()
}
