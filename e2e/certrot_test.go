//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandem-ha/tandem/internal/api"
	"github.com/tandem-ha/tandem/internal/state"
)

// pinnedPeer is what node's state file pins for its peer.
func (l *testLab) pinnedPeer(node string) state.Peer {
	l.t.Helper()
	s, ok, err := state.Load(filepath.Join(l.nodeDir(node), "state"))
	if err != nil || !ok || s.Cluster == nil || s.Cluster.Peer == nil {
		l.t.Fatalf("state of %s: ok=%v err=%v", node, ok, err)
	}
	return *s.Cluster.Peer
}

// nodeCert is the key pair node serves now, read from its state dir.
func (l *testLab) nodeCert(node string) tls.Certificate {
	l.t.Helper()
	dir := filepath.Join(l.nodeDir(node), "state")
	c, err := tls.LoadX509KeyPair(filepath.Join(dir, "node.crt"), filepath.Join(dir, "node.key"))
	if err != nil {
		l.t.Fatal(err)
	}
	return c
}

// peerHeartbeatAs calls node's peer route /v1/peer/heartbeat from the
// client host presenting cert, as the peer node would.
func (l *testLab) peerHeartbeatAs(node string, cert tls.Certificate) error {
	c := api.NewClient(api.ClientConfig{
		Addr:        net.JoinHostPort(l.env.nodeIP(node), "7400"),
		Fingerprint: l.fingerprint(node),
		Cert:        &cert,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := inNetns(l.netnsOf("client"), func() error {
				var d net.Dialer
				var err error
				c, err = d.DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
	})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := c.Heartbeat(ctx)
	return err
}

// TestRotateCertUnderWrites rotates the primary's certificate on a running
// cluster under a writer through the cluster IP: no write gap, PostgreSQL
// not restarted, the peer and the console pin the new certificate, the
// old one is refused by the peer, replication and heartbeats carry on, and
// a switchover afterwards works. Bad input first changes nothing.
func TestRotateCertUnderWrites(t *testing.T) {
	needRoot(t)
	c := upCluster(t, clusterOpts{mode: "sync", synchronized: true})
	oldA, oldB := c.fingerprint("a"), c.fingerprint("b")
	oldCert := c.nodeCert("a")
	cachePath := filepath.Join(c.cache, "cache.json")
	tokensPath := filepath.Join(c.cache, "tokens.json")
	cacheBefore, err := os.ReadFile(cachePath)
	if err != nil {
		t.Fatal(err)
	}
	unchanged := func(what string) {
		t.Helper()
		if fa, fb := c.fingerprint("a"), c.fingerprint("b"); fa != oldA || fb != oldB {
			t.Errorf("%s: the certificates changed (a %s, b %s)", what, fa, fb)
		}
		for _, f := range []string{"node.next.crt", "node.next.key"} {
			if _, err := os.Stat(filepath.Join(c.nodeDir("a"), "state", f)); err == nil {
				t.Errorf("%s: a has %s", what, f)
			}
		}
		if p := c.pinnedPeer("b"); p.Fingerprint != oldA || p.NextFingerprint != "" {
			t.Errorf("%s: b pins %+v for a", what, p)
		}
		if now, _ := os.ReadFile(cachePath); !bytes.Equal(now, cacheBefore) {
			t.Errorf("%s: the console's cache changed:\n%s", what, now)
		}
	}

	// An unknown node: refused, nothing sent.
	_, errOut, code := c.console("rotate-cert", "c", "--yes")
	if code != 2 || !strings.Contains(errOut, `no node "c"`) {
		t.Errorf("rotate-cert c: exit %d: %s", code, errOut)
	}
	unchanged("after rotate-cert of an unknown node")
	// A wrong admin token for a in the console's token file: refused.
	toksBefore, err := os.ReadFile(tokensPath)
	if err != nil {
		t.Fatal(err)
	}
	var toks struct {
		Tokens map[string]string `json:"tokens"`
	}
	if err := json.Unmarshal(toksBefore, &toks); err != nil {
		t.Fatal(err)
	}
	for addr, tok := range toks.Tokens {
		if tok == c.env.token("a") {
			toks.Tokens[addr] = strings.Repeat("x", 43)
		}
	}
	bad, _ := json.Marshal(toks)
	if err := os.WriteFile(tokensPath, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, code = c.console("rotate-cert", "a", "--yes")
	if code != 4 || !strings.Contains(errOut, "token") {
		t.Errorf("rotate-cert with a wrong token: exit %d: %s", code, errOut)
	}
	if err := os.WriteFile(tokensPath, toksBefore, 0o600); err != nil {
		t.Fatal(err)
	}
	unchanged("after rotate-cert with a wrong token")
	// The node's own route with a wrong token: 401, nothing prepared.
	err = c.callWithToken("a", strings.Repeat("y", 43), http.MethodPost, "/v1/cert/prepare", nil, nil)
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized {
		t.Errorf("POST /v1/cert/prepare with a wrong token: %v, want 401", err)
	}
	unchanged("after POST /v1/cert/prepare with a wrong token")

	pidA, pidB := c.nodeInfo(c.env, "a").Postgres.PID, c.nodeInfo(c.env, "b").Postgres.PID
	w := c.startWitness()
	time.Sleep(time.Second)
	out := c.consoleOK(nil, time.Minute, "rotate-cert", "a", "--yes", "-o", "json")
	var res struct {
		Node        string `json:"node"`
		Old         string `json:"old_fingerprint"`
		New         string `json:"fingerprint"`
		PeerPinsNew bool   `json:"peer_pins_new"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("rotate-cert -o json: %v\n%s", err, out)
	}
	time.Sleep(2 * time.Second) // writes (and heartbeats) after the switch
	gap := w.stop(true)
	t.Logf("rotate-cert: %+v; longest write gap %s", res, gap)
	// A writer every few milliseconds through the cluster IP sees no
	// pause: nothing restarted. A second is far above any gap seen without
	// a fault and far below a restart of PostgreSQL.
	if gap > time.Second {
		t.Errorf("a write gap of %s during the rotation", gap)
	}
	newA := c.fingerprint("a")
	if res.Node != "a" || res.Old != oldA || res.New != newA || newA == oldA || !res.PeerPinsNew {
		t.Fatalf("rotate-cert answered %+v; a's node.crt is now %s (was %s)", res, newA, oldA)
	}
	if c.fingerprint("b") != oldB {
		t.Error("b's certificate changed")
	}
	if p := c.pinnedPeer("b"); p.Fingerprint != newA || p.NextFingerprint != "" {
		t.Errorf("b pins %+v for a, want only the new %s", p, newA)
	}
	if pa, pb := c.nodeInfo(c.env, "a").Postgres.PID, c.nodeInfo(c.env, "b").Postgres.PID; pa != pidA || pb != pidB {
		t.Errorf("PostgreSQL restarted: postmaster pids a %d → %d, b %d → %d", pidA, pa, pidB, pb)
	}
	// The console's cache pins the new certificate wherever it pinned the
	// old one, and status works from it.
	var cache struct {
		Pins     map[string]string `json:"pins"`
		Rotating map[string]string `json:"rotating"`
	}
	cb, _ := os.ReadFile(cachePath)
	if err := json.Unmarshal(cb, &cache); err != nil {
		t.Fatal(err)
	}
	for addr, fp := range cache.Pins {
		if fp == oldA {
			t.Errorf("the cache still pins the old certificate at %s", addr)
		}
	}
	if len(cache.Rotating) != 0 {
		t.Errorf("the cache still has a rotation pending: %v", cache.Rotating)
	}
	st := c.waitStatus("both nodes answer the console, b streams, synchronized", 30*time.Second, func(s labStatus) bool {
		return s.Cluster != nil && s.Cluster.Synchronized && s.streaming() && len(s.Nodes) == 2
	})
	t.Logf("status after the rotation: %s", st)
	// Heartbeats both ways: each node heard from its peer within seconds.
	for _, n := range []string{"a", "b"} {
		v := c.view(c.env, n)
		if v.PeerContact == nil || v.PeerContact.SilentSeconds < 0 || v.PeerContact.SilentSeconds > 3 {
			t.Errorf("%s's peer contact after the rotation: %+v", n, v.PeerContact)
		}
	}
	// The record names the new certificate.
	if rec := c.view(c.env, "a").Record; rec == nil || !hasMember(rec.Members, "a", newA) {
		t.Errorf("the record's members after the rotation: %+v", rec)
	}
	// The peer refuses the old certificate and admits the new one.
	if err := c.peerHeartbeatAs("b", oldCert); !errors.As(err, &ae) || ae.Status != http.StatusForbidden {
		t.Errorf("b's peer route with a's old certificate: %v, want 403", err)
	}
	if err := c.peerHeartbeatAs("b", c.nodeCert("a")); err != nil {
		t.Errorf("b's peer route with a's new certificate: %v", err)
	}
	if ev, _, _ := c.console("events"); !strings.Contains(ev, "certificate_rotated") {
		t.Errorf("no certificate_rotated event:\n%s", ev)
	}

	// A switchover afterwards works both ways round.
	for _, to := range []string{"b", "a"} {
		if out, errOut, code := c.console("switchover", "--yes"); code != 0 {
			t.Fatalf("switchover to %s after the rotation: exit %d\n%s\n%s", to, code, out, errOut)
		}
		c.waitStatus("roles after the switchover to "+to, 30*time.Second, func(s labStatus) bool {
			r := s.roles()
			return r[to] == "primary" && r[other(to)] == "secondary" && s.streaming()
		})
	}
}

func hasMember(ms []api.Member, name, fp string) bool {
	for _, m := range ms {
		if m.Name == name {
			return m.Fingerprint == fp
		}
	}
	return false
}

// callWithToken is call with the token given.
func (l *testLab) callWithToken(node, token, method, path string, in, out any) error {
	e := l.env
	c := api.NewClient(api.ClientConfig{
		Addr:        net.JoinHostPort(e.nodeIP(node), "7400"),
		Token:       token,
		Fingerprint: l.fingerprint(node),
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := inNetns(l.netnsOf("client"), func() error {
				var d net.Dialer
				var err error
				c, err = d.DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
	})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c.Do(ctx, method, path, in, out)
}

// TestRotateCertCrash kills a's tandemd in the middle of its switch (the
// new key in force, node.crt still the old certificate): restarted, a
// completes the switch, its peer and the console reach it, the peer pins
// the new certificate alone, and replication carries on.
func TestRotateCertCrash(t *testing.T) {
	needRoot(t)
	c := upCluster(t, clusterOpts{mode: "sync", synchronized: true, env: map[string][]string{"a": {"TANDEMD_CRASH_AT=rotate-cert:key-switched"}}})
	oldA := c.fingerprint("a")
	pid := c.tandemdPid("a")
	_, errOut, code := c.console("rotate-cert", "a", "--yes")
	if code == 0 {
		t.Fatalf("rotate-cert succeeded although a was to crash in the switch")
	}
	t.Logf("rotate-cert with a crashing: exit %d: %s", code, lastLine(errOut))
	eventually(t, "a's tandemd to exit at the crash point", 20*time.Second, func() (bool, string) {
		return !pidLive(pid), "still running"
	})
	next := c.pinnedPeer("b").NextFingerprint
	if next == "" {
		t.Fatal("b learned no next certificate before a switched")
	}
	c.startTandemd("a")
	c.waitReady("a", 60*time.Second)
	if fp := c.fingerprint("a"); fp != next || fp == oldA {
		t.Fatalf("after the restart a presents %s, want the new %s (old %s)", fp, next, oldA)
	}
	// It was the start that completed the switch, not the crashed run.
	if logb, _ := os.ReadFile(filepath.Join(c.nodeDir("a"), "tandemd.log")); !strings.Contains(string(logb), "completed an interrupted certificate switch") {
		t.Error("a's log does not say that its start completed an interrupted switch")
	}
	eventually(t, "b to pin a's new certificate alone", 20*time.Second, func() (bool, string) {
		p := c.pinnedPeer("b")
		return p.Fingerprint == next && p.NextFingerprint == "", "b pins " + p.Fingerprint + " next " + p.NextFingerprint
	})
	c.waitStatus("the console reaches both, b streams", 60*time.Second, func(s labStatus) bool {
		return s.Cluster != nil && s.Cluster.Synchronized && s.streaming()
	})
	// The console, which pinned both before the switch, now pins the new
	// certificate alone.
	cb, _ := os.ReadFile(filepath.Join(c.cache, "cache.json"))
	if strings.Contains(string(cb), oldA) || !strings.Contains(string(cb), next) {
		t.Errorf("the console's cache after the crashed rotation:\n%s", cb)
	}
	if out, errOut, code := c.console("switchover", "--yes"); code != 0 {
		t.Fatalf("switchover after the crashed rotation: exit %d\n%s\n%s", code, out, errOut)
	}
}
