//go:build linux

package dnsupdate

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// wantAnswer checks what named serves for name.
func (n *testNamed) wantAnswer(t *testing.T, name string, want []netip.Addr, ttl time.Duration) {
	t.Helper()
	a, err := Lookup(context.Background(), n.addr, name)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a.Addrs, want) || (len(want) > 0 && a.TTL != ttl) || !a.Authoritative {
		t.Fatalf("named answers %v TTL %s (authoritative %v) for %s, want %v TTL %s", a.Addrs, a.TTL, a.Authoritative, name, want, ttl)
	}
}

func TestPointAgainstNamed(t *testing.T) {
	s := startTestServer(t)
	u := s.updater(t, "example.test", s.tk, false)
	ctx := testCtx(t)
	s.wantAnswer(t, "db.example.test", addrs("10.0.0.1"), 60*time.Second)
	before := s.serial(t, "example.test")

	if err := u.Point(ctx, "db.example.test", addrs("2001:db8::2", "10.0.0.2")); err != nil {
		t.Fatal(err)
	}
	s.wantAnswer(t, "db.example.test", addrs("10.0.0.2", "2001:db8::2"), DefaultTTL)
	if after := s.serial(t, "example.test"); after == before {
		t.Errorf("serial still %d after an update", after)
	}

	// Pointing at an IPv4 address only drops the AAAA record too.
	if err := u.Point(ctx, "db.example.test.", addrs("10.0.0.3")); err != nil {
		t.Fatal(err)
	}
	s.wantAnswer(t, "db.example.test", addrs("10.0.0.3"), DefaultTTL)
	s.wantAnswer(t, "other.example.test", addrs("10.0.0.9"), 60*time.Second)
}

// An update too large for 512 bytes goes over TCP; one with a hmac-sha512
// key given as a bare secret, with a TTL of its own, lands too.
func TestPointOverTCPWithSHA512AgainstNamed(t *testing.T) {
	s := startTestServer(t)
	u := s.updater(t, "example.test", s.tk512, true)
	u.ttl = 7
	var many []netip.Addr
	for i := 1; i <= 40; i++ {
		many = append(many, netip.AddrFrom4([4]byte{10, 1, 0, byte(i)}))
	}
	if net := u.network(pointMessage(u.zone, mustRecords(t, u, "db.example.test", many))); net != "tcp" {
		t.Fatalf("40 addresses are sent over %s, want tcp", net)
	}
	if err := u.Point(testCtx(t), "db.example.test", many); err != nil {
		t.Fatal(err)
	}
	s.wantAnswer(t, "db.example.test", many, 7*time.Second)
}

func mustRecords(t *testing.T, u *Updater, name string, a []netip.Addr) []dns.RR {
	t.Helper()
	rrs, err := u.pointRecords(name, a)
	if err != nil {
		t.Fatal(err)
	}
	return rrs
}

func TestRemoveAgainstNamed(t *testing.T) {
	s := startTestServer(t)
	u := s.updater(t, "example.test", s.tk, false)
	ctx := testCtx(t)
	if err := u.Point(ctx, "db.example.test", addrs("10.0.0.1", "10.0.0.2", "2001:db8::1")); err != nil {
		t.Fatal(err)
	}
	if err := u.Remove(ctx, "db.example.test", netip.MustParseAddr("10.0.0.1")); err != nil {
		t.Fatal(err)
	}
	s.wantAnswer(t, "db.example.test", addrs("10.0.0.2", "2001:db8::1"), DefaultTTL)
	if err := u.Remove(ctx, "db.example.test", netip.MustParseAddr("2001:db8::1")); err != nil {
		t.Fatal(err)
	}
	s.wantAnswer(t, "db.example.test", addrs("10.0.0.2"), DefaultTTL)
	// The old primary's address already gone: nothing to do, no error.
	if err := u.Remove(ctx, "db.example.test", netip.MustParseAddr("10.0.0.1")); err != nil {
		t.Fatal(err)
	}
	s.wantAnswer(t, "db.example.test", addrs("10.0.0.2"), DefaultTTL)
}

func TestCheckKeyAgainstNamed(t *testing.T) {
	s := startTestServer(t)
	ctx := testCtx(t)
	good := s.updater(t, "example.test", s.tk, false)
	if err := good.CheckKey(ctx); err != nil {
		t.Fatalf("the right key: %v", err)
	}
	if err := s.updater(t, "example.test", s.tk512, true).CheckKey(ctx); err != nil {
		t.Fatalf("the right hmac-sha512 key, bare: %v", err)
	}
	serial := s.serial(t, "example.test")

	wrongSecret := s.tk
	wrongSecret.secret = newTestKey(t, "x", "").secret
	wrongAlg := s.tk
	wrongAlg.alg = "hmac-sha512"
	for _, c := range []struct {
		what   string
		key    testKey
		answer string
	}{
		{"a wrong secret", wrongSecret, "NOTAUTH/BADSIG"},
		{"an unknown key name", newTestKey(t, "nosuch", "hmac-sha256"), "NOTAUTH/BADKEY"},
		{"a wrong algorithm", wrongAlg, "NOTAUTH/BADKEY"},
	} {
		err := s.updater(t, "example.test", c.key, false).CheckKey(ctx)
		t.Logf("%s: %v", c.what, err)
		want := fmt.Sprintf("the TSIG key %s was refused by %s (%s): check key name, algorithm and secret", c.key.name, s.addr, c.answer)
		if !errors.Is(err, ErrKeyRefused) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want an ErrKeyRefused saying %q", c.what, err, want)
		}
		// Point with the same key fails the same way, and changes nothing.
		err = s.updater(t, "example.test", c.key, false).Point(ctx, "db.example.test", addrs("10.0.0.66"))
		if !errors.Is(err, ErrKeyRefused) {
			t.Errorf("%s: Point: got %v, want ErrKeyRefused", c.what, err)
		}
	}
	if got := s.serial(t, "example.test"); got != serial {
		t.Errorf("serial %d after refused keys, was %d", got, serial)
	}
	s.wantAnswer(t, "db.example.test", addrs("10.0.0.1"), 60*time.Second)
	if err := good.CheckKey(ctx); err != nil {
		t.Fatal(err)
	}
	if got := s.serial(t, "example.test"); got != serial {
		t.Errorf("serial %d after CheckKey, was %d: it changed the zone", got, serial)
	}
}

func TestRefusedAgainstNamed(t *testing.T) {
	s := startTestServer(t)
	ctx := testCtx(t)
	u := s.updater(t, "locked.test", s.tk, false)
	want := fmt.Sprintf("%s refuses updates to locked.test from this host (REFUSED): check allow-update / update-policy", s.addr)
	for what, err := range map[string]error{
		"CheckKey": u.CheckKey(ctx),
		"Point":    u.Point(ctx, "db.locked.test", addrs("10.0.0.2")),
		"Remove":   u.Remove(ctx, "db.locked.test", netip.MustParseAddr("10.0.0.1")),
	} {
		t.Logf("%s: %v", what, err)
		if !errors.Is(err, ErrUpdateRefused) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want an ErrUpdateRefused saying %q", what, err, want)
		}
	}
	s.wantAnswer(t, "db.locked.test", addrs("10.0.0.1"), 60*time.Second)
}

// update-policy is checked per record, after the prerequisites: CheckKey
// passes, and only Point of a name the policy does not grant is refused.
func TestUpdatePolicyAgainstNamed(t *testing.T) {
	s := startTestServer(t)
	ctx := testCtx(t)
	u := s.updater(t, "policy.test", s.tk, false)
	if err := u.CheckKey(ctx); err != nil {
		t.Fatal(err)
	}
	if err := u.Point(ctx, "db.policy.test", addrs("10.0.0.2")); err != nil {
		t.Fatal(err)
	}
	s.wantAnswer(t, "db.policy.test", addrs("10.0.0.2"), DefaultTTL)
	err := u.Point(ctx, "other.policy.test", addrs("10.0.0.2"))
	if !errors.Is(err, ErrUpdateRefused) {
		t.Fatalf("got %v, want ErrUpdateRefused", err)
	}
	s.wantAnswer(t, "other.policy.test", addrs("10.0.0.9"), 60*time.Second)
}

func TestNotAuthAndNotZoneAgainstNamed(t *testing.T) {
	s := startTestServer(t)
	ctx := testCtx(t)
	err := s.updater(t, "absent.test", s.tk, false).CheckKey(ctx)
	t.Logf("a zone named does not hold: %v", err)
	if !errors.Is(err, ErrNotAuth) || !strings.Contains(err.Error(), "is not a primary server for absent.test (NOTAUTH)") {
		t.Errorf("got %v, want ErrNotAuth", err)
	}
	// Point refuses a name outside the zone before sending; a message
	// built by hand shows what the server says of one.
	u := s.updater(t, "example.test", s.tk, false)
	rrs := []dns.RR{addrRecord("db.elsewhere.test.", netip.MustParseAddr("10.0.0.5"), 5)}
	err = u.update(ctx, pointMessage(u.zone, rrs))
	t.Logf("a name outside the zone: %v", err)
	if !errors.Is(err, ErrNotZone) || !strings.Contains(err.Error(), "(NOTZONE)") {
		t.Errorf("got %v, want ErrNotZone", err)
	}
}

// BIND checks the signing time after the signature, and signs its answer.
func TestBadTimeAgainstNamed(t *testing.T) {
	s := startTestServer(t)
	u := s.updater(t, "example.test", s.tk, false)
	u.now = func() time.Time { return time.Now().Add(-time.Hour) }
	err := u.CheckKey(testCtx(t))
	t.Logf("signed an hour ago: %v", err)
	if !errors.Is(err, ErrClock) || !strings.Contains(err.Error(), "NOTAUTH/BADTIME") {
		t.Errorf("got %v, want ErrClock naming NOTAUTH/BADTIME", err)
	}
}

func TestWaitAnswerAgainstNamed(t *testing.T) {
	s := startTestServer(t)
	u := s.updater(t, "example.test", s.tk, false)
	ctx := testCtx(t)
	const delay = 300 * time.Millisecond
	pointed := make(chan error, 1)
	go func() {
		time.Sleep(delay)
		pointed <- u.Point(ctx, "db.example.test", addrs("10.0.0.2"))
	}()
	took, err := u.WaitAnswer(ctx, "db.example.test", addrs("10.0.0.2"), 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-pointed; err != nil {
		t.Fatal(err)
	}
	t.Logf("WaitAnswer took %s", took)
	if took < delay || took > 5*time.Second {
		t.Errorf("WaitAnswer took %s: the update was sent after %s", took, delay)
	}

	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	_, err = u.WaitAnswer(short, "db.example.test", addrs("10.0.0.3"), 20*time.Millisecond)
	t.Logf("waiting for an answer that does not come: %v", err)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "still answers 10.0.0.2 for db.example.test, not 10.0.0.3") {
		t.Errorf("got %v", err)
	}
}

// The DNS server is down when the failover starts: PointUntil retries
// until named is started on the port it was told, then lands.
func TestPointUntilAgainstNamedStartedLate(t *testing.T) {
	k := newTestKey(t, "tk", "hmac-sha256")
	dir, conf := writeNamed(t, []testKey{k}, testZones[:1])
	port := freePort(t)
	late := &testNamed{addr: fmt.Sprintf("127.0.0.1:%d", port)}
	u := late.updater(t, "example.test", k, false)
	u.timeout = 300 * time.Millisecond

	var mu sync.Mutex
	var attempts []error
	landed := make(chan error, 1)
	ctx := testCtx(t)
	start := time.Now()
	go func() {
		landed <- u.PointUntil(ctx, "db.example.test", addrs("10.0.0.2"), func(n int, err error) {
			mu.Lock()
			defer mu.Unlock()
			attempts = append(attempts, err)
		})
	}()
	const delay = time.Second
	time.Sleep(delay)
	n := startNamed(t, dir, conf, port, "example.test")
	if err := <-landed; err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	mu.Lock()
	defer mu.Unlock()
	t.Logf("landed after %s, %d attempts; the first failed with: %v", took, len(attempts), attempts[0])
	if len(attempts) < 2 || attempts[len(attempts)-1] != nil {
		t.Fatalf("attempts %v: want failures, then success", attempts)
	}
	// Later failures may be anything: named listens a moment before its
	// zones are loaded.
	if !errors.Is(attempts[0], ErrNoAnswer) {
		t.Errorf("the attempt before named ran failed with %v, want ErrNoAnswer", attempts[0])
	}
	// The backoff is at most 5s once named is up, well under the test's bound.
	if took < delay || took > delay+retryMax+2*time.Second {
		t.Errorf("landed after %s", took)
	}
	n.wantAnswer(t, "db.example.test", addrs("10.0.0.2"), DefaultTTL)
}

func TestPointUntilGivesUpWithContext(t *testing.T) {
	k := newTestKey(t, "tk", "hmac-sha256")
	nobody := &testNamed{addr: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	u := nobody.updater(t, "example.test", k, false)
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	calls := 0
	err := u.PointUntil(ctx, "db.example.test", addrs("10.0.0.2"), func(int, error) { calls++ })
	t.Logf("after %d attempts: %v", calls, err)
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrNoAnswer) || calls < 2 {
		t.Errorf("got %v after %d attempts", err, calls)
	}
}
