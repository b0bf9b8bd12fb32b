//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRoleBoundServices: a service runs only on the primary, started
// after promotion and stopped before demotion, with its outcome in the
// events; the role-change hook sees the old role, the new role and the
// term.
func TestRoleBoundServices(t *testing.T) {
	needRoot(t)
	c := upCluster(t, clusterOpts{mode: "sync", synchronized: true, prepare: func(c *testLab) {
		for _, node := range []string{"a", "b"} {
			dir := c.nodeDir(node)
			c.configure(node, map[string]any{
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
			c.restartTandemd(node)
			c.waitReady(node, 60*time.Second)
		}
	}})
	running := func(node string) bool {
		_, err := os.Stat(filepath.Join(c.nodeDir(node), "service-running"))
		return err == nil
	}
	where := func() string { return fmt.Sprintf("the service runs on a %v, on b %v", running("a"), running("b")) }
	eventually(t, "the service on the primary only", 20*time.Second, func() (bool, string) { return running("a") && !running("b"), where() })

	if out, errOut, code := c.console("switchover", "--yes"); code != 0 {
		t.Fatalf("switchover: exit %d\n%s\n%s", code, out, errOut)
	}
	eventually(t, "the service moved with the primary role", 20*time.Second, func() (bool, string) { return running("b") && !running("a"), where() })
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
	eventually(t, "service events", 20*time.Second, func() (bool, string) {
		ev, _, _ := c.console("events")
		return strings.Contains(ev, "service marker stopped") && strings.Count(ev, "service marker started") >= 2, ev
	})
}
