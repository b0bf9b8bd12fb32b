//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandem-ha/tandem/internal/cluster"
)

// crashScenario drives a cluster to one journaled step with tandemd on
// node armed to crash there (TANDEMD_CRASH_AT, in crashhook builds), and
// says what must hold once the crashed tandemd is started again.
type crashScenario struct {
	node string // whose tandemd crashes
	// setup makes the lab with the hook armed on node (env) and returns it.
	setup func(t *testing.T, node string, env []string) *testLab
	// trigger starts what reaches the step.
	trigger func(l *testLab, node, hook string)
	// first, when set, is where the hook is armed at setup instead, and
	// the step under test is armed when the crashed tandemd is started
	// again: for a step that only a recovery journals.
	first string
	// settle is what the operator does after the restart, if anything, and
	// check what must hold at the end.
	settle func(l *testLab)
	check  func(l *testLab)
	// ends is true for scenarios that end the cluster (disassembly): a node
	// with no cluster runs a read-write PostgreSQL of its own, which the
	// witness would count as a second writer.
	ends bool
}

// crashScenarios: every step in cluster.JournaledSteps() needs at least
// one, or TestCrashAtEveryStep fails.
var crashScenarios = map[string][]crashScenario{
	"assemble:replication-role": {assembleCrash("a")},
	"assemble:pg-config":        {assembleCrash("a")},
	"assemble:record":           {assembleCrash("a")},
	"assemble:join":             {assembleCrash("a")},
	"join:clone":                {assembleCrash("b")},

	"disassemble:primary": {{node: "a", setup: assembledWith, trigger: disassembleTrigger, check: disassembled, ends: true}},
	// The secondary crashes while leaving: the primary's disassembly fails
	// and changes nothing on its side; the restarted secondary finishes
	// leaving, and the operator disassembles the primary's side alone.
	"leave:remove-replica": {leaveCrash},
	"leave:init":           {leaveCrash},

	"reseed:slot":  {reseedCrash},
	"reseed:clone": {reseedCrash},

	"switchover:demote":       {switchoverCrash("a")},
	"switchover:promote-peer": {switchoverCrash("a")},
	"switchover:follow":       {switchoverCrash("a")},
	"promote:promote":         {switchoverCrash("b"), failoverCrashOnNewPrimary},

	"rejoin:fenced": {rejoinCrash},
	"rejoin:stop":   {rejoinCrash},
	"rejoin:rewind": {rejoinCrash},
	// Rewind made impossible (the control file gone): the rejoin clones.
	"rejoin:clone": {{node: "a", setup: assembledWith, trigger: func(l *testLab, node, hook string) {
		l.failoverWithPrimaryOff()
		if err := os.Remove(filepath.Join(l.nodeDir("a"), "pgdata", "global", "pg_control")); err != nil {
			l.t.Fatal(err)
		}
		l.powerOn("a", hook)
	}, check: oneSynchronizedPrimary}},
	// Only a recovery journals this one: a switchover interrupted on the
	// old primary after the peer promoted (at its follow step) is settled
	// at the restart by following the peer, as a rejoin.
	"rejoin:follow": {{node: "a", setup: assembledWith, trigger: func(l *testLab, node, hook string) {
		l.console("switchover", "--yes")
	}, first: "switchover:follow", check: oneSynchronizedPrimary}},
}

// TestCrashAtEveryStep kills tandemd right after each journaled step of
// every operation, as the code lists them (cluster.JournaledSteps), starts
// it again, and checks that the operation was finished or rolled back: the
// cluster ends with one primary (or, for assembly and disassembly, the
// state the operator expects), never two writers, nothing acknowledged
// lost. A step without a scenario fails the test.
func TestCrashAtEveryStep(t *testing.T) {
	needRoot(t)
	steps := cluster.JournaledSteps()
	for _, s := range steps {
		at := string(s.Op) + ":" + string(s.Step)
		scenarios, ok := crashScenarios[at]
		if !ok {
			t.Errorf("journaled step %s (%s) has no crash scenario: add one to crashScenarios", at, s.How)
			continue
		}
		for i, sc := range scenarios {
			name := strings.ReplaceAll(at, ":", "-")
			if len(scenarios) > 1 {
				name += "-" + string(rune('a'+i))
			}
			t.Run(name, func(t *testing.T) {
				t.Logf("crash %s at %s; the restart should: %s", sc.node, at, s.How)
				runCrashScenario(t, sc, at)
			})
		}
	}
	for at := range crashScenarios {
		found := false
		for _, s := range steps {
			found = found || string(s.Op)+":"+string(s.Step) == at
		}
		if !found {
			t.Errorf("crash scenario for %s, which the code no longer journals: remove it", at)
		}
	}
}

func runCrashScenario(t *testing.T, sc crashScenario, at string) {
	hook := "TANDEMD_CRASH_AT=" + at
	if sc.first != "" {
		hook = "TANDEMD_CRASH_AT=" + sc.first
	}
	l := sc.setup(t, sc.node, []string{hook})
	var w *witness
	if !sc.ends && l.role("a") == "primary" {
		w = l.startWitness()
	}
	sc.trigger(l, sc.node, hook)
	l.waitCrash(sc.node, 1)
	if sc.first != "" {
		l.startTandemd(sc.node, "TANDEMD_CRASH_AT="+at)
		l.waitCrash(sc.node, 2)
	}
	l.startTandemd(sc.node)
	l.waitReady(sc.node, 90*time.Second)
	if sc.settle != nil {
		sc.settle(l)
	}
	sc.check(l)
	if w != nil {
		w.stop(true)
	}
}

// waitCrash waits for the n-th crash of node's tandemd at the hook.
func (l *testLab) waitCrash(node string, n int) {
	l.t.Helper()
	log := filepath.Join(l.nodeDir(node), "tandemd.log")
	eventually(l.t, "the crash hook to fire on "+node, 60*time.Second, func() (bool, string) {
		b, _ := os.ReadFile(log)
		got := strings.Count(string(b), "exiting abruptly for a crash test")
		// Gone for good: no tandemd of the node left in its namespace (the
		// next one would find the state dir still locked).
		left := l.processesIn(node, "tandemd")
		return got >= n && len(left) == 0, fmt.Sprintf("crashes so far in %s: %d; tandemd processes on %s: %v", log, got, node, left)
	})
}

func assembledWith(t *testing.T, node string, env []string) *testLab {
	return upCluster(t, clusterOpts{mode: "sync", env: map[string][]string{node: env}, synchronized: true})
}

// assembleCrash: node crashes during `tandem assemble`; the assembly fails
// and is undone on both nodes, and assembling again works.
func assembleCrash(node string) crashScenario {
	return crashScenario{
		node: node,
		setup: func(t *testing.T, node string, env []string) *testLab {
			l := upLab(t)
			l.restartTandemd(node, env...)
			l.waitReady(node, 60*time.Second)
			return l
		},
		trigger: func(l *testLab, _, _ string) {
			out, errOut, code := l.consoleWith(l.assembleEnv(), 5*time.Minute, l.assembleArgs("--yes", "--replication", "sync")...)
			if code == 0 {
				l.t.Fatalf("assemble succeeded although a node crashed in it:\n%s%s", out, errOut)
			}
		},
		settle: func(l *testLab) {
			for _, n := range []string{"a", "b"} {
				eventually(l.t, n+" back to no cluster", 60*time.Second, func() (bool, string) {
					r := l.role(n)
					return r == "none", n + " is " + r
				})
			}
			l.assemble("sync")
		},
		check: oneSynchronizedPrimary,
	}
}

func disassembleTrigger(l *testLab, _, _ string) {
	l.console("disassemble", "--yes")
}

// disassembled: a standalone with its data, b holds no cluster.
func disassembled(l *testLab) {
	for n, want := range map[string]string{"a": "standalone", "b": "none"} {
		eventually(l.t, n+" "+want+" after the disassembly", 60*time.Second, func() (bool, string) {
			r := l.role(n)
			return r == want, n + " is " + r
		})
	}
	l.waitSQL("a", `select count(*) from pg_replication_slots`, "0", 30*time.Second)
}

var leaveCrash = crashScenario{
	node: "b", setup: assembledWith, trigger: disassembleTrigger, ends: true,
	settle: func(l *testLab) {
		eventually(l.t, "b finished leaving", 60*time.Second, func() (bool, string) {
			r := l.role("b")
			return r == "none", "b is " + r
		})
		if r := l.role("a"); r != "primary" {
			l.t.Fatalf("a is %s after a disassembly its secondary did not finish; want it unchanged (primary)", r)
		}
		l.consoleOK(nil, 2*time.Minute, "disassemble", "--yes", "--force")
	},
	check: disassembled,
}

// reseedCrash: the WAL kept for b passes the cap while b is away; b,
// started with the hook, crashes in its re-seed; started again, it
// re-seeds and streams.
var reseedCrash = crashScenario{
	node: "b",
	setup: func(t *testing.T, _ string, _ []string) *testLab {
		return upCluster(t, clusterOpts{synchronized: true, settings: map[string]map[string]any{"a": {
			"replication.max_slot_wal_keep_size": "32MB",
			"replication.sync_grace":             "2s",
		}}})
	},
	trigger: func(l *testLab, _, hook string) {
		l.stopTandemd("b")
		l.mustSQL("db", `create table big as select g, repeat('x', 1000) as pad from generate_series(1, 100000) g`)
		eventually(l.t, "the slot for b passes the cap and is lost", 60*time.Second, func() (bool, string) {
			l.mustSQL("a", `select pg_switch_wal()`)
			l.mustSQL("a", `checkpoint`)
			out := l.mustSQL("a", `select coalesce(wal_status, '-') from pg_replication_slots where slot_name = 'tandem_b'`)
			return out == "lost", "wal_status " + out
		})
		l.startTandemd("b", hook)
	},
	check: func(l *testLab) {
		want := l.mustSQL("db", `select count(*) from big`)
		l.waitEvent("reseeded", 3*time.Minute)
		l.waitStreaming("after the re-seed", time.Minute)
		l.waitSQL("b", `select count(*) from big`, want, time.Minute)
		l.noOldDataOn(l.t, "b")
	},
}

func switchoverCrash(node string) crashScenario {
	return crashScenario{node: node, setup: assembledWith, trigger: func(l *testLab, _, _ string) {
		out, errOut, code := l.console("switchover", "--yes")
		l.t.Logf("switchover with %s crashing: exit %d\n%s%s", node, code, out, errOut)
	}, check: oneSynchronizedPrimary}
}

// failoverCrashOnNewPrimary: b crashes while it promotes in a failover;
// restarted, it is secondary again (the promotion had not happened) or
// primary (it had); the operator fails over again if need be.
var failoverCrashOnNewPrimary = crashScenario{
	node: "b", setup: assembledWith,
	trigger: func(l *testLab, _, _ string) { l.failoverWithPrimaryOff() },
	settle: func(l *testLab) {
		if l.role("b") != "primary" {
			eventually(l.t, "b back as secondary", 30*time.Second, func() (bool, string) {
				r := l.role("b")
				return r == "secondary", "b is " + r
			})
			l.consoleOK(nil, time.Minute, "failover", "--yes")
		}
		l.powerOn("a")
	},
	check: oneSynchronizedPrimary,
}

// rejoinCrash: a, the old primary, is powered off, b fails over, and a
// comes back armed: it fences itself and rejoins, crashing on the way.
var rejoinCrash = crashScenario{node: "a", setup: assembledWith, trigger: func(l *testLab, _, hook string) {
	l.failoverWithPrimaryOff()
	l.powerOn("a", hook)
}, check: oneSynchronizedPrimary}

// failoverWithPrimaryOff powers a off and fails over to b (the console
// may die with a crashing b; the scenario says what follows).
func (l *testLab) failoverWithPrimaryOff() {
	l.t.Helper()
	l.powerOff("a")
	time.Sleep(3 * time.Second)
	out, errOut, code := l.console("failover", "--yes")
	l.t.Logf("failover: exit %d\n%s%s", code, out, errOut)
}

func oneSynchronizedPrimary(l *testLab) {
	l.waitStatus("one primary, one streaming secondary, synchronized", 2*time.Minute, func(s labStatus) bool {
		return len(s.primaries()) == 1 && s.Cluster != nil && s.Cluster.Synchronized && !s.Cluster.Degraded
	})
}
