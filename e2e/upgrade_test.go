//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tandem-ha/tandem/internal/version"
)

// TestRollingUpgrade: `tandem upgrade --version V` installs V on the
// secondary, then the primary, each by its upgrade.command and a live
// reload (docs/operations.md, "Rolling update"), under a writer: no write
// fails, PostgreSQL and tandemd keep their processes. The lab's
// upgrade.command stands in for apt: it renames a tandemd built from this
// tree with another version stamp over the one the nodes run. A version
// with a shell metacharacter is refused before anything is sent; one the
// command cannot install fails on the secondary and leaves the primary
// alone.
func TestRollingUpgrade(t *testing.T) {
	needRoot(t)
	c := upCluster(t, clusterOpts{mode: "sync", synchronized: true})
	newBin := upgradeBinary(t)
	repo := t.TempDir() // the "apt sources": one tandemd per version
	if err := os.Link(newBin, filepath.Join(repo, "tandemd-"+upgradeVersion)); err != nil {
		t.Fatal(err)
	}
	cur := filepath.Join(c.bin, "tandemd")
	orig := cur + ".before-rolling-upgrade"
	if err := os.Link(cur, orig); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.Rename(orig, cur); err != nil {
			t.Errorf("putting the original tandemd back: %v", err)
		}
	})
	command := []string{"/bin/sh", "-c", `cp "$1" "$2.new" && mv -f "$2.new" "$2"`, "sh", filepath.Join(repo, "tandemd-{version}"), cur}
	for _, n := range []string{"b", "a"} {
		c.configure(n, map[string]any{"upgrade.command": command})
		c.labReload(n) // the new configuration, same binary
	}
	before := map[string][2]int{}
	for _, n := range []string{"a", "b"} {
		before[n] = [2]int{c.tandemdPid(n), c.postmasterPid(n)}
	}
	oldVersion := c.nodeInfo(c.env, "a").TandemdVersion

	if out, errOut, code := c.console("upgrade", "--version", "1.0;reboot", "--yes"); code != 2 || !strings.Contains(errOut, "Nothing was sent") {
		t.Errorf("upgrade --version '1.0;reboot': exit %d, want 2 with nothing sent\n%s\n%s", code, out, errOut)
	}
	// A version the command cannot install: the secondary fails, the
	// primary is not touched.
	out, errOut, code := c.console("upgrade", "--version", "0.0.0-missing", "--yes")
	if code != 1 || !strings.Contains(errOut, "failed") {
		t.Fatalf("upgrade to a version that is not there: exit %d, want 1 naming the failure\n%s\n%s", code, out, errOut)
	}
	for _, n := range []string{"a", "b"} {
		if v := c.nodeInfo(c.env, n).TandemdVersion; v != oldVersion {
			t.Errorf("%s runs %s after the failed upgrade, want %s", n, v, oldVersion)
		}
	}
	if st, _, _ := c.console("status"); !strings.Contains(st, "b: upgrade to tandem 0.0.0-missing failed") {
		t.Errorf("status does not show b's failed upgrade:\n%s", st)
	}

	w := c.startWitness()
	time.Sleep(2 * time.Second)
	from := time.Now()
	out, errOut, code = c.consoleWith(nil, 5*time.Minute, "upgrade", "--version", upgradeVersion, "--yes")
	if code != 0 {
		t.Fatalf("upgrade --version %s: exit %d\n%s\n%s", upgradeVersion, code, out, errOut)
	}
	to := time.Now()
	t.Logf("rolling update took %s:\n%s", to.Sub(from).Round(10*time.Millisecond), out)
	time.Sleep(time.Second)
	w.stop(true)
	gap, at := w.longestAckGap(from, to)
	t.Logf("writer: longest gap between acknowledged writes %s during the update (at %s)", gap.Round(time.Millisecond), at.Format("15:04:05.000"))
	for _, pw := range w.writes() {
		if pw.Outcome != "ok" && time.Unix(0, pw.End).After(from) && time.Unix(0, pw.Start).Before(to) {
			t.Errorf("write %d failed during the rolling update: %s %s", pw.ID, pw.Outcome, pw.Error)
		}
	}
	if gap > time.Second {
		t.Errorf("longest write gap during the rolling update %s: the live reloads stopped writes", gap)
	}
	for _, n := range []string{"a", "b"} {
		info := c.nodeInfo(c.env, n)
		if info.TandemdVersion != upgradeVersion {
			t.Errorf("%s runs %s, want %s", n, info.TandemdVersion, upgradeVersion)
		}
		if got := [2]int{c.tandemdPid(n), c.postmasterPid(n)}; got != before[n] {
			t.Errorf("%s: tandemd and postmaster pids %v, were %v: not a live reload", n, got, before[n])
		}
	}
	if r := c.role("a"); r != "primary" {
		t.Errorf("a is %s after the update, want primary", r)
	}
	var order []string
	for _, e := range c.events() {
		if e.Kind == "upgrade_installed" && strings.Contains(e.Message, upgradeVersion) {
			order = append(order, e.Node)
		}
	}
	if strings.Join(order, ",") != "b,a" {
		t.Errorf("upgrade_installed events from %v, want b then a", order)
	}
	if st, _, _ := c.console("status"); !strings.Contains(st, "tandem: a "+upgradeVersion+", b "+upgradeVersion) {
		t.Errorf("status does not show both nodes at %s:\n%s", upgradeVersion, st)
	}
}

// TestMixedVersions: a node one protocol ahead (N+1, as in a rolling
// update) works with its peer for switchovers both ways; two ahead, every
// operation between them is refused with a message naming both protocols
// and the node to upgrade, and nothing changes (roles, processes), while
// the pair keeps replicating; once the node is back at N, operations work
// again.
func TestMixedVersions(t *testing.T) {
	needRoot(t)
	c := upCluster(t, clusterOpts{mode: "sync", synchronized: true})
	cur := filepath.Join(c.bin, "tandemd")
	orig := cur + ".before-mixed-versions"
	if err := os.Link(cur, orig); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.Rename(orig, cur); err != nil {
			t.Errorf("putting the original tandemd back: %v", err)
		}
	})
	install := func(from string) {
		t.Helper()
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(cur+".new", b, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(cur+".new", cur); err != nil {
			t.Fatal(err)
		}
	}
	n := version.ProtocolLevel()
	protocols := func() (a, b int) {
		return c.nodeInfo(c.env, "a").Protocol, c.nodeInfo(c.env, "b").Protocol
	}
	switchover := func(want string) {
		t.Helper()
		if out, errOut, code := c.console("switchover", "--yes"); code != 0 {
			t.Fatalf("switchover to %s: exit %d\n%s\n%s", want, code, out, errOut)
		}
		if r := c.role(want); r != "primary" {
			t.Fatalf("%s is %s after the switchover, want primary", want, r)
		}
	}

	// N+1 on b: a rolling update half done.
	install(stampedBinary(t, "0.0.0-e2e-next", strconv.Itoa(n+1)))
	c.labReload("b")
	if pa, pb := protocols(); pa != n || pb != n+1 {
		t.Fatalf("protocols a %d, b %d; want %d and %d", pa, pb, n, n+1)
	}
	st, _, _ := c.console("status")
	if strings.Contains(st, "INCOMPATIBLE") {
		t.Errorf("status calls N and N+1 incompatible:\n%s", st)
	}
	switchover("b")
	switchover("a")

	// N+2 on b: refused, nothing changes.
	install(stampedBinary(t, "0.0.0-e2e-far", strconv.Itoa(n+2)))
	c.labReload("b")
	if _, pb := protocols(); pb != n+2 {
		t.Fatalf("b speaks protocol %d, want %d", pb, n+2)
	}
	st, _, _ = c.console("status")
	if want := fmt.Sprintf("INCOMPATIBLE VERSIONS: a speaks protocol %d, b protocol %d; operations are refused until a is upgraded", n, n+2); !strings.Contains(st, want) {
		t.Errorf("status does not say %q:\n%s", want, st)
	}
	pids := map[string][2]int{}
	for _, node := range []string{"a", "b"} {
		pids[node] = [2]int{c.tandemdPid(node), c.postmasterPid(node)}
	}
	for _, args := range [][]string{{"switchover", "--yes"}, {"edit", "--replication", "async", "--yes"}} {
		out, errOut, code := c.console(args...)
		if code != 5 || !strings.Contains(errOut, fmt.Sprintf("(protocol %d)", n+2)) || !strings.Contains(errOut, "nothing was changed") {
			t.Errorf("%s with b two protocols ahead: exit %d, want 5 naming b's protocol and that nothing changed\n%s\n%s", strings.Join(args, " "), code, out, errOut)
		}
	}
	for _, node := range []string{"a", "b"} {
		if got := [2]int{c.tandemdPid(node), c.postmasterPid(node)}; got != pids[node] {
			t.Errorf("%s: tandemd and postmaster PIDs %v after the refusals, want %v", node, got, pids[node])
		}
	}
	if ra, rb := c.role("a"), c.role("b"); ra != "primary" || rb != "secondary" {
		t.Errorf("roles a %s, b %s after the refusals, want primary, secondary", ra, rb)
	}
	if v := c.view(c.env, "a"); v.Record == nil || v.Record.Replication != "sync" {
		t.Errorf("the refused edit changed the cluster record: %+v", v.Record)
	}
	c.waitStreaming("while two protocols apart", 10*time.Second) // the steady state goes on

	// Back at N: operations work again, once the reloaded tandemd has
	// adopted its PostgreSQL (until then a switchover is refused, rightly:
	// "the secondary b is not ready").
	install(orig)
	c.labReload("b")
	c.waitReady("b", 30*time.Second)
	c.waitStreaming("after b's reload back to N", 10*time.Second)
	switchover("b")
}

// TestPostgresMinorUpdate: `tandem upgrade --postgres` restarts the
// secondary's PostgreSQL, switches over and restarts the other's, under
// a writer: both postmasters are new processes, the term went up by one
// (one switchover), the roles are swapped, no acknowledged write is lost,
// and the longest write gap is the switchover's. (The lab has one
// PostgreSQL minor release, so the versions before and after are the
// same; what is tested is the sequence that puts new binaries in use.)
func TestPostgresMinorUpdate(t *testing.T) {
	needRoot(t)
	c := upCluster(t, clusterOpts{mode: "sync", synchronized: true})
	if _, errOut, code := c.console("upgrade", "--postgres", "--version", "1.0", "--yes"); code != 2 || !strings.Contains(errOut, "Nothing was sent") {
		t.Errorf("--postgres with --version: exit %d, want 2 with nothing sent\n%s", code, errOut)
	}
	if out, errOut, code := c.console("upgrade", "--yes"); code != 2 || !strings.Contains(errOut, "--postgres") {
		t.Errorf("upgrade with neither: exit %d, want 2 naming --version and --postgres\n%s\n%s", code, out, errOut)
	}
	termBefore := c.view(c.env, "a").Node.Term
	pm := map[string]int{"a": c.postmasterPid("a"), "b": c.postmasterPid("b")}
	td := map[string]int{"a": c.tandemdPid("a"), "b": c.tandemdPid("b")}

	w := c.startWitness()
	time.Sleep(2 * time.Second)
	from := time.Now()
	out, errOut, code := c.consoleWith(nil, 5*time.Minute, "upgrade", "--postgres", "--yes")
	to := time.Now()
	if code != 0 {
		t.Fatalf("upgrade --postgres: exit %d\n%s\n%s", code, out, errOut)
	}
	t.Logf("upgrade --postgres took %s:\n%s", to.Sub(from).Round(10*time.Millisecond), out)
	time.Sleep(time.Second)
	w.stop(true) // never two writers, no acknowledged write lost
	gap, at := w.longestAckGap(from, to)
	t.Logf("writer: longest gap between acknowledged writes %s (at %s)", gap.Round(time.Millisecond), at.Format("15:04:05.000"))
	if gap > 3*time.Second {
		t.Errorf("longest write gap %s: more than one switchover's", gap)
	}
	for _, n := range []string{"a", "b"} {
		if got := c.postmasterPid(n); got == pm[n] || got == 0 {
			t.Errorf("%s: postmaster PID %d, was %d: PostgreSQL was not restarted", n, got, pm[n])
		}
		if got := c.tandemdPid(n); got != td[n] {
			t.Errorf("%s: tandemd PID %d, was %d: tandemd itself should not restart", n, got, td[n])
		}
	}
	if ra, rb := c.role("a"), c.role("b"); ra != "secondary" || rb != "primary" {
		t.Errorf("roles a %s, b %s, want secondary, primary (one switchover)", ra, rb)
	}
	if term := c.view(c.env, "b").Node.Term; term != termBefore+1 {
		t.Errorf("term %d after the update, was %d: want exactly one switchover", term, termBefore)
	}
	var restarted []string
	for _, e := range c.events() {
		if e.Kind == "postgres_restarted" && e.At.After(from) {
			restarted = append(restarted, e.Node)
		}
	}
	if strings.Join(restarted, ",") != "b,a" {
		t.Errorf("postgres_restarted events from %v, want b then a", restarted)
	}
}
