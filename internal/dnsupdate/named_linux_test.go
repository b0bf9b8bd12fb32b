//go:build linux

package dnsupdate

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// The integration tests run a real BIND 9 (Debian's bind9 package) in
// t.TempDir(), listening on 127.0.0.1 at a free port, in the foreground.

// testKey is a TSIG key both named.conf and a secret file hold.
type testKey struct {
	name, alg, secret string
}

func newTestKey(t *testing.T, name, alg string) testKey {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return testKey{name: name, alg: alg, secret: base64.StdEncoding.EncodeToString(b)}
}

// statement is the key as tsig-keygen writes it.
func (k testKey) statement() string {
	return fmt.Sprintf("key %q {\n\talgorithm %s;\n\tsecret %q;\n};\n", k.name, k.alg, k.secret)
}

// testZone is one zone of the test server, with its access rule.
type testZone struct {
	name   string // "example.test"
	access string // "allow-update { key tk; };" or "update-policy { ... };"
}

func (z testZone) file() string {
	return fmt.Sprintf(`$TTL 60
@	IN SOA ns.%[1]s. admin.%[1]s. 1 60 60 600 60
@	IN NS ns.%[1]s.
ns	IN A 127.0.0.1
db	IN A 10.0.0.1
other	IN A 10.0.0.9
`, z.name)
}

// namedConf is a server that answers for zones only: no recursion, no
// notify, no control channel, every file it writes in dir.
func namedConf(dir string, keys []testKey, zones []testZone) string {
	var b strings.Builder
	fmt.Fprintf(&b, `options {
	directory %[1]q;
	pid-file %[2]q;
	session-keyfile %[3]q;
	managed-keys-directory %[1]q;
	listen-on { 127.0.0.1; };
	listen-on-v6 { none; };
	recursion no;
	notify no;
	dnssec-validation no;
};
controls { };
`, dir, filepath.Join(dir, "named.pid"), filepath.Join(dir, "session.key"))
	for _, k := range keys {
		b.WriteString(k.statement())
	}
	for _, z := range zones {
		fmt.Fprintf(&b, "zone %q { type primary; file %q; %s };\n", z.name, filepath.Join(dir, z.name+".db"), z.access)
	}
	return b.String()
}

// testNamed is one named process.
type testNamed struct {
	addr string // 127.0.0.1:port
	dir  string
	out  *syncBuffer
	done chan struct{}
	err  error // cmd.Wait's, once done is closed
}

func namedBinary(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("named")
	if err != nil {
		// /usr/sbin is not on every user's PATH.
		if _, serr := os.Stat("/usr/sbin/named"); serr == nil {
			return "/usr/sbin/named"
		}
		if os.Getenv("CI") == "true" {
			t.Fatalf("named (Debian's bind9) is required in CI: %v", err)
		}
		t.Skipf("skipping the BIND integration test: %v (install bind9: apt-get install --no-install-recommends bind9)", err)
	}
	return bin
}

// freePort is a port free on 127.0.0.1 for both UDP and TCP when asked.
func freePort(t *testing.T) int {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp4", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if err == nil {
			u.Close()
			return port
		}
	}
	t.Fatal("no port free for both UDP and TCP on 127.0.0.1")
	return 0
}

// writeNamed writes the configuration and zone files into a new directory.
func writeNamed(t *testing.T, keys []testKey, zones []testZone) (dir, conf string) {
	t.Helper()
	dir = t.TempDir()
	for _, z := range zones {
		if err := os.WriteFile(filepath.Join(dir, z.name+".db"), []byte(z.file()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	conf = filepath.Join(dir, "named.conf")
	if err := os.WriteFile(conf, []byte(namedConf(dir, keys, zones)), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, conf
}

// startNamed runs named in the foreground (-g: log to stderr, do not
// fork) with one worker thread, and stops it when the test ends. It runs as
// the test's user: as root, named stays root without -u, which is what
// lets it use a directory only root can enter.
func startNamed(t *testing.T, dir, conf string, port int, zone string) *testNamed {
	t.Helper()
	n := &testNamed{addr: fmt.Sprintf("127.0.0.1:%d", port), dir: dir, out: &syncBuffer{}, done: make(chan struct{})}
	cmd := exec.Command(namedBinary(t), "-g", "-4", "-n", "1", "-c", conf, "-p", fmt.Sprint(port))
	cmd.Stdout, cmd.Stderr = n.out, n.out
	// Should the test binary die, named dies with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("while starting named: %v", err)
	}
	go func() { n.err = cmd.Wait(); close(n.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-n.done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-n.done
		}
		if t.Failed() {
			t.Logf("named's log:\n%s", n.out.String())
		}
	})
	n.waitServing(t, zone)
	return n
}

// waitServing waits until named answers for zone with authority.
func (n *testNamed) waitServing(t *testing.T, zone string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-n.done:
			t.Fatalf("named exited (%v):\n%s", n.err, n.out.String())
		default:
		}
		resp, err := query(context.Background(), n.addr, dns.Fqdn(zone), dns.TypeSOA, 200*time.Millisecond)
		if err == nil && resp.Rcode == dns.RcodeSuccess && resp.Authoritative {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("named does not answer for %s at %s within 10s (%v):\n%s", zone, n.addr, err, n.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// serial is the zone's SOA serial as named serves it.
func (n *testNamed) serial(t *testing.T, zone string) uint32 {
	t.Helper()
	resp, err := query(context.Background(), n.addr, dns.Fqdn(zone), dns.TypeSOA, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for _, rr := range resp.Answer {
		if soa, ok := rr.(*dns.SOA); ok {
			return soa.Serial
		}
	}
	t.Fatalf("no SOA in the answer for %s: %v", zone, resp)
	return 0
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testServer is named with the zones most tests use:
//
//   - example.test: allow-update for keys tk and tk512;
//   - policy.test: update-policy letting tk change db.policy.test only;
//   - locked.test: allow-update for another key only.
type testServer struct {
	*testNamed
	tk, tk512, other testKey
}

func startTestServer(t *testing.T) *testServer {
	t.Helper()
	s := &testServer{
		tk:    newTestKey(t, "tk", "hmac-sha256"),
		tk512: newTestKey(t, "tk512", "hmac-sha512"),
		other: newTestKey(t, "other", "hmac-sha256"),
	}
	dir, conf := writeNamed(t, []testKey{s.tk, s.tk512, s.other}, testZones)
	s.testNamed = startNamed(t, dir, conf, freePort(t), "example.test")
	return s
}

var testZones = []testZone{
	{name: "example.test", access: "allow-update { key tk; key tk512; };"},
	{name: "policy.test", access: "update-policy { grant tk name db.policy.test. A AAAA; };"},
	{name: "locked.test", access: "allow-update { key other; };"},
}

// updater is an Updater for zone at n, its key read from a file that
// holds k's statement, or (bare) only k's secret, the key name and
// algorithm then coming from the configuration.
func (n *testNamed) updater(t *testing.T, zone string, k testKey, bare bool) *Updater {
	t.Helper()
	path := filepath.Join(t.TempDir(), k.name+".key")
	content, keyName := k.statement(), ""
	if bare {
		content, keyName = k.secret+"\n", k.name
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	alg := ""
	if bare {
		alg = k.alg
	}
	u, err := New(Config{Zone: zone, Server: n.addr, KeyName: keyName, Algorithm: alg, SecretFile: path})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}
