//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// TestRoleBoundServices: a service runs only on the primary, started
// after promotion and stopped before demotion, with its outcome in the
// events; the role-change hook sees the old role, the new role and the
// term.
func TestRoleBoundServices(t *testing.T) {
	needRoot(t)
	c := assembledLabWith(t, "sync", func(c *cluster) {
		for _, node := range []string{"a", "b"} {
			dir := c.nodeDir(node)
			c.setConfig(node, map[string]any{
				"services": []map[string]any{{
					"name":    "marker",
					"start":   []string{"/bin/sh", "-c", "echo $TANDEM_TERM > " + filepath.Join(dir, "service-running")},
					"stop":    []string{"/bin/sh", "-c", "rm -f " + filepath.Join(dir, "service-running")},
					"timeout": "5s",
				}},
				"hooks": map[string]any{
					"on_role_change": []string{"/bin/sh", "-c", "echo $TANDEM_ROLE $TANDEM_NEW_ROLE $TANDEM_TERM >> " + filepath.Join(dir, "hook.log")},
				},
			})
			c.restartTandemd(node, nil)
			c.waitFor(node+" runs PostgreSQL after its restart", 60*time.Second, func() bool { return c.node(node).Postgres.State == "running" })
		}
	})
	running := func(node string) bool {
		_, err := os.Stat(filepath.Join(c.nodeDir(node), "service-running"))
		return err == nil
	}
	c.waitFor("the service on the primary only", 20*time.Second, func() bool { return running("a") && !running("b") })

	if out, errOut, err := c.console("switchover", "--yes"); err != nil {
		t.Fatalf("switchover: %v\n%s\n%s", err, out, errOut)
	}
	c.waitFor("the service moved with the primary role", 20*time.Second, func() bool { return running("b") && !running("a") })
	if b, _ := os.ReadFile(filepath.Join(c.nodeDir("b"), "service-running")); strings.TrimSpace(string(b)) != "2" {
		t.Errorf("the service on b saw TANDEM_TERM %q, want 2", b)
	}
	hookA, _ := os.ReadFile(filepath.Join(c.nodeDir("a"), "hook.log"))
	hookB, _ := os.ReadFile(filepath.Join(c.nodeDir("b"), "hook.log"))
	if !strings.Contains(string(hookA), "none primary 1") || !strings.Contains(string(hookA), "primary secondary 2") {
		t.Errorf("a's hook log:\n%s", hookA)
	}
	if !strings.Contains(string(hookB), "none secondary 1") || !strings.Contains(string(hookB), "secondary primary 2") {
		t.Errorf("b's hook log:\n%s", hookB)
	}
	c.waitFor("service events", 20*time.Second, func() bool {
		ev, _, _ := c.console("events")
		return strings.Contains(ev, "service marker stopped") && strings.Count(ev, "service marker started") >= 2
	})
}

// setConfig sets top-level settings in a node's tandemd.yaml.
func (c *cluster) setConfig(node string, settings map[string]any) {
	c.t.Helper()
	path := filepath.Join(c.nodeDir(node), "tandemd.yaml")
	b, err := os.ReadFile(path)
	if err != nil {
		c.t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		c.t.Fatal(err)
	}
	for k, v := range settings {
		doc[k] = v
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		c.t.Fatal(err)
	}
	if err := os.WriteFile(path, out, 0o644); err != nil {
		c.t.Fatal(err)
	}
}
