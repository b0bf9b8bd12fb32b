package console

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tandem-ha/tandem/internal/api"
)

// primaryGone makes a of assembled(t) a powered-off primary: its API
// refuses connections, and its node IP and the cluster IP are addresses
// no host answers (TEST-NET-1, rather than the lab subnet a lab on this
// machine might serve). b still says it is the secondary and last heard
// from a 4 s ago.
func primaryGone(t *testing.T, a, b *fakeNode) {
	t.Helper()
	a.stop()
	setClusterIP(t, "192.0.2.10/24")
	c, err := LoadCache()
	if err != nil {
		t.Fatal(err)
	}
	c.Clusters["db"].Nodes[0].IP = "192.0.2.11"
	if err := c.Save(); err != nil {
		t.Fatal(err)
	}
	b.set(func(f *fakeNode) {
		f.peer.PGPort = closedPort(t)
		f.contact = &api.PeerContact{LastHeard: "2025-03-01T11:00:00Z", SilentSeconds: 4, Synchronized: true}
		f.failover = api.FailoverResult{Primary: "b", Term: 3, Took: "170ms"}
	})
}

func setClusterIP(t *testing.T, p string) {
	t.Helper()
	c, err := LoadCache()
	if err != nil {
		t.Fatal(err)
	}
	cc := c.Clusters["db"]
	cc.ClusterIP = p
	c.Clusters["db"] = cc
	if err := c.Save(); err != nil {
		t.Fatal(err)
	}
}

// closedPort is a loopback port nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}

// silentListener accepts TCP connections on addr and never says a word:
// a process that is frozen, or a port the kernel still accepts for.
func silentListener(t *testing.T, addr string) int {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

func TestFailoverWhenThePrimaryIsSilentOnEveryPath(t *testing.T) {
	a, b := assembled(t)
	primaryGone(t, a, b)
	code, stdout, stderr := runIn(t, "", "failover", "--yes", "-o", "json")
	if code != 0 {
		t.Fatalf("failover with the primary gone: exit %d\n%s\n%s", code, stdout, stderr)
	}
	out := decode[FailoverOutput](t, stdout)
	var looked []string
	for _, p := range out.Paths {
		looked = append(looked, p.Path)
		if p.Reachable {
			t.Errorf("path %s counted as answering: %+v", p.Path, p)
		}
	}
	if want := "node API,PostgreSQL on the node IP,node API on the cluster IP,PostgreSQL on the cluster IP," + heartbeatPath; strings.Join(looked, ",") != want {
		t.Errorf("paths looked at: %v, want %s", looked, want)
	}
	if posts := b.posts(); len(posts) != 1 || posts[0].Path != "/v1/cluster/failover" {
		t.Fatalf("the secondary got %v, want one failover", posts)
	}
	if !strings.Contains(stderr, "b last heard from the primary 4s ago") {
		t.Errorf("the secondary's view of the primary is not shown:\n%s", stderr)
	}
	// The cache has the new primary without the old one being asked.
	c, _ := LoadCache()
	if cc := c.Clusters["db"]; cc.Primary != "b" || cc.Term != 3 || cc.Nodes[1].Role != rolePrimary {
		t.Errorf("cache after the failover: %+v", cc)
	}
}

func TestFailoverRefusedWhilePrimaryAnswersAsPrimary(t *testing.T) {
	_, b := assembled(t)
	code, _, stderr := runIn(t, "", "failover", "--yes")
	if code != ExitConflict || !strings.Contains(stderr, "a answers as primary (term 2)") {
		t.Fatalf("exit %d, want %d naming a as primary:\n%s", code, ExitConflict, stderr)
	}
	if posts := b.posts(); len(posts) != 0 {
		t.Fatalf("a refused failover sent %v", posts)
	}
}

// A primary whose node API accepts connections but no longer completes a
// TLS handshake (tandemd frozen), or whose PostgreSQL port answers on the
// cluster IP only, is alive: the failover is refused, naming the path.
func TestFailoverRefusedWhenOnePathAnswers(t *testing.T) {
	for _, tc := range []struct {
		name, path string
		set        func(t *testing.T, a, b *fakeNode)
	}{
		{"frozen node API", "node API (", func(t *testing.T, a, _ *fakeNode) {
			silentListener(t, a.addr)
		}},
		{"PostgreSQL on the cluster IP", "PostgreSQL on the cluster IP (127.0.0.1:", func(t *testing.T, _, b *fakeNode) {
			setClusterIP(t, "127.0.0.1/8")
			port := silentListener(t, "127.0.0.1:0")
			b.set(func(f *fakeNode) { f.peer.PGPort = port })
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := assembled(t)
			primaryGone(t, a, b)
			tc.set(t, a, b)
			code, _, stderr := runIn(t, "", "failover", "--yes")
			if code != ExitConflict || !strings.Contains(stderr, "still answers by") || !strings.Contains(stderr, tc.path) {
				t.Fatalf("exit %d, want %d naming %q:\n%s", code, ExitConflict, tc.path, stderr)
			}
			if posts := b.posts(); len(posts) != 0 {
				t.Fatalf("a refused failover sent %v", posts)
			}
		})
	}
}

// The secondary's own refusal (the primary answered it on the link
// between the nodes) reaches the operator with its path and exit 5.
func TestFailoverRefusedByTheSecondary(t *testing.T) {
	a, b := assembled(t)
	primaryGone(t, a, b)
	b.set(func(f *fakeNode) {
		f.failWith["/v1/cluster/failover"] = api.Errorf(409, api.CodeConflict, "the primary a answers b on the link between the nodes (role primary, term 2, PostgreSQL running): failover refused")
	})
	code, _, stderr := runIn(t, "", "failover", "--yes")
	if code != ExitConflict || !strings.Contains(stderr, "on the link between the nodes") {
		t.Fatalf("exit %d, want %d with the secondary's reason:\n%s", code, ExitConflict, stderr)
	}
}

func TestDialRepeatedlyFindsALateListener(t *testing.T) {
	// Nothing listens at first; a listener that comes up within the wait
	// is found by a later attempt.
	port := closedPort(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	ctx, cancel := context.WithTimeout(context.Background(), 10*pathRedial)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		conn, err := dialRepeatedly(ctx, addr)
		if err == nil {
			conn.Close()
		}
		done <- err
	}()
	time.Sleep(2 * pathRedial)
	silentListener(t, addr)
	if err := <-done; err != nil {
		t.Fatalf("a listener up within the wait was not found: %v", err)
	}
}
