package dnsupdate

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func testUpdater(t *testing.T, cfg Config, keyFile string) *Updater {
	t.Helper()
	cfg.SecretFile = writeKeyFile(t, keyFile, 0o600)
	if cfg.Zone == "" {
		cfg.Zone = "example.test"
	}
	if cfg.Server == "" {
		cfg.Server = "192.0.2.53"
	}
	u, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestNewDefaults(t *testing.T) {
	u := testUpdater(t, Config{KeyName: "TK"}, secret32)
	if u.zone != "example.test." || u.server != "192.0.2.53:53" || u.key.name != "tk." || u.alg != dns.HmacSHA256 ||
		u.ttl != 5 || u.timeout != DefaultTimeout || len(u.key.secret) != 32 {
		t.Errorf("got zone %q server %q key %q alg %q ttl %d timeout %s", u.zone, u.server, u.key.name, u.alg, u.ttl, u.timeout)
	}
	u = testUpdater(t, Config{Server: "[2001:db8::53]:5353", TTL: 30 * time.Second, Timeout: time.Second},
		`key "k" { algorithm hmac-sha512; secret "`+secret32+`"; };`)
	if u.server != "[2001:db8::53]:5353" || u.key.name != "k." || u.alg != dns.HmacSHA512 || u.ttl != 30 || u.timeout != time.Second {
		t.Errorf("got server %q key %q alg %q ttl %d timeout %s", u.server, u.key.name, u.alg, u.ttl, u.timeout)
	}
}

func TestValidateReturnsEveryProblem(t *testing.T) {
	err := Config{Zone: "a..b", Server: "ns1.example.test", KeyName: "x..y", Algorithm: "md5", TTL: 1500 * time.Millisecond, Timeout: -1}.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		`zone "a..b" is not a DNS name`,
		`zone primary server: "ns1.example.test" is not an IP address or IP:port (a host name would need DNS`,
		`TSIG key name "x..y" is not a DNS name`,
		`TSIG algorithm "md5" is not one of`,
		"no TSIG secret file",
		"TTL 1.5s is not a whole number of seconds",
		"timeout -1ns is negative",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%v\ndoes not say %q", err, want)
		}
	}
	for _, s := range []string{"0.0.0.0", "192.0.2.1:0", ""} {
		if err := (Config{Zone: "z.", Server: s, SecretFile: "f"}).Validate(); err == nil {
			t.Errorf("server %q accepted", s)
		}
	}
}

func TestNewReconcilesKeyWithFile(t *testing.T) {
	stmt := `key "tk" { algorithm hmac-sha256; secret "` + secret32 + `"; };`
	for _, c := range []struct {
		what string
		cfg  Config
		file string
		want string
	}{
		{"bare secret, no key name", Config{}, secret32, "holds only a secret, so the key name must be set"},
		{"other key name", Config{KeyName: "other"}, stmt, `holds key "tk", but the key name is set to "other"`},
		{"other algorithm", Config{Algorithm: "hmac-sha512"}, stmt, "holds a key for hmac-sha256, but the algorithm is set to hmac-sha512"},
	} {
		c.cfg.Zone, c.cfg.Server = "example.test", "192.0.2.53"
		c.cfg.SecretFile = writeKeyFile(t, c.file, 0o600)
		_, err := New(c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), c.cfg.SecretFile) {
			t.Errorf("%s: got %v, want the file named and %q", c.what, err, c.want)
		}
	}
	// The same name and algorithm, written otherwise, agree.
	testUpdater(t, Config{KeyName: "TK.", Algorithm: "HMAC-SHA256."}, stmt)
}

func TestPointMessage(t *testing.T) {
	u := testUpdater(t, Config{KeyName: "tk"}, secret32)
	rrs, err := u.pointRecords("DB.Example.Test", addrs("2001:db8::2", "10.0.0.2", "::ffff:10.0.0.2", "10.0.0.3"))
	if err != nil {
		t.Fatal(err)
	}
	m := pointMessage(u.zone, rrs)
	if m.Opcode != dns.OpcodeUpdate || len(m.Question) != 1 || m.Question[0] != (dns.Question{Name: "example.test.", Qtype: dns.TypeSOA, Qclass: dns.ClassINET}) {
		t.Fatalf("header or zone section: %v", m)
	}
	if len(m.Answer) != 0 {
		t.Errorf("prerequisites: %v", m.Answer)
	}
	want := []string{
		"db.example.test.\t0\tCLASS255\tA\t", // class ANY: delete the RRset
		"db.example.test.\t0\tCLASS255\tAAAA\t",
		"db.example.test.\t5\tIN\tA\t10.0.0.2",
		"db.example.test.\t5\tIN\tA\t10.0.0.3",
		"db.example.test.\t5\tIN\tAAAA\t2001:db8::2",
	}
	checkSection(t, "update", m.Ns, want)
	// What goes on the wire parses back to the same.
	packed, err := u.sign(m).Pack()
	if err != nil {
		t.Fatal(err)
	}
	var back dns.Msg
	if err := back.Unpack(packed); err != nil {
		t.Fatal(err)
	}
	checkSection(t, "update after packing", back.Ns, want)
	if net := u.network(m); net != "udp" {
		t.Errorf("a small update goes over %s, want udp", net)
	}
}

func TestPointRefusesBadArguments(t *testing.T) {
	u := testUpdater(t, Config{KeyName: "tk"}, secret32)
	for _, c := range []struct {
		name  string
		addrs []netip.Addr
		want  string
	}{
		{"db.elsewhere.test", addrs("10.0.0.2"), "db.elsewhere.test is not in zone example.test"},
		{"example.test.evil", addrs("10.0.0.2"), "is not in zone example.test"},
		{"db..example.test", addrs("10.0.0.2"), `"db..example.test" is not a DNS name`},
		{"db.example.test", nil, "no address to point db.example.test at"},
		{"db.example.test", addrs("0.0.0.0"), "0.0.0.0 is not an address to point db.example.test at"},
		{"db.example.test", []netip.Addr{{}}, "invalid IP is not an address"},
	} {
		err := u.Point(context.Background(), c.name, c.addrs)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Point(%q, %v): got %v, want %q", c.name, c.addrs, err, c.want)
		}
	}
	if err := u.Remove(context.Background(), "db.example.test", netip.Addr{}); err == nil {
		t.Error("Remove of no address accepted")
	}
}

func TestRemoveMessage(t *testing.T) {
	m := removeMessage("example.test.", addrRecord("db.example.test.", netip.MustParseAddr("10.0.0.1"), 0))
	if m.Opcode != dns.OpcodeUpdate || m.Question[0].Name != "example.test." || len(m.Answer) != 0 {
		t.Fatalf("header, zone or prerequisites: %v", m)
	}
	checkSection(t, "update", m.Ns, []string{"db.example.test.\t0\tNONE\tA\t10.0.0.1"})
}

func TestCheckKeyMessage(t *testing.T) {
	probe, err := preflightName("example.test.")
	if err != nil {
		t.Fatal(err)
	}
	other, _ := preflightName("example.test.")
	if !strings.HasPrefix(probe, "_tandem-preflight-") || !dns.IsSubDomain("example.test.", probe) || probe == other {
		t.Fatalf("preflight names %q, %q", probe, other)
	}
	m := checkKeyMessage("example.test.", probe)
	if m.Opcode != dns.OpcodeUpdate || m.Question[0].Name != "example.test." {
		t.Fatalf("header or zone: %v", m)
	}
	// "Name is in use" (RFC 2136 2.4.4): class ANY, type ANY, no data.
	checkSection(t, "prerequisite", m.Answer, []string{probe + "\t0\tCLASS255\tANY\t"})
	if len(m.Ns) != 0 {
		t.Errorf("CheckKey would change the zone: %v", m.Ns)
	}
}

func TestSignedMessageVerifies(t *testing.T) {
	u := testUpdater(t, Config{KeyName: "tk", Algorithm: "hmac-sha512"}, secret32)
	m := checkKeyMessage(u.zone, "_x.example.test.")
	s := u.sign(m)
	if m.IsTsig() != nil {
		t.Error("sign changed the message it was given")
	}
	tsig := s.IsTsig()
	if tsig == nil || tsig.Hdr.Name != "tk." || tsig.Algorithm != dns.HmacSHA512 || tsig.Fudge != 300 || tsig.OrigId != s.Id {
		t.Fatalf("TSIG record %v", tsig)
	}
	wire, _, err := dns.TsigGenerateWithProvider(s, u.key, "", false)
	if err != nil {
		t.Fatal(err)
	}
	// Verifying rewrites the buffer it is given: each gets a copy.
	verify := func(p dns.TsigProvider) error {
		return dns.TsigVerifyWithProvider(append([]byte(nil), wire...), p, "", false)
	}
	if err := verify(u.key); err != nil {
		t.Errorf("own signature does not verify: %v", err)
	}
	// A server may write the key's name in its own case.
	if err := verify(signer{name: "TK.", secret: u.key.secret}); err != nil {
		t.Errorf("the key's name in upper case: %v", err)
	}
	if err := verify(signer{name: "tk.", secret: []byte("another secret")}); !errors.Is(err, dns.ErrSig) {
		t.Errorf("another secret: got %v, want ErrSig", err)
	}
}

func TestAnswerFollowsCNAME(t *testing.T) {
	rrs := []dns.RR{
		mustRR(t, "db.example.test. 30 IN CNAME node-a.example.test."),
		mustRR(t, "node-a.example.test. 5 IN A 10.0.0.1"),
		mustRR(t, "stray.example.test. 1 IN A 10.9.9.9"),
	}
	var a Answer
	a.add("db.example.test.", rrs)
	a.add("db.example.test.", []dns.RR{mustRR(t, "db.example.test. 10 IN AAAA 2001:db8::1")})
	if len(a.Addrs) != 2 || a.Addrs[0] != netip.MustParseAddr("10.0.0.1") || a.Addrs[1] != netip.MustParseAddr("2001:db8::1") || a.TTL != 5*time.Second {
		t.Errorf("got %v TTL %s", a.Addrs, a.TTL)
	}
}

// A server that reads the update and never answers: the error names it
// and the time waited.
func TestTimeoutNamesServer(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	u := testUpdater(t, Config{KeyName: "tk", Server: pc.LocalAddr().String(), Timeout: 200 * time.Millisecond}, secret32)
	err = u.Point(context.Background(), "db.example.test", addrs("10.0.0.2"))
	want := "while pointing db.example.test at 10.0.0.2: no answer from " + pc.LocalAddr().String() + " within 200ms"
	if !errors.Is(err, ErrNoAnswer) || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}

	// Cancelling ends the wait at once, not at the timeout.
	u.timeout = 10 * time.Second
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	err = u.CheckKey(ctx)
	if !errors.Is(err, context.Canceled) || !errors.Is(err, ErrNoAnswer) || time.Since(start) > 2*time.Second {
		t.Errorf("after %s: %v", time.Since(start), err)
	}
}

func addrs(s ...string) []netip.Addr {
	out := make([]netip.Addr, len(s))
	for i, a := range s {
		out[i] = netip.MustParseAddr(a)
	}
	return out
}

func checkSection(t *testing.T, what string, rrs []dns.RR, want []string) {
	t.Helper()
	if len(rrs) != len(want) {
		t.Fatalf("%s section: %v, want %q", what, rrs, want)
	}
	for i, rr := range rrs {
		if got := rr.String(); got != want[i] {
			t.Errorf("%s section record %d: %q, want %q", what, i, got, want[i])
		}
	}
}

func mustRR(t *testing.T, s string) dns.RR {
	t.Helper()
	rr, err := dns.NewRR(s)
	if err != nil {
		t.Fatal(err)
	}
	return rr
}

func TestPrintingShowsNoSecret(t *testing.T) {
	u := testUpdater(t, Config{KeyName: "tk"}, secret32)
	k, err := ReadKeyFile(writeKeyFile(t, `key "tk" { algorithm hmac-sha256; secret "`+secret32+`"; };`, 0o600))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{fmt.Sprint(u), fmt.Sprintf("%v %+v", u, k), fmt.Sprint(k)} {
		if strings.Contains(s, secret32[:8]) || strings.Contains(s, fmt.Sprint(k.Secret[:4])[1:8]) {
			t.Errorf("%s shows the secret", s)
		}
	}
	if got := fmt.Sprint(u); got != "updates to example.test at 192.0.2.53:53 with TSIG key tk (hmac-sha256)" {
		t.Errorf("got %q", got)
	}
}
