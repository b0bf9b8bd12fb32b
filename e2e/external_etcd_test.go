//go:build e2e

package e2e

import (
	"strings"
	"testing"
	"time"
)

// The external shape of the quorum (docs/quorum.md, "An external etcd"):
// the lab's hosts e1, e2 and e3 run a three-member etcd cluster (Debian's
// etcd-server, TLS from the lab's CA), and the pair is assembled with
// --etcd instead of a witness.

// TestExternalEtcd: a pair on an external etcd fails over by itself when
// the primary loses power; while the whole etcd is down and the pair
// whole, failsafe keeps the primary writable (no fence, no restart of
// PostgreSQL) and it takes its lease back when etcd returns; going manual
// and automatic again reuses the retired prefix. Bad flags change nothing.
func TestExternalEtcd(t *testing.T) {
	needRoot(t)
	c := upCluster(t, clusterOpts{failover: "automatic-etcd", mode: "sync", synchronized: true})
	eps := strings.Join(c.env.Etcd.Endpoints, ",")
	c.waitEligible("a", "b")
	prefix := "/tandem/" + c.env.DNSName
	eventually(t, "status showing the external quorum", 10*time.Second, func() (bool, string) {
		out, _, code := c.console("status")
		if code != 0 {
			return false, out
		}
		want := []string{"failover automatic", "leader key held by a", "b fails over by itself", "quorum: external etcd, key prefix " + prefix, "sync record names b"}
		for _, ep := range c.env.Etcd.Endpoints {
			want = append(want, strings.TrimPrefix(ep, "https://")+" ok")
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				return false, "lacks " + w + ":\n" + out
			}
		}
		return true, ""
	})

	// Bad flags: refused before anything is sent.
	for _, args := range [][]string{
		{"failover-mode", "automatic", "--etcd", "http://" + strings.TrimPrefix(c.env.Etcd.Endpoints[0], "https://"), "--yes"},
		{"failover-mode", "automatic", "--etcd", eps, "--witness", "w.example.net", "--yes"},
		{"failover-mode", "automatic", "--etcd", eps, "--etcd-prefix", "no-slash", "--yes"},
		{"failover-mode", "manual", "--etcd", eps, "--yes"},
	} {
		if out, errOut, code := c.console(args...); code != 2 || !strings.Contains(errOut, "nothing was sent") {
			t.Errorf("%s: exit %d, want 2 and nothing sent\n%s\n%s", strings.Join(args, " "), code, out, errOut)
		}
	}

	w := c.startWitness()
	pm := c.postmasterPid("a")
	time.Sleep(time.Second)

	// The whole etcd down: the pair is whole, so a stays primary on b's
	// promise (failsafe), and goes on acknowledging writes.
	for _, e := range []string{"e1", "e2", "e3"} {
		c.labCommand("power-off", e)
	}
	eventually(t, "a kept primary by failsafe", 15*time.Second, func() (bool, string) {
		q, err := c.quorumOf("a")
		if err != nil || q == nil {
			return false, errText(err)
		}
		return q.Failsafe && !q.Reachable, describeQuorum(q)
	})
	before := w.acked()
	time.Sleep(8 * time.Second)
	if w.acked() <= before {
		t.Fatalf("no writes acknowledged while etcd was down and the pair whole (%s)", w.summary())
	}
	if r := c.role("a"); r != "primary" {
		t.Fatalf("a is %s while etcd is down and the pair whole", r)
	}
	if out, _, _ := c.console("status"); !strings.Contains(out, "FAILSAFE") {
		t.Errorf("status does not say failsafe keeps a primary:\n%s", out)
	}
	for _, e := range []string{"e1", "e2", "e3"} {
		c.labCommand("power-on", e)
	}
	eventually(t, "a holding its lease again, failsafe over", 30*time.Second, func() (bool, string) {
		q, err := c.quorumOf("a")
		if err != nil || q == nil {
			return false, errText(err)
		}
		return q.Reachable && q.Holder == "a" && !q.Failsafe && q.FenceInMS > 0, describeQuorum(q)
	})
	c.waitEligible("a", "b")
	c.noFence("a")
	c.noEvent("lease_lost", "automatic_failover_started")
	if now := c.postmasterPid("a"); now != pm {
		t.Errorf("a's postmaster changed from %d to %d while etcd was down", pm, now)
	}

	// The primary loses power: b promotes by itself, through etcd.
	off := time.Now()
	c.powerOff("a")
	c.waitStatus("b primary by itself", 30*time.Second, func(s labStatus) bool { return s.roles()["b"] == "primary" })
	c.waitWrites("b", 20*time.Second)
	time.Sleep(time.Second)
	gap, at := w.longestAckGap(off.Add(-time.Second), time.Now())
	t.Logf("primary powered off at %s: writes through the cluster IP paused %s (from %s)", off.Format("15:04:05.000"), gap.Round(time.Millisecond), at.Format("15:04:05.000"))
	c.waitEvent("automatic_failover_finished", 10*time.Second)
	c.powerOn("a")
	c.waitStatus("a back as b's synchronous standby", 90*time.Second, func(s labStatus) bool {
		r := s.roles()
		return r["a"] == "secondary" && r["b"] == "primary" && s.Cluster != nil && s.Cluster.Synchronized
	})
	c.waitEligible("b", "a")
	w.stop(true)

	// Manual, then automatic again on the same prefix: the retired record
	// a disassembly or a change to manual leaves does not hold it.
	if out, errOut, code := c.console("failover-mode", "manual", "--yes"); code != 0 {
		t.Fatalf("failover-mode manual: exit %d\n%s\n%s", code, out, errOut)
	}
	if out, errOut, code := c.console("failover-mode", "automatic", "--etcd", eps, "--yes"); code != 0 {
		t.Fatalf("failover-mode automatic --etcd (the same prefix again): exit %d\n%s\n%s", code, out, errOut)
	}
	c.waitEligible("b", "a")
}
