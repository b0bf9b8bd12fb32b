//go:build e2e

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSwitchoverBackAndForth: four switchovers under a steady writer
// through the cluster IP; nothing acknowledged is lost, never two writers,
// never two cluster-IP holders.
func TestSwitchoverBackAndForth(t *testing.T) {
	needRoot(t)
	c := assembledLab(t, "sync", nil)
	w := c.startWitness()
	want := []string{"b", "a", "b", "a"}
	for i, to := range want {
		out, errOut, err := c.console("switchover", "--yes")
		if err != nil {
			t.Fatalf("switchover %d: %v\n%s\n%s", i+1, err, out, errOut)
		}
		// The writer keeps the client's neighbour entry for the cluster IP
		// fresh; the announcements must move it to the new holder at once.
		moved := time.Now()
		for time.Since(moved) < time.Second && c.clientNeighbour() != c.mac(to) {
			time.Sleep(20 * time.Millisecond)
		}
		if got := c.clientNeighbour(); got != c.mac(to) {
			t.Errorf("switchover %d: a second after the move the client's neighbour entry is %q, not %s's MAC %s", i+1, got, to, c.mac(to))
		}
		t.Logf("switchover %d: %s", i+1, firstLine(out))
		c.waitFor("roles after switchover to "+to, 30*time.Second, func() bool {
			r := c.roles()
			return r[to] == "primary" && r[other(to)] == "secondary"
		})
		c.waitFor("the cluster synchronized again", 30*time.Second, func() bool {
			s := c.status()
			return s.Cluster != nil && s.Cluster.Synchronized && s.Cluster.Term == int64(i+2)
		})
		if !c.holdsClusterIP(to) || c.holdsClusterIP(other(to)) {
			t.Fatalf("after switchover to %s the cluster IP is on the wrong node", to)
		}

		time.Sleep(300 * time.Millisecond) // let some writes land in each term
	}
	gap := w.stop(true)
	t.Logf("longest write gap over 4 switchovers: %s", gap)
	ev, _, _ := c.console("events")
	for _, k := range []string{"switchover_started", "switchover_finished"} {
		if strings.Count(ev, k) < 4 {
			t.Errorf("events list %d %s, want 4:\n%s", strings.Count(ev, k), k, ev)
		}
	}
}

// TestSwitchoverRefusedWhenSecondaryAway: nothing changes when the
// secondary does not stream.
func TestSwitchoverRefusedWhenSecondaryAway(t *testing.T) {
	needRoot(t)
	c := assembledLab(t, "async", nil)
	c.stopTandemd("b", syscall.SIGTERM)
	out, errOut, err := c.console("switchover", "--yes")
	if err == nil {
		t.Fatalf("switchover with the secondary away succeeded:\n%s", out)
	}
	if code := exitCode(err); code != 3 && code != 5 {
		t.Errorf("exit %d, want 3 or 5: %s", code, errOut)
	}
	if r := c.nodeRole("a"); r != "primary" || !c.holdsClusterIP("a") {
		t.Fatalf("a is %s (cluster IP held %v) after a refused switchover", r, c.holdsClusterIP("a"))
	}
	if _, err := c.psql(c.e.DNSName, "CREATE TABLE still_writable (x int)"); err != nil {
		t.Fatalf("a no longer accepts writes after a refused switchover: %v", err)
	}
}

// TestFailoverAfterPowerOff: the primary loses power; the console's
// failover makes the secondary primary; no acknowledged write is lost;
// the old primary, powered on, rejoins as standby by itself (rewind).
func TestFailoverAfterPowerOff(t *testing.T) {
	needRoot(t)
	c := assembledLab(t, "sync", nil)
	w := c.startWitness()
	time.Sleep(500 * time.Millisecond)
	c.powerOff("a")
	// The secondary learns the primary is silent within a few seconds.
	time.Sleep(3 * time.Second)
	start := time.Now()
	out, errOut, err := c.console("failover", "--yes")
	if err != nil {
		t.Fatalf("failover: %v\n%s\n%s", err, out, errOut)
	}
	t.Logf("failover (checks included) took %s: %s", time.Since(start).Round(time.Millisecond), firstLine(out))
	c.waitFor("writes through the cluster IP on b", 20*time.Second, func() bool {
		_, err := c.psql(c.e.DNSName, "SELECT 1 WHERE NOT pg_is_in_recovery()")
		return err == nil && c.holdsClusterIP("b")
	})
	time.Sleep(time.Second)
	c.powerOn("a", nil)
	c.waitFor("a rejoined as secondary and streams", 90*time.Second, func() bool {
		r := c.roles()
		s := c.status()
		return r["a"] == "secondary" && r["b"] == "primary" && s.Cluster != nil && s.Cluster.Synchronized
	})
	w.stop(true)
	ev, _, _ := c.console("events")
	for _, k := range []string{"failover_finished", "fenced", "rejoined"} {
		if !strings.Contains(ev, k) {
			t.Errorf("events lack %s:\n%s", k, ev)
		}
	}
	if !strings.Contains(ev, "by rewind") {
		t.Errorf("the old primary did not rejoin by rewind:\n%s", ev)
	}
}

// TestFailoverRefused: while the primary runs, while only its PostgreSQL
// is down, and while only its cluster IP path is cut, the console refuses
// and nothing changes.
func TestFailoverRefused(t *testing.T) {
	needRoot(t)
	c := assembledLab(t, "sync", nil)
	refuse := func(why string) {
		t.Helper()
		out, errOut, err := c.console("failover", "--yes")
		if err == nil || exitCode(err) != 5 {
			t.Fatalf("%s: failover not refused (err %v):\n%s\n%s", why, err, out, errOut)
		}
		if r := c.roles(); r["b"] != "secondary" {
			t.Fatalf("%s: b became %s", why, r["b"])
		}
		t.Logf("%s: refused: %s", why, strings.TrimSpace(errOut))
	}
	refuse("primary running")

	// Only PostgreSQL down: stop it under tandemd's feet by SIGSTOP of
	// the postmaster (tandemd would restart a killed one at once).
	pm := postmasterPid(t, c, "a")
	_ = syscall.Kill(pm, syscall.SIGSTOP)
	refuse("primary's PostgreSQL stopped")
	_ = syscall.Kill(pm, syscall.SIGCONT)

	// Only the cluster IP path cut: the address removed by hand (the
	// reconcile loop puts it back within seconds).
	_ = runIP(c, "a", "addr", "del", c.e.ClusterIP+"/24", "dev", "eth0")
	refuse("cluster IP path cut")
}

// TestRejoinByClone: when pg_rewind cannot work, the old primary is
// cloned afresh, its old data moved aside until the clone streams.
func TestRejoinByClone(t *testing.T) {
	needRoot(t)
	c := assembledLab(t, "sync", nil)
	c.powerOff("a")
	time.Sleep(3 * time.Second)
	if out, errOut, err := c.console("failover", "--yes"); err != nil {
		t.Fatalf("failover: %v\n%s\n%s", err, out, errOut)
	}
	// Make rewind impossible: the control file is gone.
	if err := os.Remove(filepath.Join(c.nodeDir("a"), "pgdata", "global", "pg_control")); err != nil {
		t.Fatal(err)
	}
	c.powerOn("a", nil)
	c.waitFor("a rejoined by clone", 90*time.Second, func() bool {
		r := c.roles()
		s := c.status()
		return r["a"] == "secondary" && s.Cluster != nil && s.Cluster.Synchronized
	})
	ev, _, _ := c.console("events")
	if !strings.Contains(ev, "by clone") {
		t.Errorf("a did not rejoin by clone:\n%s", ev)
	}
	if m, _ := filepath.Glob(filepath.Join(c.nodeDir("a"), "pgdata.tandem-old-*")); len(m) != 0 {
		t.Errorf("the old data was not removed after the clone streamed: %v", m)
	}
}

// TestRestartedPrimaryWithoutPeer: a primary that restarts while its peer
// is gone does not open for writes nor take the cluster IP until the
// grace has passed and the cluster IP probe finds nobody; with
// self_elect: false it never does.
func TestRestartedPrimaryWithoutPeer(t *testing.T) {
	needRoot(t)
	grace := []string{"TANDEMD_REJOIN_PEER_GRACE=6s"}
	c := assembledLab(t, "async", map[string][]string{"a": grace})
	c.powerOff("b")
	c.stopTandemd("a", syscall.SIGTERM)
	if c.holdsClusterIP("a") {
		t.Fatal("tandemd stopping as primary left the cluster IP behind")
	}
	c.startTandemd("a", grace)
	start := time.Now()
	time.Sleep(3 * time.Second)
	if c.holdsClusterIP("a") {
		t.Fatal("a took the cluster IP before its peer answered or the grace passed")
	}
	if _, err := c.psql("a."+c.e.Domain, "SELECT 1"); err == nil {
		t.Fatal("a opened PostgreSQL before its peer answered or the grace passed")
	}
	c.waitFor("a back as primary after the grace", 30*time.Second, func() bool { return c.holdsClusterIP("a") })
	if took := time.Since(start); took < 5*time.Second {
		t.Errorf("a took the cluster IP after %s, before the 6s grace", took)
	}
	if _, err := c.psql(c.e.DNSName, "CREATE TABLE after_grace (x int)"); err != nil {
		t.Fatalf("a does not accept writes after the grace: %v", err)
	}

	// Strict: never self-elect.
	c.restartTandemd("a", append(grace, "TANDEMD_REJOIN_SELF_ELECT=false"))
	time.Sleep(10 * time.Second)
	if c.holdsClusterIP("a") {
		t.Fatal("with self_elect: false, a took the cluster IP without hearing from its peer")
	}
	// The peer comes back: a carries on as primary.
	c.powerOn("b", nil)
	c.waitFor("a primary again once b answers", 60*time.Second, func() bool { return c.holdsClusterIP("a") && c.roles()["b"] == "secondary" })
}

// TestCrashAtEachStep kills tandemd at each journaled step of switchover
// and failover (TANDEMD_CRASH_AT), starts it again, and checks that the
// cluster ends with one primary, the other streaming, nothing lost.
func TestCrashAtEachStep(t *testing.T) {
	needRoot(t)
	cases := []struct {
		node, at, op string
	}{
		{"a", "switchover:demote", "switchover"},
		{"a", "switchover:promote-peer", "switchover"},
		{"a", "switchover:follow", "switchover"},
		{"b", "promote:promote", "switchover"},
		{"b", "promote:promote", "failover"},
		{"a", "rejoin:rewind", "failover"},
	}
	for _, tc := range cases {
		t.Run(strings.ReplaceAll(tc.node+"-"+tc.at+"-"+tc.op, ":", "-"), func(t *testing.T) {
			c := assembledLab(t, "sync", map[string][]string{tc.node: {"TANDEMD_CRASH_AT=" + tc.at}})
			w := c.startWitness()
			switch tc.op {
			case "switchover":
				out, errOut, err := c.console("switchover", "--yes")
				t.Logf("switchover with %s crashing at %s: err=%v\n%s%s", tc.node, tc.at, err, out, errOut)
			case "failover":
				c.powerOff("a")
				time.Sleep(3 * time.Second)
				out, errOut, err := c.console("failover", "--yes")
				t.Logf("failover with %s crashing at %s: err=%v\n%s%s", tc.node, tc.at, err, out, errOut)
				if tc.node == "a" {
					c.powerOn("a", []string{"TANDEMD_CRASH_AT=" + tc.at})
				}
			}
			// The crashed tandemd is started again, without the hook.
			c.waitFor("the crash hook to fire on "+tc.node, 30*time.Second, func() bool {
				return c.logHas(tc.node, "exiting abruptly for a crash test")
			})
			c.startTandemd(tc.node, nil)
			if tc.op == "failover" {
				if tc.node == "b" {
					c.waitFor("b back as secondary", 30*time.Second, func() bool { return c.nodeRole("b") == "secondary" })
					// The failover died with b; the operator runs it again.
					if out, errOut, err := c.console("failover", "--yes"); err != nil {
						t.Fatalf("second failover: %v\n%s\n%s", err, out, errOut)
					}
					c.powerOn("a", nil)
				}
			}
			c.waitFor("one primary, one streaming secondary, synchronized", 120*time.Second, func() bool {
				r := c.roles()
				s := c.status()
				primaries := 0
				for _, role := range r {
					if role == "primary" {
						primaries++
					}
				}
				return primaries == 1 && s.Cluster != nil && s.Cluster.Synchronized && !s.Cluster.Degraded
			})
			w.stop(true)
		})
	}
}

func (c *cluster) logHas(node, s string) bool {
	b, _ := os.ReadFile(filepath.Join(c.nodeDir(node), "tandemd.log"))
	return strings.Contains(string(b), s)
}

func postmasterPid(t *testing.T, c *cluster, node string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(c.nodeDir(node), "pgdata", "postmaster.pid"))
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	for _, f := range strings.SplitN(string(b), "\n", 2)[:1] {
		for _, ch := range f {
			pid = pid*10 + int(ch-'0')
		}
	}
	return pid
}

func runIP(c *cluster, node string, args ...string) error {
	_, _, err := c.execErr(node, nil, append([]string{"ip"}, args...)...)
	return err
}

func other(n string) string {
	if n == "a" {
		return "b"
	}
	return "a"
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// clientNeighbour is the MAC the client's neighbour table has for the
// cluster IP now ("" when it has none).
func (c *cluster) clientNeighbour() string {
	out, _ := exec.Command("ip", "-n", c.name+"-client", "neigh", "show", c.e.ClusterIP).Output()
	f := strings.Fields(string(out))
	for i := range f {
		if f[i] == "lladdr" && i+1 < len(f) {
			return strings.ToLower(f[i+1])
		}
	}
	return ""
}

func (c *cluster) mac(host string) string {
	for _, h := range c.e.Hosts {
		if h.Name == host {
			return strings.ToLower(h.MAC)
		}
	}
	return ""
}
