//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSyncFiles: sync.files carries a file from the primary to the
// secondary (docs/operations.md, "Carrying configuration files"). The lab's
// nodes share this machine's file system, so each node's tandemd gets a
// directory of its own at the same path (a bind mount in its mount
// namespace): what b holds there is what b's tandemd wrote.
func TestSyncFiles(t *testing.T) {
	needRoot(t)
	c := upCluster(t, clusterOpts{mode: "sync", synchronized: true})
	shared := filepath.Join(labBase, c.name, "etc-app") // the path both nodes list
	if err := os.MkdirAll(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	own := map[string]string{}
	c.private = map[string][2]string{}
	for _, n := range []string{"a", "b"} {
		own[n] = filepath.Join(c.nodeDir(n), "etc-app")
		if err := os.MkdirAll(own[n], 0o755); err != nil {
			t.Fatal(err)
		}
		c.private[n] = [2]string{own[n], shared}
	}
	conf := filepath.Join(shared, "app.conf")
	onlyA := filepath.Join(shared, "only-a.conf")
	// a lists one file more than b: b must not write it.
	c.configure("a", map[string]any{"sync.files": []string{conf, onlyA}})
	c.configure("b", map[string]any{"sync.files": []string{conf}})
	if err := os.WriteFile(filepath.Join(own["a"], "app.conf"), []byte("listen 1\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(own["a"], "app.conf"), 4321, 8765); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(own["a"], "only-a.conf"), []byte("a only\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"b", "a"} {
		c.restartTandemd(n)
		c.waitReady(n, 60*time.Second)
	}
	c.waitStatus("the cluster synchronized after the restarts", 60*time.Second, func(s labStatus) bool {
		return s.roles()["a"] == "primary" && s.Cluster != nil && s.Cluster.Synchronized
	})

	// has waits until node's own copy holds want with mode and owner.
	has := func(node, name, want string, mode os.FileMode, uid, gid int, limit time.Duration) time.Duration {
		t.Helper()
		p := filepath.Join(own[node], name)
		return eventually(t, node+" holding "+name+" = "+strings.TrimSpace(want), limit, func() (bool, string) {
			b, err := os.ReadFile(p)
			if err != nil {
				return false, err.Error()
			}
			fi, _ := os.Stat(p)
			st := fi.Sys().(*syscall.Stat_t)
			return string(b) == want && fi.Mode().Perm() == mode && int(st.Uid) == uid && int(st.Gid) == gid,
				"holds " + strings.TrimSpace(string(b)) + ", mode " + fi.Mode().Perm().String()
		})
	}
	has("b", "app.conf", "listen 1\n", 0o640, 4321, 8765, 20*time.Second)

	// A change on the primary reaches the secondary within 2 s, and the
	// copy it replaced is kept.
	changed := time.Now()
	if err := os.WriteFile(filepath.Join(own["a"], "app.conf"), []byte("listen 2\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	has("b", "app.conf", "listen 2\n", 0o640, 4321, 8765, 10*time.Second)
	took := time.Since(changed)
	t.Logf("a change on a reached b after %s", took.Round(10*time.Millisecond))
	if took > 2*time.Second {
		t.Errorf("a change took %s to reach the secondary, want within 2 s", took.Round(10*time.Millisecond))
	}
	if b, err := os.ReadFile(filepath.Join(own["b"], "app.conf.tandem-prev")); err != nil || string(b) != "listen 1\n" {
		t.Errorf("b's kept copy: %q, %v; want the replaced version", b, err)
	}
	// The primary's copy wins: an edit made on the secondary is replaced.
	if err := os.WriteFile(filepath.Join(own["b"], "app.conf"), []byte("edited on b\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	has("b", "app.conf", "listen 2\n", 0o640, 4321, 8765, 10*time.Second)
	// What b does not list it does not write, and says so.
	c.waitEvent("file_sync_failed", 10*time.Second)
	if _, err := os.Stat(filepath.Join(own["b"], "only-a.conf")); !os.IsNotExist(err) {
		t.Errorf("b wrote only-a.conf, which its sync.files does not list (%v)", err)
	}
	var kinds []string
	for _, e := range c.events() {
		if strings.HasPrefix(e.Kind, "file_") {
			kinds = append(kinds, e.Kind+": "+e.Message)
		}
	}
	joined := strings.Join(kinds, "\n")
	for _, want := range []string{"file_stored: a stored " + conf, "file_synced: b wrote " + conf, "does not list it"} {
		if !strings.Contains(joined, want) {
			t.Errorf("events lack %q:\n%s", want, joined)
		}
	}

	// After a switchover the new primary carries its files the other way.
	if out, errOut, code := c.console("switchover", "--yes"); code != 0 {
		t.Fatalf("switchover: exit %d\n%s\n%s", code, out, errOut)
	}
	c.waitStatus("b primary", 30*time.Second, func(s labStatus) bool { return s.roles()["b"] == "primary" && s.roles()["a"] == "secondary" })
	if err := os.WriteFile(filepath.Join(own["b"], "app.conf"), []byte("listen 3\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	has("a", "app.conf", "listen 3\n", 0o640, 4321, 8765, 10*time.Second)
}
