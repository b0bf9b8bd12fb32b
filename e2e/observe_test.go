//go:build e2e

package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestHealthChecksAndMetrics: the load-balancer checks answer 200/503 by
// role on each node, and /metrics reports role, term, the cluster IP and
// replication.
func TestHealthChecksAndMetrics(t *testing.T) {
	needRoot(t)
	c := upCluster(t, clusterOpts{mode: "sync", synchronized: true})
	probe := filepath.Join(c.bin, "labprobe")
	get := func(node, path string) (string, string) {
		t.Helper()
		out := c.exec("client", nil, probe, "-mode", "get", "-url", "https://"+net.JoinHostPort(c.env.nodeIP(node), "7400")+path)
		code, body, _ := strings.Cut(out, "\n")
		return code, body
	}
	for node, want := range map[string][2]string{"a": {"200", "503"}, "b": {"503", "200"}} {
		if code, body := get(node, "/primary"); code != want[0] {
			t.Errorf("GET /primary on %s: %s, want %s (%s)", node, code, want[0], body)
		}
		if code, body := get(node, "/replica"); code != want[1] {
			t.Errorf("GET /replica on %s: %s, want %s (%s)", node, code, want[1], body)
		}
	}
	eventually(t, "metrics on the primary", 20*time.Second, func() (bool, string) {
		code, body := get("a", "/metrics")
		return code == "200" &&
			strings.Contains(body, `tandem_role{role="primary"} 1`) &&
			strings.Contains(body, "tandem_term 1") &&
			strings.Contains(body, "tandem_cluster_ip_held 1") &&
			strings.Contains(body, "tandem_replication_streaming 1") &&
			strings.Contains(body, "tandem_peer_reachable 1") &&
			strings.Contains(body, "tandem_wal_retained_bytes") &&
			strings.Contains(body, "tandem_synchronized 1") &&
			strings.Contains(body, "process_resident_memory_bytes"), code + "\n" + body
	})
	if _, body := get("b", "/metrics"); !strings.Contains(body, `tandem_role{role="secondary"} 1`) || !strings.Contains(body, "tandem_cluster_ip_held 0") {
		t.Errorf("metrics on b:\n%s", body)
	}
	if out, errOut, code := c.console("switchover", "--yes"); code != 0 {
		t.Fatalf("switchover: exit %d\n%s\n%s", code, out, errOut)
	}
	eventually(t, "the checks follow the switchover", 20*time.Second, func() (bool, string) {
		pa, _ := get("a", "/primary")
		pb, _ := get("b", "/primary")
		ra, _ := get("a", "/replica")
		_, mb := get("b", "/metrics")
		return pa == "503" && pb == "200" && ra == "200" && strings.Contains(mb, "tandem_term 2"),
			fmt.Sprintf("GET /primary: a %s, b %s; GET /replica on a %s; b's metrics with tandem_term 2: %v", pa, pb, ra, strings.Contains(mb, "tandem_term 2"))
	})
	if _, ma := get("a", "/metrics"); !strings.Contains(ma, `tandem_operations_total{operation="switchover",outcome="ok"} 1`) || !strings.Contains(ma, `tandem_last_operation_duration_seconds{operation="switchover"}`) {
		t.Errorf("a's metrics lack the switchover count and duration:\n%s", ma)
	}
}

// TestNotificationsDuringFailover: a webhook receiver on the client gets
// the failover from the new primary and the fencing from the old one.
func TestNotificationsDuringFailover(t *testing.T) {
	needRoot(t)
	var hook string
	c := upCluster(t, clusterOpts{mode: "sync", synchronized: true, prepare: func(c *testLab) {
		hook = "TANDEMD_NOTIFY_WEBHOOK=http://" + net.JoinHostPort(c.env.ClientIP, "9099") + "/tandem"
		for _, node := range []string{"a", "b"} {
			c.restartTandemd(node, hook)
			c.waitReady(node, 60*time.Second)
		}
	}})
	got := filepath.Join(t.TempDir(), "notifications.jsonl")
	recv := c.startIn("client", nil, filepath.Join(c.bin, "labprobe"), "-mode", "webhook", "-listen", net.JoinHostPort(c.env.ClientIP, "9099"), "-out", got)
	t.Cleanup(func() { _ = recv.Process.Signal(syscall.SIGTERM); _ = recv.Wait() })

	c.powerOff("a")
	time.Sleep(3 * time.Second)
	if out, errOut, code := c.console("failover", "--yes"); code != 0 {
		t.Fatalf("failover: exit %d\n%s\n%s", code, out, errOut)
	}
	c.powerOn("a", hook)
	kinds := func() map[string]string {
		out := map[string]string{}
		f, err := os.Open(got)
		if err != nil {
			return out
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var e struct{ Kind, Node, Cluster string }
			if json.Unmarshal(sc.Bytes(), &e) == nil {
				out[e.Kind] = e.Node + "@" + e.Cluster
			}
		}
		return out
	}
	eventually(t, "failover and fencing notifications", 90*time.Second, func() (bool, string) {
		k := kinds()
		return strings.HasPrefix(k["failover_started"], "b@") && strings.HasPrefix(k["failover_finished"], "b@") && strings.HasPrefix(k["fenced"], "a@"), fmt.Sprintf("notifications received, by kind: %v", k)
	})
	if k := kinds(); k["failover_finished"] != "b@"+c.env.DNSName {
		t.Errorf("notification names node@cluster %q, want b@%s", k["failover_finished"], c.env.DNSName)
	}
}

// TestProgressDuringClone: a long assembly shows the clone's progress
// (phase, bytes copied of the total) in the console that runs it and in
// a second console's `status --watch`.
func TestProgressDuringClone(t *testing.T) {
	needRoot(t)
	c := upLab(t)
	out, errOut, err := c.tandem(nil, 20*time.Minute, "lab", "exec", "--name", c.name, "client", "--", "psql",
		"host="+c.fqdn("a")+" user=postgres password="+c.env.pgPassword("a")+" connect_timeout=3", "-v", "ON_ERROR_STOP=1", "-Atc",
		"CREATE TABLE filler AS SELECT g, repeat('x', 1000) AS v FROM generate_series(1, 900000) g")
	if err != nil {
		t.Fatalf("filling a: %v\n%s\n%s", err, out, errOut)
	}
	watch := filepath.Join(t.TempDir(), "watch.txt")
	wf, _ := os.Create(watch)
	watcher := c.startIn("client", wf, "env", "TANDEM_CACHE_DIR="+c.cache, "TANDEM_TOKEN="+c.env.token("b"),
		filepath.Join(c.bin, "tandem"), "status", "--watch", "--interval", "500ms", "--trust-new", "--endpoint", c.fqdn("b"))
	out, errOut, code := c.consoleWith(c.assembleEnv(), time.Minute, c.assembleArgs("--yes")...)
	_ = watcher.Process.Signal(syscall.SIGTERM)
	_ = watcher.Wait()
	wf.Close()
	if code != 0 {
		t.Fatalf("assemble: exit %d\n%s\n%s", code, out, errOut)
	}
	if !strings.Contains(errOut, "clone:") || !strings.Contains(errOut, " of ") {
		t.Errorf("the assembling console showed no clone progress:\n%s", errOut)
	}
	w, _ := os.ReadFile(watch)
	if !strings.Contains(string(w), "operation in progress: join:clone (clone:") {
		t.Errorf("status --watch never showed the clone in progress:\n%s", w)
	}
}
