//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
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
	c := upCluster(t, clusterOpts{mode: "sync", synchronized: true})
	w := c.startWitness()
	want := []string{"b", "a", "b", "a"}
	for i, to := range want {
		out, errOut, code := c.console("switchover", "--yes")
		if code != 0 {
			t.Fatalf("switchover %d: exit %d\n%s\n%s", i+1, code, out, errOut)
		}
		// The writer keeps the client's neighbour entry for the cluster IP
		// fresh; the announcements must move it to the new holder at once.
		eventually(t, fmt.Sprintf("switchover %d: the client's neighbour entry for the cluster IP names %s's MAC %s within a second of the move", i+1, to, c.env.macOf(to)), time.Second, func() (bool, string) {
			mac, state := c.neighOf("client", c.env.ClusterIP)
			return mac == c.env.macOf(to), fmt.Sprintf("the entry names %q %v", mac, state)
		})
		t.Logf("switchover %d: %s", i+1, firstLine(out))
		c.waitStatus("roles after switchover to "+to, 30*time.Second, func(s labStatus) bool {
			r := s.roles()
			return r[to] == "primary" && r[other(to)] == "secondary"
		})
		c.waitStatus("the cluster synchronized again", 30*time.Second, func(s labStatus) bool {
			return s.Cluster != nil && s.Cluster.Synchronized && s.Cluster.Term == int64(i+2)
		})
		if !c.holdsClusterIP(to) || c.holdsClusterIP(other(to)) {
			t.Fatalf("after switchover to %s the cluster IP is on the wrong node: held by %v", to, c.clusterIPHolders())
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
	c := upCluster(t, clusterOpts{mode: "async", synchronized: true})
	c.stopTandemd("b")
	out, errOut, code := c.console("switchover", "--yes")
	if code == 0 {
		t.Fatalf("switchover with the secondary away succeeded:\n%s", out)
	}
	if code != 3 && code != 5 {
		t.Errorf("exit %d, want 3 or 5: %s", code, errOut)
	}
	if r := c.role("a"); r != "primary" || !c.holdsClusterIP("a") {
		t.Fatalf("a is %s (cluster IP held %v) after a refused switchover", r, c.holdsClusterIP("a"))
	}
	if _, err := c.sql(c.env.DNSName, "CREATE TABLE still_writable (x int)"); err != nil {
		t.Fatalf("a no longer accepts writes after a refused switchover: %v", err)
	}
}

// TestFailoverAfterPowerOff: the primary loses power; the console's
// failover, having found the primary silent on every path, makes the
// secondary primary; writes through the cluster IP resume; no
// acknowledged write is lost; the old primary, powered on, rejoins as
// standby by itself (rewind). The times from the typed command to its
// return and to the first acknowledged write are logged (the benchmark
// has their medians).
func TestFailoverAfterPowerOff(t *testing.T) {
	needRoot(t)
	c := upCluster(t, clusterOpts{mode: "sync", synchronized: true})
	w := c.startWitness()
	time.Sleep(500 * time.Millisecond)
	c.powerOff("a")
	// The secondary learns the primary is silent within a few seconds.
	time.Sleep(3 * time.Second)
	start := time.Now()
	out, errOut, code := c.console("failover", "--yes", "-o", "json")
	returned := time.Since(start)
	if code != 0 {
		t.Fatalf("failover: exit %d\n%s\n%s", code, out, errOut)
	}
	var fo struct {
		Paths []struct {
			Path      string `json:"path"`
			Reachable bool   `json:"reachable"`
			Detail    string `json:"detail"`
		} `json:"paths"`
		Result struct {
			Primary string `json:"primary"`
			Took    string `json:"took"`
			Steps   []struct {
				Name string  `json:"name"`
				MS   float64 `json:"ms"`
			} `json:"steps"`
		} `json:"result"`
	}
	if err := json.Unmarshal([]byte(out), &fo); err != nil {
		t.Fatalf("failover -o json: %v\n%s", err, out)
	}
	if fo.Result.Primary != "b" {
		t.Errorf("failover made %q primary, want b:\n%s", fo.Result.Primary, out)
	}
	// Every path the console knows was looked at, and none answered.
	var looked []string
	for _, p := range fo.Paths {
		looked = append(looked, p.Path)
		if p.Reachable {
			t.Errorf("the failover went ahead although %s answered: %s", p.Path, p.Detail)
		}
	}
	for _, want := range []string{"node API", "PostgreSQL on the node IP", "node API on the cluster IP", "PostgreSQL on the cluster IP", "heartbeat between the nodes"} {
		if !slices.Contains(looked, want) {
			t.Errorf("the failover did not look at the path %q (looked at %v)", want, looked)
		}
	}
	c.waitWrites("b", 20*time.Second)
	eventually(t, "an acknowledged write through the cluster IP after the failover", 20*time.Second, func() (bool, string) {
		return w.firstAckAfter(start) > 0, w.summary()
	})
	t.Logf("failover: typed command → command returned %s, → first acknowledged write through the cluster IP %s; on b it took %s, steps %+v\n%s",
		returned.Round(time.Millisecond), w.firstAckAfter(start).Round(time.Millisecond), fo.Result.Took, fo.Result.Steps, strings.TrimSpace(errOut))
	time.Sleep(time.Second)
	c.powerOn("a")
	c.waitStatus("a rejoined as secondary and streams", 90*time.Second, func(s labStatus) bool {
		r := s.roles()
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
	c := upCluster(t, clusterOpts{mode: "sync", synchronized: true})
	refuse := func(why string) {
		t.Helper()
		out, errOut, code := c.console("failover", "--yes")
		if code != 5 {
			t.Fatalf("%s: failover not refused (exit %d):\n%s\n%s", why, code, out, errOut)
		}
		if st := c.status(); st.roles()["b"] != "secondary" {
			t.Fatalf("%s: b became %s: %s", why, st.roles()["b"], st)
		}
		t.Logf("%s: refused: %s", why, strings.TrimSpace(errOut))
	}
	refuse("primary running")

	// Only PostgreSQL down: stop it under tandemd's feet by SIGSTOP of
	// the postmaster (tandemd would restart a killed one at once).
	pm := c.postmasterPid("a")
	_ = syscall.Kill(pm, syscall.SIGSTOP)
	refuse("primary's PostgreSQL stopped")
	_ = syscall.Kill(pm, syscall.SIGCONT)

	// Only the cluster IP path cut: the address removed by hand (the
	// reconcile loop puts it back within seconds).
	c.ipRun("a", "addr", "del", c.env.ClusterPrefix, "dev", "eth0")
	refuse("cluster IP path cut")
}

// TestRejoinByClone: when pg_rewind cannot work, the old primary is
// cloned afresh, its old data moved aside until the clone streams.
func TestRejoinByClone(t *testing.T) {
	needRoot(t)
	c := upCluster(t, clusterOpts{mode: "sync", synchronized: true})
	c.powerOff("a")
	time.Sleep(3 * time.Second)
	if out, errOut, code := c.console("failover", "--yes"); code != 0 {
		t.Fatalf("failover: exit %d\n%s\n%s", code, out, errOut)
	}
	// Make rewind impossible: the control file is gone.
	if err := os.Remove(filepath.Join(c.nodeDir("a"), "pgdata", "global", "pg_control")); err != nil {
		t.Fatal(err)
	}
	c.powerOn("a")
	c.waitStatus("a rejoined by clone", 90*time.Second, func(s labStatus) bool {
		return s.roles()["a"] == "secondary" && s.Cluster != nil && s.Cluster.Synchronized
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
	c := upCluster(t, clusterOpts{mode: "async", env: map[string][]string{"a": grace}, synchronized: true})
	c.powerOff("b")
	c.stopTandemd("a")
	if c.holdsClusterIP("a") {
		t.Fatal("tandemd stopping as primary left the cluster IP behind")
	}
	c.startTandemd("a", grace...)
	start := time.Now()
	time.Sleep(3 * time.Second)
	if c.holdsClusterIP("a") {
		t.Fatal("a took the cluster IP before its peer answered or the grace passed")
	}
	if _, err := c.sql(c.fqdn("a"), "SELECT 1"); err == nil {
		t.Fatal("a opened PostgreSQL before its peer answered or the grace passed")
	}
	eventually(t, "a back as primary after the grace", 30*time.Second, func() (bool, string) {
		return c.holdsClusterIP("a"), fmt.Sprintf("cluster IP held by %v", c.clusterIPHolders())
	})
	if took := time.Since(start); took < 5*time.Second {
		t.Errorf("a took the cluster IP after %s, before the 6s grace", took)
	}
	if _, err := c.sql(c.env.DNSName, "CREATE TABLE after_grace (x int)"); err != nil {
		t.Fatalf("a does not accept writes after the grace: %v", err)
	}

	// Strict: never self-elect.
	c.restartTandemd("a", append(grace, "TANDEMD_REJOIN_SELF_ELECT=false")...)
	time.Sleep(10 * time.Second)
	if c.holdsClusterIP("a") {
		t.Fatal("with self_elect: false, a took the cluster IP without hearing from its peer")
	}
	// The peer comes back: a carries on as primary.
	c.powerOn("b")
	c.waitStatus("a primary again once b answers", 60*time.Second, func(s labStatus) bool {
		return c.holdsClusterIP("a") && s.roles()["b"] == "secondary"
	})
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
