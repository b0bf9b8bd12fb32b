//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The automatic-only scenarios of the fault suite (docs/faults.md): the
// lab has the witness host w, the cluster is assembled --failover
// automatic, and a (holding the leader key) and b (eligible) start with
// the quorum whole. Convergence in automatic mode also requires the
// quorum whole again: every member healthy, the primary holding the key,
// the secondary eligible.
var chaosAutoScenarios = []chaosScenario{
	{name: "15-auto-primary-cut-off", failover: "automatic", run: chaosAutoPrimaryCutOff,
		after: func(x *chaosRun) { x.eventsHave("automatic_failover_finished", "rejoined") }},
	{name: "16-auto-secondary-cut-off", failover: "automatic", run: chaosAutoSecondaryCutOff},
	{name: "17-auto-witness-partitioned", failover: "automatic", ciAuto: true, ci: true, run: chaosAutoWitnessPartitioned},
	{name: "18-auto-witness-power-off", failover: "automatic", run: chaosAutoWitnessPowerOff},
	{name: "19-auto-witness-then-primary-power-off", failover: "automatic", run: chaosAutoNoQuorum},
	{name: "20-auto-oneway-primary-witness", failover: "automatic", run: chaosAutoOneWay},
	{name: "21-auto-both-nodes-power-off", failover: "automatic", run: chaosAutoBothOff},
	{name: "22-auto-quorum-data-lost", failover: "automatic", run: chaosAutoQuorumDataLost},
	// The external shape: the lab's etcd on e1-e3 instead of the witness.
	{name: "23-auto-etcd-down", failover: "automatic-etcd", run: chaosAutoEtcdDown},
	{name: "24-auto-etcd-member-power-off", failover: "automatic-etcd", run: chaosAutoEtcdMemberOff},
	{name: "25-auto-etcd-primary-cut-off", failover: "automatic-etcd", run: chaosAutoPrimaryCutOffFrom("b", "e1", "e2", "e3"),
		after: func(x *chaosRun) { x.eventsHave("automatic_failover_finished", "rejoined") }},
}

// fenceBound is how long after a cut the cut-off primary may still accept
// writes: its deadline (1.48 s after the last renewal was sent, renewals
// every 400 ms: at most 1.48 s after the cut), the fence itself (tens of
// ms), and the sampler's 50 ms; 2.5 s leaves room for a loaded machine
// but not for the lease (2 s) plus the standby's promotion.
const fenceBound = 2500 * time.Millisecond

// noChange checks, while a fault that must change nothing lasts, that a
// stays primary holding the key and b secondary, and that writes go on.
func (x *chaosRun) noChange(what string, d time.Duration) {
	x.t.Helper()
	x.waitAckedGrowth(10, 30*time.Second, "writes acknowledged while "+what)
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		s, err := x.l.statusErr()
		if err == nil {
			if r := s.roles(); r["a"] != "primary" || r["b"] != "secondary" {
				x.t.Fatalf("the roles changed while %s: %v", what, r)
			}
		}
		time.Sleep(time.Second)
	}
	q, err := x.l.quorumOf("a")
	if err != nil || q == nil || q.Holder != "a" {
		x.t.Fatalf("a does not hold the leader key while %s: %v %s", what, err, describeQuorum(q))
	}
	x.l.noFence("a")
	x.logf("nothing changed while %s: a primary holding the key, b secondary", what)
}

// lastWritable is when node was last seen accepting writes by the sampler.
func (x *chaosRun) lastWritable(node string) time.Time {
	var last int64
	for _, s := range x.w.samples() {
		for _, n := range s.Writable {
			if n == node && s.At > last {
				last = s.At
			}
		}
	}
	return time.Unix(0, last)
}

// 15. The primary partitioned from the secondary and the witness (the
// client still reaches it): a fences itself within fenceBound of the cut;
// b promotes by itself once the lease is gone; the sampler never sees two
// writers (the common check). Healed, a rejoins as b's standby.
func chaosAutoPrimaryCutOff(x *chaosRun) { chaosAutoPrimaryCutOffFrom("b", "w")(x) }

// chaosAutoPrimaryCutOffFrom is 15 with the primary cut off from hosts:
// the secondary and the quorum's other members (w, or the external etcd's
// e1-e3 in 25).
func chaosAutoPrimaryCutOffFrom(hosts ...string) func(x *chaosRun) {
	return func(x *chaosRun) { chaosAutoPrimaryCut(x, hosts) }
}

func chaosAutoPrimaryCut(x *chaosRun, hosts []string) {
	x.pause(time.Second, 4*time.Second, "writes flow before the fault")
	cut := time.Now()
	for _, h := range hosts {
		x.l.partition("a", h)
	}
	x.logf("a cut off from %s", strings.Join(hosts, ", "))
	x.failover() // b promotes by itself
	x.waitWritesOn("b", 30*time.Second)
	eventually(x.t, "a fenced (PostgreSQL not running, no cluster IP)", 10*time.Second, func() (bool, string) {
		n, err := x.l.nodeStatusErr("a")
		if err != nil {
			return false, err.Error()
		}
		return n.Postgres.State != "running" && !x.l.holdsClusterIP("a"), "a's PostgreSQL " + n.Postgres.State
	})
	time.Sleep(200 * time.Millisecond) // the sampler's last looks are written
	last := x.lastWritable("a")
	fencedAfter := last.Sub(cut)
	x.logf("a last seen writable %s after the cut (bound %s)", fencedAfter.Round(time.Millisecond), fenceBound)
	if fencedAfter > fenceBound {
		x.t.Errorf("FENCE DEADLINE: a still accepted writes %s after it was cut off, bound %s", fencedAfter.Round(time.Millisecond), fenceBound)
	}
	if q, err := x.l.quorumOf("a"); err != nil || q == nil || !strings.Contains(q.Error, "fenced itself") {
		x.t.Errorf("a's quorum view after the cut: %v %s; want it to say it fenced itself", err, describeQuorum(q))
	}
	x.pause(time.Second, 5*time.Second, "a stays cut off")
	x.lab("heal")
	x.wantPrimary = "b"
}

// 16. The secondary partitioned from the primary and the witness for
// 20–25 s: nothing changes (a keeps the key, degrades to async after the
// grace and goes on; b, without a quorum, does not promote).
func chaosAutoSecondaryCutOff(x *chaosRun) {
	x.wantPrimary, x.wantTerm = "a", x.termNow()
	x.pause(time.Second, 3*time.Second, "writes flow before the fault")
	hold := x.between(20*time.Second, 25*time.Second)
	x.l.partition("b", "a")
	x.l.partition("b", "w")
	end := time.Now().Add(hold)
	x.logf("b cut off from a and w for %s", hold.Round(time.Second))
	x.noChange("b is cut off from a and w", time.Until(end)-time.Second)
	x.sleepUntil(end)
	x.lab("heal")
	x.sc.after = func(x *chaosRun) { x.l.noEvent("lease_lost", "automatic_failover_started") }
}

// 17. The witness partitioned from both nodes for 10–20 s: nothing
// changes (a and b are a majority).
func chaosAutoWitnessPartitioned(x *chaosRun) {
	x.wantPrimary, x.wantTerm = "a", x.termNow()
	x.pause(time.Second, 3*time.Second, "writes flow before the fault")
	hold := x.between(10*time.Second, 20*time.Second)
	x.l.partition("w", "a")
	x.l.partition("w", "b")
	end := time.Now().Add(hold)
	x.logf("w cut off from a and b for %s", hold.Round(time.Second))
	x.noChange("the witness is cut off", time.Until(end)-time.Second)
	x.sleepUntil(end)
	x.lab("heal")
	x.sc.after = func(x *chaosRun) { x.l.noEvent("lease_lost", "automatic_failover_started", "fenced") }
}

// 18. The witness powered off for 10–20 s: nothing changes; status shows
// it down.
func chaosAutoWitnessPowerOff(x *chaosRun) {
	x.wantPrimary, x.wantTerm = "a", x.termNow()
	x.pause(time.Second, 3*time.Second, "writes flow before the fault")
	hold := x.between(10*time.Second, 20*time.Second)
	x.lab("power-off", "w")
	end := time.Now().Add(hold)
	x.noChange("the witness is powered off", time.Until(end)-time.Second)
	if out, _, _ := x.l.console("status"); !strings.Contains(out, "w DOWN") {
		x.t.Errorf("status does not show the witness down:\n%s", out)
	}
	x.sleepUntil(end)
	x.lab("power-on", "w")
	x.sc.after = func(x *chaosRun) { x.l.noEvent("lease_lost", "automatic_failover_started", "fenced") }
}

// 19. The witness powered off, then 2–5 s later the primary: b alone is no
// quorum, so it stays a read-only standby for 8–12 s and status says why.
// Then the witness comes back (b and w are a majority, a's lease is long
// gone): b promotes; a, powered on, rejoins.
func chaosAutoNoQuorum(x *chaosRun) {
	x.pause(time.Second, 3*time.Second, "writes flow before the fault")
	x.lab("power-off", "w")
	x.pause(2*time.Second, 5*time.Second, "the witness is off; a and b are a majority")
	x.lab("power-off", "a")
	hold := x.between(8*time.Second, 12*time.Second)
	end := time.Now().Add(hold)
	for time.Now().Before(end) {
		n, err := x.l.nodeStatusErr("b")
		if err == nil && (n.Role != "secondary" || !n.Postgres.InRecovery) {
			x.t.Fatalf("NO QUORUM: b is %s (in recovery %v) with a and w off: it must stay a standby", n.Role, n.Postgres.InRecovery)
		}
		time.Sleep(500 * time.Millisecond)
	}
	out, _, _ := x.l.console("status")
	if !strings.Contains(out, "does NOT fail over by itself") && !strings.Contains(out, "QUORUM DOES NOT ANSWER") {
		x.t.Errorf("status does not say why b stays a standby:\n%s", out)
	} else {
		x.logf("status says why b stays a standby: %s", grepLine(out, "NOT"))
	}
	x.lab("power-on", "w")
	x.failover() // b promotes by itself once w is back
	x.waitWritesOn("b", 30*time.Second)
	x.pause(time.Second, 4*time.Second, "before a boots again")
	x.lab("power-on", "a")
	x.wantPrimary = "b"
}

// 20. A one-way partition between the primary and the witness (the
// direction drawn from the seed) for 20–30 s: a and b are still a
// majority, so nothing changes, and nothing flaps: the roles, sampled
// every 500 ms, never change, and the term stays.
func chaosAutoOneWay(x *chaosRun) {
	x.wantPrimary, x.wantTerm = "a", x.termNow()
	x.pause(time.Second, 3*time.Second, "writes flow before the fault")
	from, to := "a", "w"
	if x.rng.IntN(2) == 1 {
		from, to = "w", "a"
	}
	hold := x.between(20*time.Second, 30*time.Second)
	x.l.partition(from, to, "--oneway")
	x.logf("one-way cut: what %s sends to %s is dropped, for %s", from, to, hold.Round(time.Second))
	end := time.Now().Add(hold)
	changes, prev := 0, ""
	for time.Now().Before(end) {
		if s, err := x.l.statusErr(); err == nil {
			r := s.roles()
			now := "a " + r["a"] + ", b " + r["b"]
			if prev != "" && now != prev {
				changes++
				x.logf("role change: %s → %s", prev, now)
			}
			prev = now
		}
		time.Sleep(500 * time.Millisecond)
	}
	x.logf("role changes during the one-way cut: %d", changes)
	if changes != 0 {
		x.t.Errorf("FLAPPING: %d role changes during a one-way cut %s → %s", changes, from, to)
	}
	x.l.noFence("a")
	x.lab("heal")
	x.sc.after = func(x *chaosRun) { x.l.noEvent("lease_lost", "automatic_failover_started", "fenced") }
}

// 21. Both nodes powered off (0–2 s apart, in an order drawn from the
// seed), off for 3–8 s, powered on again in a drawn order: the cluster
// comes back with one primary, holding the key, and nothing acknowledged
// lost (sync mode).
func chaosAutoBothOff(x *chaosRun) {
	x.pause(time.Second, 3*time.Second, "writes flow before the fault")
	first, second := "a", "b"
	if x.rng.IntN(2) == 1 {
		first, second = "b", "a"
	}
	x.lab("power-off", first)
	x.pause(0, 2*time.Second, "before the other node loses power")
	x.lab("power-off", second)
	x.pause(3*time.Second, 8*time.Second, "both nodes off")
	if x.rng.IntN(2) == 1 {
		first, second = second, first
	}
	x.lab("power-on", first)
	x.pause(0, 3*time.Second, "before the other node boots")
	x.lab("power-on", second)
}

// 22. A node's quorum data lost: b's tandemd stopped, its etcd member's
// data directory (state_dir/quorum) removed, tandemd started again. The
// suite requires what issue 11 asks: it rejoins the quorum (convergence in
// automatic mode needs every member healthy and b eligible again).
func chaosAutoQuorumDataLost(x *chaosRun) {
	x.wantPrimary, x.wantTerm = "a", x.termNow()
	x.pause(time.Second, 3*time.Second, "writes flow before the fault")
	x.l.stopTandemd("b")
	dir := filepath.Join(x.l.nodeDir("b"), "state", "quorum")
	if _, err := os.Stat(dir); err != nil {
		x.t.Fatalf("b's quorum data %s: %v", dir, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		x.t.Fatal(err)
	}
	x.logf("b's tandemd stopped and its quorum data (%s) removed", dir)
	x.pause(time.Second, 3*time.Second, "b stays down")
	x.markHealed()
	x.l.startTandemd("b")
	x.logf("b's tandemd started without its quorum data")
}

// chaosTandemdGoneAuto is 03 (kill -9) or 05 (SIGSTOP) of the primary's
// tandemd in automatic mode: it cannot renew its lease nor fence itself,
// and its PostgreSQL would go on accepting writes, so the lab's watchdog
// (armed, now unfed) powers a off before the lease expires; b promotes by
// itself; never two writers; a, powered on, rejoins.
func chaosTandemdGoneAuto(kill bool) func(x *chaosRun) {
	return func(x *chaosRun) {
		x.pause(time.Second, 3*time.Second, "writes flow before the fault")
		if kill {
			x.l.killTandemd("a")
			x.logf("kill -9 of tandemd on a")
		} else {
			x.lab("pause", "a", "--process", "tandemd")
		}
		eventually(x.t, "the watchdog powers a off", 15*time.Second, func() (bool, string) { return x.l.poweredOff("a") })
		x.logf("a powered off by its watchdog")
		x.failover()
		x.waitWritesOn("b", 30*time.Second)
		x.pause(time.Second, 4*time.Second, "before a boots again")
		x.lab("power-on", "a")
		x.wantPrimary = "b"
		x.sc.after = func(x *chaosRun) { x.eventsHave("automatic_failover_finished") }
	}
}

// 23. The whole external etcd powered off for 10–20 s while the pair is
// whole: failsafe keeps a primary on b's promise not to take over. Roles
// are sampled every second and must not change, writes go on, a says
// failsafe keeps it, no fence, term unchanged; etcd back, a holds its
// lease again (convergence: every endpoint healthy, b eligible).
func chaosAutoEtcdDown(x *chaosRun) {
	x.wantPrimary, x.wantTerm = "a", x.termNow()
	x.pause(time.Second, 3*time.Second, "writes flow before the fault")
	hold := x.between(10*time.Second, 20*time.Second)
	for _, e := range []string{"e1", "e2", "e3"} {
		x.lab("power-off", e)
	}
	end := time.Now().Add(hold)
	x.logf("the whole etcd (e1, e2, e3) off for %s", hold.Round(time.Second))
	x.waitAckedGrowth(10, 30*time.Second, "writes acknowledged while etcd is down")
	failsafe := false
	for time.Now().Before(end) {
		if s, err := x.l.statusErr(); err == nil {
			if r := s.roles(); r["a"] != "primary" || r["b"] != "secondary" {
				x.t.Fatalf("the roles changed while etcd was down and the pair whole: %v", r)
			}
		}
		if q, err := x.l.quorumOf("a"); err == nil && q != nil && q.Failsafe {
			failsafe = true
		}
		time.Sleep(time.Second)
	}
	if !failsafe {
		x.t.Errorf("a never said failsafe keeps it primary while etcd was down")
	}
	x.l.noFence("a")
	x.logf("nothing changed while etcd was down: a primary on failsafe, b secondary")
	for _, e := range []string{"e1", "e2", "e3"} {
		x.lab("power-on", e)
	}
	x.markHealed()
	x.sc.after = func(x *chaosRun) { x.l.noEvent("lease_lost", "automatic_failover_started", "fenced") }
}

// 24. One external etcd member powered off for 10–20 s (drawn from the
// seed): the other two are a majority, nothing changes, and status shows
// that endpoint down.
func chaosAutoEtcdMemberOff(x *chaosRun) {
	x.wantPrimary, x.wantTerm = "a", x.termNow()
	x.pause(time.Second, 3*time.Second, "writes flow before the fault")
	e := []string{"e1", "e2", "e3"}[x.rng.IntN(3)]
	hold := x.between(10*time.Second, 20*time.Second)
	x.lab("power-off", e)
	end := time.Now().Add(hold)
	x.noChange("etcd member "+e+" is powered off", time.Until(end)-time.Second)
	ip := ""
	for _, h := range x.l.env.Hosts {
		if h.Name == e {
			ip = h.IP
		}
	}
	if out, _, _ := x.l.console("status"); !strings.Contains(out, ip+":2379 DOWN") {
		x.t.Errorf("status does not show %s (%s) down:\n%s", e, ip, out)
	}
	x.sleepUntil(end)
	x.lab("power-on", e)
	x.markHealed()
	x.sc.after = func(x *chaosRun) { x.l.noEvent("lease_lost", "automatic_failover_started", "fenced") }
}
