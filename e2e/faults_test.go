//go:build e2e

package e2e

import (
	"net"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestLabFaults drives the lab's fault tools and checks each from outside:
// power-off and power-on, partition and heal, pause and resume, netem.
func TestLabFaults(t *testing.T) {
	needRoot(t)
	l := upLab(t)
	e := l.env
	bAPI := net.JoinHostPort(e.nodeIP("b"), "7400")
	aAPI := net.JoinHostPort(e.nodeIP("a"), "7400")
	const quick = 2 * time.Second
	mustReach := func(t *testing.T, from, addr string) {
		t.Helper()
		if err := l.reaches(from, addr, quick); err != nil {
			t.Errorf("%s cannot reach %s: %v", from, addr, err)
		}
	}
	mustNotReach := func(t *testing.T, from, addr string) {
		t.Helper()
		if err := l.reaches(from, addr, quick); err == nil {
			t.Errorf("%s still reaches %s", from, addr)
		}
	}
	faults := func() []string { return l.readEnv().Faults }
	mustReach(t, "a", bAPI)

	t.Run("power-off", func(t *testing.T) {
		pid := l.sub(t).tandemdPid("b")
		l.labCommand("power-off", "b")
		if pidLive(pid) {
			t.Errorf("tandemd on b (pid %d) survived the power-off", pid)
		}
		if out, _ := exec.Command("ip", "netns", "pids", l.netnsOf("b")).Output(); len(strings.Fields(string(out))) != 0 {
			t.Errorf("processes left on b after power-off: %s", out)
		}
		if addrs := l.addrsOf("b"); len(addrs) != 0 {
			t.Errorf("b's eth0 still has addresses: %v", addrs)
		}
		mustNotReach(t, "a", bAPI)
		// a's own view of b, through the product: its preflight cannot reach b's API.
		checks, _ := l.preflight(e, "a", e.ClusterPrefix)
		if c := checks["port.api"]; c.Status != "problem" {
			t.Errorf("a's preflight about b after power-off: port.api %+v, want a problem", c)
		}
		if f := faults(); !slices.Contains(f, "host b is powered off") {
			t.Errorf("lab env faults %q", f)
		}
		// Twice is harmless.
		if out := l.labCommand("power-off", "b"); !strings.Contains(out, "already") {
			t.Errorf("second power-off: %q", out)
		}
	})

	t.Run("power-on", func(t *testing.T) {
		start := time.Now()
		l.labCommand("power-on", "b")
		t.Logf("b back in %s", time.Since(start).Round(time.Millisecond))
		var health struct {
			Status string `json:"status"`
		}
		if err := l.call(e, e.nodeIP("b"), "b", "GET", "/health", nil, &health, quick); err != nil || health.Status != "ok" {
			t.Errorf("GET /health on b after power-on: %+v %v", health, err)
		}
		if info := l.nodeInfo(e, "b"); info.Name != "b" || info.Postgres.State != "running" {
			t.Errorf("b after power-on: %+v", info)
		}
		mustReach(t, "a", bAPI)
		if f := faults(); len(f) != 0 {
			t.Errorf("lab env faults after power-on %q", f)
		}
	})

	t.Run("partition", func(t *testing.T) {
		l.partition("a", "b")
		mustNotReach(t, "a", bAPI)
		mustNotReach(t, "b", aAPI)
		mustReach(t, "client", aAPI)
		mustReach(t, "client", bAPI)
		mustReach(t, "a", net.JoinHostPort(e.DNSServer, "53"))
		if f := faults(); !slices.Contains(f, "partition between a and b") {
			t.Errorf("lab env faults %q", f)
		}
		l.heal("a", "b")
		mustReach(t, "a", bAPI)
		mustReach(t, "b", aAPI)
	})

	t.Run("partition-oneway", func(t *testing.T) {
		// What client sends a is lost: the client cannot reach a; a's
		// packets reach the client, but the answers do not come back.
		l.partition("client", "a", "--oneway")
		mustNotReach(t, "client", aAPI)
		mustReach(t, "client", bAPI)
		mustReach(t, "b", aAPI)
		l.heal()
		mustReach(t, "client", aAPI)
		if f := faults(); len(f) != 0 {
			t.Errorf("lab env faults after heal %q", f)
		}
	})

	t.Run("pause", func(t *testing.T) {
		l.labCommand("pause", "b", "--process", "tandemd")
		// The kernel still accepts the connection; tandemd answers nothing.
		var probe struct{}
		if err := l.call(e, e.nodeIP("b"), "b", "GET", "/health", nil, &probe, quick); err == nil {
			t.Error("b's paused tandemd answered /health")
		}
		if _, err := l.pgQueryAs(e, e.pgPassword("b"), "client", e.nodeIP("b"), "SELECT 1"); err != nil {
			t.Errorf("PostgreSQL on b is not paused with --process tandemd, yet: %v", err)
		}
		l.labCommand("resume", "b")
		if info := l.nodeInfo(e, "b"); info.Name != "b" {
			t.Errorf("b after resume: %+v", info)
		}
	})

	t.Run("netem", func(t *testing.T) {
		out, errOut, err := l.tandem(nil, time.Minute, "lab", "netem", "--name", l.name, "a", "b", "--delay", "200ms")
		if err != nil {
			if strings.Contains(errOut, "netem") && strings.Contains(errOut, "kernel") {
				// Nothing may be left half done.
				if f := faults(); len(f) != 0 {
					t.Errorf("a failed netem left faults %q", f)
				}
				mustReach(t, "a", bAPI)
				t.Skipf("this kernel has no netem qdisc, and the command says so: %s", strings.TrimSpace(errOut))
			}
			t.Fatalf("lab netem: %v\n%s%s", err, out, errOut)
		}
		start := time.Now()
		mustReach(t, "a", bAPI)
		if took := time.Since(start); took < 350*time.Millisecond {
			t.Errorf("a TCP connect across a link with 200ms each way took %s", took)
		}
		l.labCommand("heal", "a", "b")
		start = time.Now()
		mustReach(t, "a", bAPI)
		if took := time.Since(start); took > 150*time.Millisecond {
			t.Errorf("after heal, a TCP connect a → b took %s", took)
		}
	})
}
