package console

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tandem-ha/tandem/internal/api"
)

// on is f's address with another host, same port: another spelling of it.
func on(f *fakeNode, host string) string {
	_, port, _ := net.SplitHostPort(f.addr)
	return net.JoinHostPort(host, port)
}

// assembledAs assembles a (named aName) and b, both with node IP
// 127.0.0.1, through the addresses given, then forgets the tokens'
// variables: from then on only tokens.json has them.
func assembledAs(t *testing.T, aName string, primary, secondary func(*fakeNode) string) (a, b *fakeNode) {
	t.Helper()
	a, b = twoNodes(t)
	for _, f := range []*fakeNode{a, b} {
		f.set(func(f *fakeNode) { f.info.IP = "127.0.0.1" })
	}
	a.set(func(f *fakeNode) {
		f.info.Name = aName
		f.assemble = api.AssembleResult{Record: api.Record{Name: "db.lab.test", Term: 1, Primary: aName}}
	})
	args := []string{"assemble", "--primary", primary(a), "--secondary", secondary(b),
		"--cluster-ip", "10.77.0.10/24", "--dns-name", "db.lab.test", "--trust-new", "--yes"}
	if code, stdout, stderr := runIn(t, "", args...); code != 0 {
		t.Fatalf("assemble: %d\n%s%s", code, stdout, stderr)
	}
	t.Setenv("TANDEM_PRIMARY_TOKEN", "")
	t.Setenv("TANDEM_SECONDARY_TOKEN", "")
	return a, b
}

func preflightArgs(primary, secondary string, extra ...string) []string {
	return append([]string{"preflight", "--primary", primary, "--secondary", secondary,
		"--cluster-ip", "10.77.0.10/24", "--dns-name", "db.lab.test"}, extra...)
}

// preflighted says whether f answered a preflight, which it does only
// with its own token.
func preflighted(f *fakeNode) bool {
	for _, p := range f.posts() {
		if p.Path == "/v1/preflight" {
			return true
		}
	}
	return false
}

func TestPreflightByIPFindsTokensKeptUnderNames(t *testing.T) {
	byName := func(f *fakeNode) string { return on(f, "localhost") }
	byIP := func(f *fakeNode) string { return on(f, "127.0.0.1") }
	a, b := assembledAs(t, "a", byName, byName)

	// No --trust-new: each node is known by the certificate pinned under
	// its name at assembly.
	code, stdout, stderr := runIn(t, "", preflightArgs(byIP(a), byIP(b))...)
	if code != 0 || !preflighted(a) || !preflighted(b) {
		t.Fatalf("preflight by IP after assembly by name: %d\n%s%s", code, stdout, stderr)
	}
	c, _ := LoadCache()
	if c.Pins[byIP(a)] != a.fp || c.Pins[byIP(b)] != b.fp {
		t.Errorf("the IP spellings are not pinned with the nodes' certificates: %v", c.Pins)
	}
}

func TestPreflightByNameFindsTokensKeptUnderIPs(t *testing.T) {
	byIP := func(f *fakeNode) string { return on(f, "127.0.0.1") }
	// A node named as the host it runs on: the name is its other spelling.
	a, b := assembledAs(t, "localhost", byIP, byIP)
	code, stdout, stderr := runIn(t, "", preflightArgs(on(a, "localhost"), byIP(b))...)
	if code != 0 || !preflighted(a) || !preflighted(b) {
		t.Fatalf("preflight by name after assembly by IP: %d\n%s%s", code, stdout, stderr)
	}
}

func TestKeptTokenGoesOnlyToItsNodesCertificate(t *testing.T) {
	byName := func(f *fakeNode) string { return on(f, "localhost") }
	a, b := assembledAs(t, "a", byName, byName)
	// As if another machine now answered on a's IP: the pin under a's name
	// is not the certificate found there.
	c, _ := LoadCache()
	c.Pins[byName(a)] = b.fp
	if err := c.Save(); err != nil {
		t.Fatal(err)
	}
	before := a.requestCount()
	for _, extra := range [][]string{nil, {"--trust-new"}} {
		code, stdout, stderr := runIn(t, "", preflightArgs(on(a, "127.0.0.1"), on(b, "127.0.0.1"), extra...)...)
		if code != ExitRefused || !strings.Contains(stderr, "kept this node's token under "+byName(a)) {
			t.Errorf("%v: %d, want %d naming where the token was kept\n%s%s", extra, code, ExitRefused, stdout, stderr)
		}
	}
	if n := a.requestCount(); n != before {
		t.Fatalf("a's token was sent to a certificate other than its own: %d requests", n-before)
	}
	// Its own token and --trust-new, as before: the operator vouches.
	t.Setenv("TANDEM_PRIMARY_TOKEN", a.token)
	if code, stdout, stderr := runIn(t, "", preflightArgs(on(a, "127.0.0.1"), on(b, "127.0.0.1"), "--trust-new")...); code != 0 {
		t.Fatalf("with the token given: %d\n%s%s", code, stdout, stderr)
	}
}

func TestTokenLookup(t *testing.T) {
	now := time.Now()
	c := &Cache{
		Pins: map[string]string{
			"a.lab.test:7400":    "sha256:a",
			"b.lab.test:7400":    "sha256:b",
			"[fd00:77::11]:7400": "sha256:a6",
			"10.0.0.9:7400":      "sha256:stranger",
			"old-a:7400":         "sha256:olda",
		},
		Clusters: map[string]CachedCluster{
			"db.lab.test": {UpdatedAt: now, Nodes: []CachedNode{
				{Name: "a", IP: "10.77.0.11", Address: "a.lab.test:7400"},
				{Name: "b", IP: "10.77.0.12", Address: "b.lab.test:7400"},
				{Name: "c", IP: "10.77.0.13", Address: "c.lab.test:7400"}, // no pin
				{Name: "x", IP: "10.0.0.9", Address: "x.lab.test:7400"},   // pinned, no token
			}},
			"v6": {UpdatedAt: now, Nodes: []CachedNode{
				{Name: "a6", IP: "fd00:77::11", Address: "[fd00:77::11]:7400"},
			}},
			// An older cluster that had another node at a's IP.
			"old": {UpdatedAt: now.Add(-time.Hour), Nodes: []CachedNode{
				{Name: "old-a", IP: "10.77.0.11", Address: "old-a:7400"},
			}},
		},
	}
	toks := &Tokens{ByAddress: map[string]string{
		"a.lab.test:7400":    "tok-a",
		"b.lab.test:7400":    "tok-b",
		"c.lab.test:7400":    "tok-c",
		"[fd00:77::11]:7400": "tok-a6",
		"old-a:7400":         "tok-old-a",
		"10.77.0.99:7400":    "tok-exact",
	}}
	for addr, want := range map[string]keptToken{
		"10.77.0.99:7400":          {token: "tok-exact"},
		"a.lab.test:7400":          {token: "tok-a"},
		"10.77.0.11:7400":          {token: "tok-a", under: "a.lab.test:7400", pin: "sha256:a"},
		"[::ffff:10.77.0.12]:7400": {token: "tok-b", under: "b.lab.test:7400", pin: "sha256:b"},
		"A:7400":                   {token: "tok-a", under: "a.lab.test:7400", pin: "sha256:a"},
		"A.Lab.Test.:7400":         {token: "tok-a", under: "a.lab.test:7400", pin: "sha256:a"},
		"[fd00:77:0::11]:7400":     {token: "tok-a6", under: "[fd00:77::11]:7400", pin: "sha256:a6"},
		"10.77.0.11:7401":          {}, // another port: another service
		"10.77.0.13:7400":          {}, // c's token was never bound to a certificate
		"10.0.0.9:7400":            {}, // x has no token
		"10.77.0.14:7400":          {},
		"nonsense":                 {},
	} {
		if got := toks.lookup(c, addr); got != want {
			t.Errorf("%s: got %+v, want %+v", addr, got, want)
		}
	}
	// An address already pinned to another certificate than the node's is
	// not that node.
	c.Pins["10.77.0.11:7400"] = "sha256:stranger"
	if got := toks.lookup(c, "10.77.0.11:7400"); got.token == "tok-a" {
		t.Errorf("a's token offered to an address pinned to another certificate: %+v", got)
	}
	if got := toks.lookup(nil, "10.77.0.11:7400"); got != (keptToken{}) {
		t.Errorf("no cache: %+v", got)
	}
}
