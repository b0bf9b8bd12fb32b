//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tandem-ha/tandem/internal/config"
)

// Maintenance mode (docs/operations.md, "Maintenance mode"): tandemd
// reports but takes no automatic action until it is switched off.

// maintenanceOn switches it on and checks the event and the status line.
func (l *testLab) maintenanceOn(reason string) {
	l.t.Helper()
	out, errOut, code := l.console("maintenance", "on", "--reason", reason)
	if code != 0 || !strings.Contains(out, "is ON") || errOut != "" {
		l.t.Fatalf("maintenance on: exit %d\n%s%s", code, out, errOut)
	}
	e := lastEvent(l.waitEvent("maintenance_on", 10*time.Second), "maintenance_on")
	if !strings.Contains(e.Message, reason) || !strings.Contains(e.Message, "switched on by ") {
		l.t.Errorf("maintenance_on event lacks who or why: %s", e.Message)
	}
	l.statusSays("MAINTENANCE MODE ON", reason)
}

// lastEvent is the latest event of kind in ev (waitEvent has made sure
// there is one).
func lastEvent(ev []clusterEvent, kind string) clusterEvent {
	var last clusterEvent
	for _, e := range ev {
		if e.Kind == kind {
			last = e
		}
	}
	return last
}

// statusSays waits until the table status has every want.
func (l *testLab) statusSays(want ...string) string {
	l.t.Helper()
	var out string
	eventually(l.t, "status says "+strings.Join(want, ", "), 30*time.Second, func() (bool, string) {
		out, _, _ = l.console("status")
		for _, w := range want {
			if !strings.Contains(out, w) {
				return false, out
			}
		}
		return true, out
	})
	return out
}

// logSays waits until node's tandemd log has want.
func (l *testLab) logSays(node, want string) {
	l.t.Helper()
	eventually(l.t, node+"'s log says "+want, 20*time.Second, func() (bool, string) {
		b, err := os.ReadFile(filepath.Join(l.nodeDir(node), "tandemd.log"))
		return err == nil && strings.Contains(string(b), want), fmt.Sprint(err)
	})
}

// pgCtl runs pg_ctl on node as the postgres user, by hand.
func (l *testLab) pgCtl(node string, args ...string) {
	l.t.Helper()
	bin, err := config.FindPostgresBinDir()
	if err != nil {
		l.t.Fatal(err)
	}
	argv := append([]string{"runuser", "-u", "postgres", "--", filepath.Join(bin, "pg_ctl"), "-D", filepath.Join(l.nodeDir(node), "pgdata")}, args...)
	l.exec(node, nil, argv...)
}

// TestMaintenanceAutomatic: in automatic mode, maintenance on; PostgreSQL
// restarted by hand on the primary is left alone and adopted; the primary
// powered off: the secondary does not fail over and `tandem failover` is
// refused, both saying maintenance is on; maintenance off (the primary
// still off): the secondary fails over by itself; the old primary, back,
// learns "off" from its peer and rejoins.
func TestMaintenanceAutomatic(t *testing.T) {
	needRoot(t)
	c := upCluster(t, clusterOpts{failover: "automatic", mode: "sync", synchronized: true})
	c.waitEligible("a", "b")
	c.maintenanceOn("e2e: kernel update")
	eventually(t, "b says it does not fail over because of maintenance", 20*time.Second, func() (bool, string) {
		q, err := c.quorumOf("b")
		if err != nil || q == nil {
			return false, errText(err)
		}
		return !q.Eligible && strings.Contains(q.Why, "maintenance mode is on"), describeQuorum(q)
	})

	// (c) PostgreSQL stopped by hand on the primary: not restarted.
	old := c.postmasterPid("a")
	if err := syscall.Kill(old, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a reports PostgreSQL stopped", 20*time.Second, func() (bool, string) {
		n, err := c.nodeStatusErr("a")
		return err == nil && n.Postgres.State == "stopped", fmt.Sprint(n.Postgres, err)
	})
	time.Sleep(5 * time.Second) // more than the supervisor's restart backoff
	if n := c.nodeStatus("a"); n.Postgres.State != "stopped" || n.Postgres.PID != 0 {
		t.Fatalf("tandemd restarted PostgreSQL in maintenance: %+v", n.Postgres)
	}
	if r := c.role("b"); r != "secondary" {
		t.Fatalf("b is %s while a's PostgreSQL is down in maintenance", r)
	}
	c.pgCtl("a", "-l", filepath.Join(c.nodeDir("a"), "pgdata", "byhand.log"), "-w", "start")
	byHand := c.postmasterPid("a")
	eventually(t, "a adopts the PostgreSQL started by hand", 20*time.Second, func() (bool, string) {
		n, err := c.nodeStatusErr("a")
		return err == nil && n.Postgres.State == "running" && n.Postgres.PID == byHand, fmt.Sprint(n.Postgres, err)
	})
	c.waitEvent("postgres_started_by_hand", 20*time.Second)
	c.waitEvent("postgres_stopped_by_hand", 20*time.Second) // kept while the history was down
	c.waitWrites("a", 20*time.Second)

	// (a) The primary powered off: no automatic failover.
	c.waitStatus("b streams again from a", 60*time.Second, func(s labStatus) bool { return s.Cluster != nil && s.Cluster.Synchronized })
	c.powerOff("a")
	eventually(t, "the leader key vacant, b still secondary", 60*time.Second, func() (bool, string) {
		q, err := c.quorumOf("b")
		if err != nil || q == nil {
			return false, errText(err)
		}
		return q.Reachable && q.Holder == "", describeQuorum(q)
	})
	time.Sleep(5 * time.Second)
	if r := c.role("b"); r != "secondary" {
		t.Fatalf("b is %s: it failed over in maintenance", r)
	}
	if n := countEvents(c.events(), "automatic_failover_started"); n != 0 {
		t.Fatalf("%d automatic failovers in maintenance", n)
	}
	// The history lives in a's PostgreSQL: b logs the event now and
	// records it once the history answers again (checked below).
	c.logSays("b", "maintenance mode: this secondary does not fail over by itself")
	c.statusSays("MAINTENANCE MODE ON", "e2e: kernel update")

	// (d) A manual failover is refused, saying why; nothing changes.
	out, errOut, code := c.console("failover", "--yes")
	if code != 5 || !strings.Contains(out+errOut, "maintenance mode is on") {
		t.Fatalf("failover in maintenance: exit %d, want 5 and the maintenance message\n%s%s", code, out, errOut)
	}
	if r := c.role("b"); r != "secondary" {
		t.Fatalf("b is %s after the refused failover", r)
	}

	// Maintenance off with a still off: b fails over by itself.
	out, errOut, code = c.console("maintenance", "off")
	if code != 0 || !strings.Contains(out, "is OFF") || !strings.Contains(errOut, "WARNING: a did not take the change") {
		t.Fatalf("maintenance off with a powered off: exit %d\n%s%s", code, out, errOut)
	}
	c.waitStatus("b primary by itself once maintenance is off", 30*time.Second, func(s labStatus) bool { return s.roles()["b"] == "primary" })
	c.waitEvent("automatic_failover_finished", 20*time.Second)
	if m := lastEvent(c.waitEvent("automatic_failover_suppressed", 20*time.Second), "automatic_failover_suppressed").Message; !strings.Contains(m, "tandem maintenance off") || !strings.Contains(m, "recorded late") {
		t.Errorf("the suppressed event does not say how to go on, or when it was: %s", m)
	}
	if m := lastEvent(c.waitEvent("maintenance_off", 20*time.Second), "maintenance_off").Message; !strings.Contains(m, "switched off by ") || !strings.Contains(m, "a did not take the change") {
		t.Errorf("maintenance_off event: %s", m)
	}

	// a comes back holding "on": it learns "off" from b and rejoins.
	c.powerOn("a")
	c.waitStatus("a back as b's standby", 120*time.Second, func(s labStatus) bool {
		r := s.roles()
		return r["a"] == "secondary" && r["b"] == "primary" && s.Cluster != nil && s.Cluster.Synchronized
	})
	if out, _, _ := c.console("status"); strings.Contains(out, "MAINTENANCE MODE ON") {
		t.Fatalf("status still shows maintenance after it was switched off:\n%s", out)
	}
}

// TestMaintenanceSync: in sync mode with the secondary gone past
// sync_grace, maintenance holds synchronous replication (commits keep
// waiting); switched off, it degrades as usual. A switchover is allowed.
func TestMaintenanceSync(t *testing.T) {
	needRoot(t)
	const grace = 5 * time.Second
	c := upCluster(t, clusterOpts{mode: "sync", synchronized: true, settings: map[string]map[string]any{"a": {"replication.sync_grace": "5s"}, "b": {"replication.sync_grace": "5s"}}})

	// (d) switchover is allowed in maintenance (and back, for the rest).
	c.maintenanceOn("e2e: sync check")
	for _, want := range []string{"b", "a"} {
		if out, errOut, code := c.console("switchover", "--yes"); code != 0 {
			t.Fatalf("switchover in maintenance: exit %d\n%s%s", code, out, errOut)
		}
		c.waitStatus(want+" primary, synchronized", 60*time.Second, func(s labStatus) bool {
			return s.roles()[want] == "primary" && s.Cluster != nil && s.Cluster.Synchronized
		})
	}

	c.mustSQL("db", `create table maint_check (id int primary key)`)
	pid := c.signalTandemd("b", syscall.SIGTERM)
	c.waitTandemdGone("b", pid)
	res := c.sqlAsync("db", `insert into maint_check values (1)`)
	eventually(t, "the commit waits for the absent b", 5*time.Second, func() (bool, string) { return c.waitingOnSyncRep("insert into maint_check") })
	select {
	case r := <-res:
		t.Fatalf("in maintenance a commit returned %s after b left (grace %s): sync degraded: %+v", r.took, grace, r)
	case <-time.After(grace + 10*time.Second):
	}
	c.waitEvent("sync_change_held", 10*time.Second)
	if n := countEvents(c.events(), "sync_degraded"); n != 0 {
		t.Fatalf("sync degraded %d times in maintenance", n)
	}

	if out, errOut, code := c.console("maintenance", "off"); code != 0 || !strings.Contains(errOut, "WARNING: b did not take the change") {
		t.Fatalf("maintenance off with b down: exit %d\n%s%s", code, out, errOut)
	}
	select {
	case r := <-res:
		if r.err != nil {
			t.Fatalf("the commit after maintenance off: %v", r.err)
		}
	case <-time.After(grace + 20*time.Second):
		t.Fatal("maintenance off, but the commit still waits: sync did not degrade")
	}
	c.waitEvent("sync_degraded", 20*time.Second)

	// b comes back holding "on" (it was down at "off"): it learns off.
	c.startTandemd("b")
	c.waitStatus("b streams again, synchronized", 90*time.Second, func(s labStatus) bool { return s.Cluster != nil && s.Cluster.Synchronized })
	eventually(t, "b learns maintenance is off", 20*time.Second, func() (bool, string) {
		out, _, _ := c.console("status")
		return !strings.Contains(out, "MAINTENANCE MODE ON"), out
	})
}
