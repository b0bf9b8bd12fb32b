//go:build e2e

package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandem-ha/tandem/internal/api"
)

// Automatic failover mode (docs/quorum.md): a, b and the witness w form
// the etcd quorum; only the holder of the leader key may be primary.

// quorumOf is node's own view of the quorum (GET /v1/node).
func (l *testLab) quorumOf(node string) (*api.QuorumInfo, error) {
	var v api.NodeInfo
	if err := l.call(l.env, l.env.nodeIP(node), node, http.MethodGet, "/v1/node", nil, &v, 3*time.Second); err != nil {
		return nil, err
	}
	if v.Failover != "automatic" {
		return nil, fmt.Errorf("%s reports failover mode %q, want automatic", node, v.Failover)
	}
	return v.Quorum, nil
}

// waitEligible waits until secondary reports it would fail over by itself
// and the primary holds the leader key.
func (l *testLab) waitEligible(primary, secondary string) {
	l.t.Helper()
	eventually(l.t, secondary+" eligible for an automatic failover, "+primary+" holding the key", 30*time.Second, func() (bool, string) {
		q, err := l.quorumOf(secondary)
		if err != nil || q == nil {
			return false, errText(err)
		}
		return q.Holder == primary && q.Eligible, describeQuorum(q)
	})
}

func describeQuorum(q *api.QuorumInfo) string {
	if q == nil {
		return "no quorum info"
	}
	var ms []string
	for _, m := range q.Members {
		st := "down"
		if m.Healthy {
			st = "ok"
		}
		ms = append(ms, m.Name+" "+st)
	}
	return "holder " + q.Holder + ", sync record " + q.SyncRecord + ", eligible " + boolText(q.Eligible) + " (" + q.Why + "), members " + strings.Join(ms, ", ") + ", error " + q.Error
}

func boolText(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func errText(err error) string {
	if err == nil {
		return "no quorum info yet"
	}
	return err.Error()
}

// noFence checks node's log for a self-fence: a fenced primary cannot
// record its event (its PostgreSQL is down), but it logs it.
func (l *testLab) noFence(node string) {
	l.t.Helper()
	b, err := os.ReadFile(filepath.Join(l.nodeDir(node), "tandemd.log"))
	if err != nil {
		l.t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, "FENCE:") || strings.Contains(line, "fencing:") {
			l.t.Errorf("%s fenced itself: %s", node, line)
		}
	}
}

// No event of kind must have been recorded.
func (l *testLab) noEvent(kinds ...string) {
	l.t.Helper()
	for _, e := range l.events() {
		for _, k := range kinds {
			if e.Kind == k {
				l.t.Errorf("unexpected event %s: %s", e.Kind, e.Message)
			}
		}
	}
}

// TestAutomaticFailoverPowerOff: the primary loses power; the secondary
// promotes by itself once the lease is gone, with no acknowledged write
// lost and never two writers; the old primary comes back as its standby.
// Before that, a manual failover is refused while the primary holds the
// lease, and status tells what the mode promises.
func TestAutomaticFailoverPowerOff(t *testing.T) {
	needRoot(t)
	c := upCluster(t, clusterOpts{failover: "automatic", mode: "sync", synchronized: true})
	c.waitEligible("a", "b")
	// The nodes refresh their quorum picture every second: status may
	// need a look or two to show the record b's own view already has.
	eventually(t, "status showing the quorum", 10*time.Second, func() (bool, string) {
		out, _, code := c.console("status")
		if code != 0 {
			return false, out
		}
		for _, want := range []string{"failover automatic", "leader key held by a", "b fails over by itself", "sync record names b"} {
			if !strings.Contains(out, want) {
				return false, "lacks " + want + ":\n" + out
			}
		}
		return true, ""
	})
	// The secondary refuses a failover while the primary holds the lease,
	// whatever the console's own checks say.
	var res api.FailoverResult
	err := c.call(c.env, c.env.nodeIP("b"), "b", http.MethodPost, "/v1/cluster/failover", api.FailoverRequest{}, &res, 10*time.Second)
	if err == nil || !strings.Contains(err.Error(), "holds the leader lease") {
		t.Fatalf("failover on b while a holds the lease: %v (%+v), want a refusal naming the lease", err, res)
	}
	if r := c.role("b"); r != "secondary" {
		t.Fatalf("b is %s after the refused failover", r)
	}

	w := c.startWitness()
	time.Sleep(time.Second)
	off := time.Now()
	c.powerOff("a")
	c.waitStatus("b primary by itself", 30*time.Second, func(s labStatus) bool { return s.roles()["b"] == "primary" })
	c.waitWrites("b", 20*time.Second)
	time.Sleep(time.Second)
	gap, at := w.longestAckGap(off.Add(-time.Second), time.Now())
	t.Logf("primary powered off at %s: writes through the cluster IP paused %s (from %s)", off.Format("15:04:05.000"), gap.Round(time.Millisecond), at.Format("15:04:05.000"))
	c.waitEvent("automatic_failover_finished", 10*time.Second)

	c.powerOn("a")
	c.waitStatus("a back as b's synchronous standby", 90*time.Second, func(s labStatus) bool {
		r := s.roles()
		return r["a"] == "secondary" && r["b"] == "primary" && s.Cluster != nil && s.Cluster.Synchronized
	})
	c.waitEligible("b", "a")
	w.stop(true)
}

// TestAutomaticPrimaryCutOff: the primary loses the secondary and the
// witness (the client still reaches it). It fences itself before its lease
// can expire; the secondary promotes after the lease; never two writers,
// nothing acknowledged lost (sync mode: the cut-off primary's commits
// wait, unacknowledged). When the cut heals it rejoins as the standby.
func TestAutomaticPrimaryCutOff(t *testing.T) {
	needRoot(t)
	c := upCluster(t, clusterOpts{failover: "automatic", mode: "sync", synchronized: true})
	c.waitEligible("a", "b")
	w := c.startWitness()
	time.Sleep(time.Second)
	cut := time.Now()
	c.partition("a", "b")
	c.partition("a", "w")
	c.waitStatus("b primary by itself", 30*time.Second, func(s labStatus) bool { return s.roles()["b"] == "primary" })
	c.waitWrites("b", 20*time.Second)
	gap, at := w.longestAckGap(cut.Add(-time.Second), time.Now())
	t.Logf("primary cut off at %s: writes paused %s (from %s)", cut.Format("15:04:05.000"), gap.Round(time.Millisecond), at.Format("15:04:05.000"))
	// a fenced itself: its PostgreSQL is down, it holds no cluster IP, and
	// it says so.
	eventually(t, "a fenced (PostgreSQL down, no cluster IP)", 10*time.Second, func() (bool, string) {
		n, err := c.nodeStatusErr("a")
		if err != nil {
			return false, err.Error()
		}
		return n.Postgres.State != "running" && !c.holdsClusterIP("a"), "a PostgreSQL " + n.Postgres.State
	})
	q, err := c.quorumOf("a")
	if err != nil || q == nil || !strings.Contains(q.Error, "fenced itself") {
		t.Errorf("a's quorum view after the cut: %v %s; want it to say it fenced itself", err, describeQuorum(q))
	}
	c.heal()
	c.waitStatus("a back as b's synchronous standby", 90*time.Second, func(s labStatus) bool {
		r := s.roles()
		return r["a"] == "secondary" && r["b"] == "primary" && s.Cluster != nil && s.Cluster.Synchronized
	})
	w.stop(true)
	ev := c.events()
	var kinds []string
	for _, e := range ev {
		kinds = append(kinds, e.Kind)
	}
	for _, k := range []string{"automatic_failover_finished", "rejoined"} {
		if !strings.Contains(strings.Join(kinds, " "), k) {
			t.Errorf("events lack %s: %v", k, kinds)
		}
	}
}

// TestAutomaticNoQuorumNoFailover: the witness powered off changes
// nothing; then the primary powered off too leaves the secondary without a
// quorum: it stays a read-only standby and status says why. Once the
// witness is back, the secondary has its quorum and fails over.
func TestAutomaticNoQuorumNoFailover(t *testing.T) {
	needRoot(t)
	c := upCluster(t, clusterOpts{failover: "automatic", mode: "sync", synchronized: true})
	c.waitEligible("a", "b")
	w := c.startWitness()
	c.powerOff("w")
	// Nothing changes: the two nodes are a majority.
	time.Sleep(6 * time.Second)
	s := c.status()
	if r := s.roles(); r["a"] != "primary" || r["b"] != "secondary" {
		t.Fatalf("with the witness off the roles changed: %v", r)
	}
	q, err := c.quorumOf("a")
	if err != nil || q == nil || !q.Reachable || q.Holder != "a" {
		t.Fatalf("with the witness off, a's quorum: %v %s", err, describeQuorum(q))
	}
	before := w.acked()
	time.Sleep(2 * time.Second)
	if w.acked() <= before {
		t.Fatalf("no writes acknowledged with the witness off (%s)", w.summary())
	}
	c.noFence("a")
	out, _, _ := c.console("status")
	if !strings.Contains(out, "w DOWN") {
		t.Errorf("status does not show the witness down:\n%s", out)
	}
	c.noEvent("lease_lost", "automatic_failover_started")

	// Now the primary too: b alone is no quorum.
	c.powerOff("a")
	time.Sleep(8 * time.Second)
	n := c.nodeStatus("b")
	if n.Role != "secondary" || !n.Postgres.InRecovery {
		t.Fatalf("b without a quorum: role %s, in recovery %v; it must stay a standby", n.Role, n.Postgres.InRecovery)
	}
	out, _, _ = c.console("status")
	if !strings.Contains(out, "does NOT fail over by itself") && !strings.Contains(out, "QUORUM DOES NOT ANSWER") {
		t.Errorf("status does not say why b stays a standby:\n%s", out)
	}
	// The witness back: b and w are a majority; a's lease is long gone.
	c.powerOn("w")
	c.waitStatus("b primary by itself once the witness is back", 60*time.Second, func(s labStatus) bool { return s.roles()["b"] == "primary" })
	c.waitWrites("b", 20*time.Second)
	c.powerOn("a")
	c.waitStatus("a back as b's synchronous standby", 90*time.Second, func(s labStatus) bool {
		r := s.roles()
		return r["a"] == "secondary" && r["b"] == "primary" && s.Cluster != nil && s.Cluster.Synchronized
	})
	w.stop(true)
}

// TestAutomaticSwitchover: a switchover hands the leader key over (the
// secondary takes the vacancy for what it is: no automatic failover, no
// fence), both ways, under a writer.
func TestAutomaticSwitchover(t *testing.T) {
	needRoot(t)
	c := upCluster(t, clusterOpts{failover: "automatic", mode: "sync", synchronized: true})
	c.waitEligible("a", "b")
	w := c.startWitness()
	time.Sleep(time.Second)
	for i, to := range []string{"b", "a"} {
		from := map[string]string{"a": "b", "b": "a"}[to]
		out, errOut, code := c.console("switchover", "--yes")
		if code != 0 {
			t.Fatalf("switchover %d: exit %d\n%s\n%s", i+1, code, out, errOut)
		}
		c.waitWrites(to, 20*time.Second)
		c.waitStatus("the cluster synchronized again", 30*time.Second, func(s labStatus) bool {
			return s.roles()[to] == "primary" && s.roles()[from] == "secondary" && s.Cluster != nil && s.Cluster.Synchronized
		})
		c.waitEligible(to, from)
	}
	w.stop(true)
	c.noEvent("lease_lost", "automatic_failover_started", "fenced")
	c.noFence("a")
	c.noFence("b")

	// Disassembly releases the witness for another cluster.
	out, errOut, code := c.console("disassemble", "--yes")
	if code != 0 {
		t.Fatalf("disassemble: exit %d\n%s\n%s", code, out, errOut)
	}
	if !strings.Contains(out, "left the quorum") {
		t.Errorf("disassemble does not say the witness left:\n%s", out)
	}
	var wi api.WitnessInfo
	if err := c.witnessCall(http.MethodGet, "/v1/witness", &wi, 5*time.Second); err != nil || wi.Cluster != "" || wi.State != "none" {
		t.Fatalf("the witness after the disassembly: %+v, %v; want no cluster, member none", wi, err)
	}
}

// TestAutomaticSecondaryCutOff: the secondary loses the primary and the
// witness. Nothing changes for the primary: no fence, it stays writable
// (sync mode degrades after its grace, the sync record cleared first); the
// secondary, without a quorum, does not promote. After the cut heals it
// streams again and is named synchronous again.
func TestAutomaticSecondaryCutOff(t *testing.T) {
	needRoot(t)
	c := upCluster(t, clusterOpts{failover: "automatic", mode: "sync", synchronized: true,
		settings: map[string]map[string]any{"a": {"replication.sync_grace": "3s"}, "b": {"replication.sync_grace": "3s"}}})
	c.waitEligible("a", "b")
	w := c.startWitness()
	time.Sleep(time.Second)
	pm := c.postmasterPid("a")
	c.partition("b", "a")
	c.partition("b", "w")
	// The primary degrades after its grace and goes on; its sync record
	// no longer names b.
	c.waitEvent("sync_degraded", 30*time.Second)
	eventually(t, "the sync record naming nobody, a holding the key", 30*time.Second, func() (bool, string) {
		q, err := c.quorumOf("a")
		if err != nil || q == nil {
			return false, errText(err)
		}
		return q.Reachable && q.Error == "" && q.Holder == "a" && q.SyncRecord == "", describeQuorum(q)
	})
	before := w.acked()
	time.Sleep(2 * time.Second)
	if w.acked() <= before {
		t.Fatalf("no writes acknowledged on a while b is cut off (%s)", w.summary())
	}
	if r := c.role("a"); r != "primary" {
		t.Fatalf("a is %s while only b is cut off", r)
	}
	c.heal()
	c.waitStatus("b streams and is synchronous again", 60*time.Second, func(s labStatus) bool {
		r := s.roles()
		return r["a"] == "primary" && r["b"] == "secondary" && s.Cluster != nil && s.Cluster.Synchronized
	})
	c.waitEligible("a", "b")
	w.stop(true)
	c.noEvent("lease_lost", "automatic_failover_started", "fenced")
	c.noFence("a")
	if now := c.postmasterPid("a"); now != pm {
		t.Errorf("a's postmaster changed from %d to %d while only b was cut off", pm, now)
	}
}

// TestFailoverModeChange: an automatic cluster goes manual while it runs
// (the witness leaves, nothing fails over by itself any more, no outage),
// then automatic again (the primary takes the key, the secondary watches)
// and a power-off of the primary then fails over by itself.
func TestFailoverModeChange(t *testing.T) {
	needRoot(t)
	c := upCluster(t, clusterOpts{failover: "automatic", mode: "sync", synchronized: true})
	c.waitEligible("a", "b")
	w := c.startWitness()
	pm := c.postmasterPid("a")

	// Bad input first: nothing changes.
	if out, errOut, code := c.console("failover-mode", "sometimes", "--yes"); code != 2 {
		t.Fatalf("failover-mode sometimes: exit %d, want 2\n%s\n%s", code, out, errOut)
	}
	if out, errOut, code := c.console("failover-mode", "manual", "--witness", "w", "--yes"); code != 2 {
		t.Fatalf("failover-mode manual --witness: exit %d, want 2\n%s\n%s", code, out, errOut)
	}

	out, errOut, code := c.console("failover-mode", "manual", "--yes")
	if code != 0 {
		t.Fatalf("failover-mode manual: exit %d\n%s\n%s", code, out, errOut)
	}
	if !strings.Contains(out, "left the quorum") {
		t.Errorf("failover-mode manual does not say the witness left:\n%s", out)
	}
	st, _, _ := c.console("status")
	if !strings.Contains(st, "failover manual") {
		t.Errorf("status after failover-mode manual:\n%s", st)
	}
	var wi api.WitnessInfo
	if err := c.witnessCall(http.MethodGet, "/v1/witness", &wi, 5*time.Second); err != nil || wi.Cluster != "" {
		t.Fatalf("the witness after failover-mode manual: %+v, %v; want no cluster", wi, err)
	}

	out, errOut, code = c.consoleWith([]string{"TANDEM_WITNESS_TOKEN=" + c.env.Witness.Token}, time.Minute, "failover-mode", "automatic", "--witness", c.fqdn("w"), "--yes")
	if code != 0 {
		t.Fatalf("failover-mode automatic: exit %d\n%s\n%s", code, out, errOut)
	}
	c.waitEligible("a", "b")
	if now := c.postmasterPid("a"); now != pm {
		t.Errorf("a's postmaster changed from %d to %d across the mode changes", pm, now)
	}
	c.noFence("a")
	c.powerOff("a")
	c.waitStatus("b primary by itself", 30*time.Second, func(s labStatus) bool { return s.roles()["b"] == "primary" })
	c.waitWrites("b", 20*time.Second)
	w.stop(true)
}
