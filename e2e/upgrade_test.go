//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
