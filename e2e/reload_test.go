//go:build e2e

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/tandem-ha/tandem/internal/version"
)

// upgradeVersion is the version stamped into the tandemd a reload test
// upgrades to.
const upgradeVersion = "0.0.0-e2e-reload"

var stamped struct {
	mu    sync.Mutex
	paths map[string]string
}

// upgradeBinary is a tandemd built from this tree with another version
// stamp: the "new package" a reload replaces the running one with. It
// speaks the next protocol (N+1), as a release that changed it would.
func upgradeBinary(t *testing.T) string {
	t.Helper()
	return stampedBinary(t, upgradeVersion, nextProtocol())
}

// nextProtocol is this tree's protocol plus one (version.Protocol).
func nextProtocol() string {
	return strconv.Itoa(version.ProtocolLevel() + 1)
}

// stampedBinary is a tandemd built from this tree stamped with version ver
// and protocol proto, built once per stamp.
func stampedBinary(t *testing.T, ver, proto string) string {
	t.Helper()
	stamped.mu.Lock()
	defer stamped.mu.Unlock()
	key := ver + " " + proto
	if p, ok := stamped.paths[key]; ok {
		return p
	}
	dir, err := os.MkdirTemp("", "tandem-e2e-upgrade-")
	if err != nil {
		t.Fatal(err)
	}
	ld := "-X github.com/tandem-ha/tandem/internal/version.Version=" + ver + " -X github.com/tandem-ha/tandem/internal/version.Protocol=" + proto
	cmd := exec.Command("go", "build", "-tags", "crashhook", "-ldflags", ld, "-o", dir, "./cmd/tandemd")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "PATH="+os.Getenv("PATH")+":/usr/local/go/bin")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cannot build a tandemd stamped %s, protocol %s: go build: %v\n%s", ver, proto, err, out)
	}
	if stamped.paths == nil {
		stamped.paths = map[string]string{}
	}
	stamped.paths[key] = filepath.Join(dir, "tandemd")
	return stamped.paths[key]
}

// installUpgrade puts the upgraded tandemd where the lab's tandemd is, as a
// package upgrade does (a new file renamed over the old one; the running
// processes keep theirs), and puts the original back when the test ends.
func (l *testLab) installUpgrade() {
	l.t.Helper()
	cur := filepath.Join(l.bin, "tandemd")
	orig := cur + ".before-upgrade"
	if err := os.Link(cur, orig); err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() {
		if err := os.Rename(orig, cur); err != nil {
			l.t.Errorf("putting the original tandemd back: %v", err)
		}
	})
	b, err := os.ReadFile(upgradeBinary(l.t))
	if err != nil {
		l.t.Fatal(err)
	}
	tmp := cur + ".new"
	if err := os.WriteFile(tmp, b, 0o755); err != nil {
		l.t.Fatal(err)
	}
	if err := os.Rename(tmp, cur); err != nil {
		l.t.Fatal(err)
	}
}

// labReload is `tandem lab reload NODE`; it fails the test unless it exits 0.
func (l *testLab) labReload(node string) {
	l.t.Helper()
	start := time.Now()
	out, errOut, err := l.tandem(nil, 3*time.Minute, "lab", "reload", "--name", l.name, node)
	if err != nil {
		l.t.Fatalf("tandem lab reload %s: %v\n%s%s", node, err, out, errOut)
	}
	l.t.Logf("tandem lab reload %s: %s(%s)", node, out, time.Since(start).Round(time.Millisecond))
}

// TestReloadKeepsWriting: an upgrade by reload, primary then secondary,
// under a writer through the cluster IP, in manual failover mode.
func TestReloadKeepsWriting(t *testing.T) {
	needRoot(t)
	c := upCluster(t, clusterOpts{mode: "sync", synchronized: true})
	checkReload(c, false)
}

// TestReloadKeepsWritingAutomatic: the same in automatic failover mode,
// where the primary's lease must survive its tandemd's exec: no fence, no
// failover.
func TestReloadKeepsWritingAutomatic(t *testing.T) {
	needRoot(t)
	c := upCluster(t, clusterOpts{failover: "automatic", mode: "sync", synchronized: true})
	checkReload(c, true)
}

// checkReload upgrades a (primary) and then b (secondary) by reload while
// the writer runs, and checks what a user relies on: PostgreSQL kept its
// processes (so its clients) on both nodes, tandemd kept its PID (a
// re-exec in place) and now runs the new binary, the writer saw no failed
// write and no gap longer than over an idle window as long, nobody else
// took over, and a switchover still works afterwards.
func checkReload(c *testLab, automatic bool) {
	t := c.t
	if p := c.primary(); p != "a" {
		t.Fatalf("want a primary after assembly, got %s", p)
	}
	before := map[string]struct {
		tandemd, postmaster int
		version             string
		started             time.Time
	}{}
	for _, n := range []string{"a", "b"} {
		info := c.nodeInfo(c.env, n)
		before[n] = struct {
			tandemd, postmaster int
			version             string
			started             time.Time
		}{c.tandemdPid(n), c.postmasterPid(n), info.TandemdVersion, info.TandemdStarted}
		if info.TandemdPID != c.tandemdPid(n) {
			t.Fatalf("node %s reports tandemd pid %d, the lab knows %d", n, info.TandemdPID, c.tandemdPid(n))
		}
	}
	term := c.nodeStatus("a").Term
	eventsBefore := len(c.events())

	w := c.startWitness()
	idleFrom := time.Now()
	time.Sleep(8 * time.Second)
	idleTo := time.Now()

	c.installUpgrade()
	reloadFrom := time.Now()
	c.labReload("a")
	c.labReload("b")
	reloadTo := time.Now()
	// Writes in flight when the second reload returned have finished.
	time.Sleep(time.Second)
	w.stop(true) // one writer, one cluster-IP holder, nothing acknowledged lost

	idleGap, _ := w.longestAckGap(idleFrom, idleTo)
	reloadGap, gapAt := w.longestAckGap(reloadFrom, reloadTo)
	t.Logf("writer: longest gap between acknowledged writes %s over %s idle, %s over the %s of both reloads (at %s; noisy, shared machine)",
		idleGap.Round(time.Millisecond), idleTo.Sub(idleFrom).Round(time.Millisecond), reloadGap.Round(time.Millisecond), reloadTo.Sub(reloadFrom).Round(time.Millisecond), gapAt.Format("15:04:05.000"))
	// What a restart costs (PostgreSQL stopped, the cluster IP re-taken)
	// shows as failed writes; a reload must cost none.
	for _, pw := range w.writes() {
		if pw.Outcome != "ok" && time.Unix(0, pw.End).After(reloadFrom) && time.Unix(0, pw.Start).Before(reloadTo) {
			t.Errorf("write %d failed during the reloads: %s %s", pw.ID, pw.Outcome, pw.Error)
		}
	}
	// A functional bound, not a speed target (that is the benchmark's):
	// far below the seconds of a restart, well above scheduling noise.
	if bound := idleGap + time.Second; reloadGap > bound {
		t.Errorf("longest write gap during the reloads %s, over %s idle: the reload stopped writes", reloadGap, idleGap)
	}

	for _, n := range []string{"a", "b"} {
		info := c.nodeInfo(c.env, n)
		if pm := c.postmasterPid(n); pm != before[n].postmaster {
			t.Errorf("node %s: postmaster pid %d, was %d: PostgreSQL was restarted by the reload", n, pm, before[n].postmaster)
		}
		if pid := c.tandemdPid(n); pid != before[n].tandemd || info.TandemdPID != pid {
			t.Errorf("node %s: tandemd pid %d (reported %d), was %d: not re-executed in place", n, pid, info.TandemdPID, before[n].tandemd)
		}
		if info.TandemdVersion != upgradeVersion {
			t.Errorf("node %s reports tandemd version %q after the reload, want the new binary's %q (was %q)", n, info.TandemdVersion, upgradeVersion, before[n].version)
		}
		if !info.TandemdStarted.After(before[n].started) {
			t.Errorf("node %s reports tandemd started at %s, not after the old process (%s)", n, info.TandemdStarted, before[n].started)
		}
		if st := c.nodeStatus(n); st.Postgres.Restarts != 0 {
			t.Errorf("node %s: PostgreSQL restarts %d after the reload", n, st.Postgres.Restarts)
		}
	}
	if holders := c.clusterIPHolders(); !slices.Equal(holders, []string{"a"}) {
		t.Errorf("cluster IP holders after the reloads: %v, want [a]", holders)
	}
	if st := c.nodeStatus("a"); st.Role != "primary" || st.Term != term {
		t.Errorf("after the reloads a is %s at term %d, want primary at term %d: someone took over", st.Role, st.Term, term)
	}
	ev := c.events()
	for _, e := range ev[min(eventsBefore, len(ev)):] {
		if slices.Contains([]string{"lease_lost", "automatic_failover_started", "failover_started", "fenced", "sync_degraded", "cluster_ip_conflict", "node_offline"}, e.Kind) {
			t.Errorf("event during the reloads: %s %s: %s", e.Kind, e.Node, e.Message)
		}
	}
	if automatic {
		c.waitStatus("synchronized after the reloads", 30*time.Second, func(s labStatus) bool {
			return s.Cluster != nil && s.Cluster.Synchronized
		})
	}

	// The reloaded pair still does what it is for.
	w = c.startWitness()
	if out, errOut, code := c.console("switchover", "--yes"); code != 0 {
		t.Fatalf("switchover after the reloads: exit %d\n%s\n%s", code, out, errOut)
	}
	time.Sleep(time.Second)
	w.stop(true)
	if p := c.primary(); p != "b" {
		t.Fatalf("after the switchover the primary is %s, want b", p)
	}
}
