//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// wdNode is the part of a node's status this file reads: its watchdog.
type wdNode struct {
	Name   string `json:"name"`
	Role   string `json:"role"`
	Quorum *struct {
		Eligible bool   `json:"eligible"`
		Why      string `json:"why"`
		Watchdog *struct {
			Mode      string `json:"mode"`
			Device    string `json:"device"`
			Armed     bool   `json:"armed"`
			TimeoutMS int64  `json:"timeout_ms"`
			Error     string `json:"error"`
		} `json:"watchdog"`
	} `json:"quorum"`
}

// watchdogOf is node's own status of its watchdog.
func (l *testLab) watchdogOf(node string) (wdNode, error) {
	out, errOut, code := l.consoleWith([]string{"TANDEM_TOKEN=" + l.env.token(node)}, 40*time.Second,
		"status", "--endpoint", l.fqdn(node), "-o", "json", "--trust-new")
	if code != 0 {
		return wdNode{}, fmt.Errorf("tandem status --endpoint %s: exit %d: %s%s", l.fqdn(node), code, out, errOut)
	}
	var st struct {
		Nodes []wdNode `json:"nodes"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return wdNode{}, err
	}
	for _, n := range st.Nodes {
		if n.Name == node {
			return n, nil
		}
	}
	return wdNode{}, fmt.Errorf("no node %s in %s", node, out)
}

func (n wdNode) armed() bool {
	return n.Quorum != nil && n.Quorum.Watchdog != nil && n.Quorum.Watchdog.Armed
}

// poweredOff says whether nothing runs on node and its eth0 is down.
func (l *testLab) poweredOff(node string) (bool, string) {
	ns := l.netnsOf(node)
	out, err := exec.Command("ip", "-n", ns, "-o", "link", "show", "eth0").Output()
	if err != nil {
		return false, err.Error()
	}
	pids := l.processesIn(node, "")
	up := strings.Contains(string(out), "state UP") || strings.Contains(string(out), ",UP")
	return !up && len(pids) == 0, fmt.Sprintf("eth0 %q, processes %v", strings.TrimSpace(string(out)), pids)
}

// TestWatchdogFrozenPrimary: the primary's tandemd is stopped (SIGSTOP)
// for longer than its lease, so it cannot fence itself while PostgreSQL
// there keeps accepting writes. The lab's watchdog, armed before a
// opened for writes and fed only while its lease was renewed, powers a
// off before the lease can expire; b then promotes by itself. Never two
// writers, no acknowledged write lost, and a, powered on, rejoins.
func TestWatchdogFrozenPrimary(t *testing.T) {
	needRoot(t)
	l := upCluster(t, clusterOpts{failover: "automatic", mode: "sync", synchronized: true})
	if got := l.primary(); got != "a" {
		t.Fatalf("primary %s after assembly, want a", got)
	}
	// The primary's watchdog is armed with the timeout derived from the
	// default lease (1 s), and status says so.
	eventually(t, "a's watchdog armed", 20*time.Second, func() (bool, string) {
		n, err := l.watchdogOf("a")
		if err != nil {
			return false, err.Error()
		}
		b, _ := json.Marshal(n.Quorum)
		return n.armed() && n.Quorum.Watchdog.TimeoutMS == 1000 && n.Quorum.Watchdog.Mode == "required", string(b)
	})
	if out, _, _ := l.consoleWith(nil, 40*time.Second, "status"); !strings.Contains(out, "a: watchdog armed") {
		t.Errorf("tandem status does not say a's watchdog is armed:\n%s", out)
	}

	w := l.startWitness()
	time.Sleep(2 * time.Second)
	pid := l.signalTandemd("a", syscall.SIGSTOP)
	stopped := time.Now()
	t.Logf("a's tandemd (pid %d) stopped with SIGSTOP", pid)

	off := eventually(t, "the lab watchdog powers a off", 15*time.Second, func() (bool, string) {
		return l.poweredOff("a")
	})
	t.Logf("a powered off by its watchdog %s after the SIGSTOP", off.Round(10*time.Millisecond))
	if off > 3*time.Second {
		t.Errorf("the watchdog took %s after the SIGSTOP; with a 2 s lease it must fire before the lease expires", off)
	}
	b, err := os.ReadFile(filepath.Join(l.nodeDir("a"), "watchdog.log"))
	if err != nil || !strings.Contains(string(b), "LAB WATCHDOG FIRED") {
		t.Errorf("the stand-in's log does not record the firing (%v):\n%s", err, b)
	}
	st := l.waitStatus("b primary by itself", 30*time.Second, func(s labStatus) bool {
		return s.roles()["b"] == "primary"
	})
	t.Logf("b primary %s after the SIGSTOP: %s", time.Since(stopped).Round(10*time.Millisecond), st)

	// The sampler's history: a was last seen writable before b first was.
	gap := w.stop(true)
	var lastA, firstB int64
	for _, s := range w.samples() {
		for _, n := range s.Writable {
			switch {
			case n == "a":
				lastA = s.At
			case n == "b" && firstB == 0:
				firstB = s.At
			}
		}
	}
	if firstB == 0 || lastA == 0 || lastA >= firstB {
		t.Errorf("sampled: a last writable at %d, b first writable at %d: want a gone before b writes", lastA, firstB)
	} else {
		t.Logf("a last writable %s before b first was; longest write gap %s", time.Duration(firstB-lastA).Round(time.Millisecond), gap.Round(time.Millisecond))
	}
	if pidLive(pid) {
		t.Errorf("a's frozen tandemd (pid %d) survived the power-off", pid)
	}

	// Powered on, a rejoins b as its secondary.
	l.labCommand("power-on", "a")
	l.waitStatus("a back as b's streaming secondary", 90*time.Second, func(s labStatus) bool {
		r := s.roles()
		return r["a"] == "secondary" && r["b"] == "primary" && s.streaming()
	})
	eventually(t, "b's watchdog armed", 20*time.Second, func() (bool, string) {
		n, err := l.watchdogOf("b")
		if err != nil {
			return false, err.Error()
		}
		return n.armed(), fmt.Sprintf("%+v", n.Quorum)
	})
}

// TestWatchdogRequiredWithoutDevice: with watchdog.mode required (the
// lab's setting) and no device, a node takes no primary role in automatic
// mode: the primary restarted that way does not open PostgreSQL for
// writes, a secondary without one does not promote, and status says why
// on both. With the device back, the primary opens again.
func TestWatchdogRequiredWithoutDevice(t *testing.T) {
	needRoot(t)
	l := upCluster(t, clusterOpts{failover: "automatic", mode: "sync", synchronized: true})
	missing := map[string]any{"watchdog.device": "/nonexistent/watchdog"}

	// b first, so that it does not take over when a goes.
	l.configure("b", missing)
	l.restartTandemd("b")
	l.waitReady("b", 60*time.Second)
	l.configure("a", missing)
	l.restartTandemd("a")

	why := eventually(t, "both nodes say why they take no primary role", 60*time.Second, func() (bool, string) {
		var seen []string
		ok := true
		for _, node := range []string{"a", "b"} {
			n, err := l.watchdogOf(node)
			if err != nil {
				return false, err.Error()
			}
			seen = append(seen, fmt.Sprintf("%s: role %s %+v", node, n.Role, n.Quorum))
			if n.Quorum == nil || n.Quorum.Watchdog == nil || n.armed() || !strings.Contains(n.Quorum.Watchdog.Error, "watchdog.mode is required") {
				ok = false
			}
		}
		return ok, strings.Join(seen, "; ")
	})
	t.Logf("both refuse %s after the restart", why.Round(10*time.Millisecond))
	// For several seconds, well past the lease, nobody accepts writes.
	deadline := time.Now().Add(6 * time.Second)
	for time.Now().Before(deadline) {
		for _, n := range l.env.Nodes {
			if ro, err := l.sql(n.IP, "SELECT pg_is_in_recovery()"); err == nil && strings.TrimSpace(ro) == "f" {
				t.Fatalf("%s accepts writes without an armed watchdog in mode required", n.Name)
			}
		}
		time.Sleep(300 * time.Millisecond)
	}
	out, _, _ := l.consoleWith(nil, 40*time.Second, "status")
	if !strings.Contains(out, "watchdog NOT armed (mode required)") || !strings.Contains(out, "/nonexistent/watchdog does not exist") {
		t.Errorf("tandem status does not say why no watchdog is armed:\n%s", out)
	}
	if n, err := l.watchdogOf("b"); err != nil || n.Quorum == nil || n.Quorum.Eligible || !strings.Contains(n.Quorum.Why, "watchdog") {
		t.Errorf("b's status does not say the watchdog keeps it from promoting: %+v %v", n.Quorum, err)
	}

	// The device back on a: it takes the key and opens, armed.
	l.configure("a", map[string]any{"watchdog.device": filepath.Join(l.nodeDir("a"), "watchdog.sock")})
	l.restartTandemd("a")
	l.waitWrites("a", 60*time.Second)
	eventually(t, "a primary with its watchdog armed", 30*time.Second, func() (bool, string) {
		n, err := l.watchdogOf("a")
		if err != nil {
			return false, err.Error()
		}
		return n.Role == "primary" && n.armed(), fmt.Sprintf("role %s %+v", n.Role, n.Quorum)
	})
}

// TestWatchdogSwitchover: a switchover hands the key over with
// PostgreSQL shut down, so the old primary's watchdog is disarmed (the
// magic close) rather than left to fire, and the new primary arms its
// own before it opens. Both nodes stay up well past the watchdog's
// timeout, and a second switchover goes back.
func TestWatchdogSwitchover(t *testing.T) {
	needRoot(t)
	l := upCluster(t, clusterOpts{failover: "automatic", mode: "sync", synchronized: true})
	w := l.startWitness()
	for i, to := range []string{"b", "a"} {
		from := map[string]string{"b": "a", "a": "b"}[to]
		eventually(t, from+"'s watchdog armed", 20*time.Second, func() (bool, string) {
			n, err := l.watchdogOf(from)
			if err != nil {
				return false, err.Error()
			}
			return n.armed(), fmt.Sprintf("%+v", n.Quorum)
		})
		if out, errOut, code := l.console("switchover", "--yes"); code != 0 {
			t.Fatalf("switchover %d to %s: exit %d\n%s%s", i+1, to, code, out, errOut)
		}
		eventually(t, to+" primary with its watchdog armed, "+from+"'s disarmed", 30*time.Second, func() (bool, string) {
			nt, err := l.watchdogOf(to)
			if err != nil {
				return false, err.Error()
			}
			nf, err := l.watchdogOf(from)
			if err != nil {
				return false, err.Error()
			}
			return nt.Role == "primary" && nt.armed() && nf.Role == "secondary" && !nf.armed(), fmt.Sprintf("%s %+v; %s %+v", to, nt.Quorum, from, nf.Quorum)
		})
		// Three watchdog timeouts: a watchdog left armed would have fired.
		time.Sleep(3 * time.Second)
		for _, node := range []string{"a", "b"} {
			if off, seen := l.poweredOff(node); off || len(l.processesIn(node, "tandemd")) == 0 {
				t.Fatalf("after the switchover to %s, %s went down: %s", to, node, seen)
			}
		}
		if b, _ := os.ReadFile(filepath.Join(l.nodeDir(from), "watchdog.log")); !strings.Contains(string(b), "disarmed (magic close)") || strings.Contains(string(b), "FIRED") {
			t.Errorf("%s's watchdog log after the switchover:\n%s", from, b)
		}
	}
	w.stop(true)
}
