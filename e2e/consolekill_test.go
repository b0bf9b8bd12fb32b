//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// consoleKills is how many moments each half of TestConsoleKilledMidOperation tries.
const consoleKills = 5

// TestConsoleKilledMidOperation: an operation belongs to the node, not to
// the console that asked for it. With the witness running, the console
// running `tandem switchover --yes` is killed (SIGKILL) at seeded moments
// 0–400 ms after it announced the switchover (the plan it prints right
// before it sends the request; with --yes it asks nothing). Each time the
// switchover must complete or roll back by itself: within 30 s one primary
// holds the cluster IP and the other streams from it, the longest gap
// between acknowledged writes stays under 1 s and the cluster is never
// without a node accepting writes for longer than 1 s. Then the same for
// `tandem failover --yes` with the primary powered off: afterwards exactly
// one primary, and the old one, powered on, rejoins. The witness checks
// throughout that there are never two writers and (sync mode) that no
// acknowledged write is lost. The moments are measured from the
// announcement rather than from the start of the console because, with the
// primary powered off, the console spends seconds finding it silent before
// it sends anything. TANDEM_CHAOS_SEED replays a run's moments.
func TestConsoleKilledMidOperation(t *testing.T) {
	needRoot(t)
	seed := chaosSeed(t)
	rng := rand.New(rand.NewPCG(seed, 0x6b696c6c))
	t.Logf("seed %d; replay with TANDEM_CHAOS_SEED=%d go test -tags e2e -count=1 -run TestConsoleKilledMidOperation -v ./e2e/", seed, seed)
	delays := func() []time.Duration {
		var out []time.Duration
		for range consoleKills {
			out = append(out, time.Duration(rng.Int64N(int64(400*time.Millisecond)+1)).Round(time.Millisecond))
		}
		return out
	}
	switchoverDelays, failoverDelays := delays(), delays()
	t.Logf("kill the console %v after it announced the switchover, %v after it announced the failover", switchoverDelays, failoverDelays)
	l := upCluster(t, clusterOpts{mode: "sync", synchronized: true})

	t.Run("switchover", func(t *testing.T) {
		l := l.sub(t)
		w := l.startWitness()
		for i, d := range switchoverDelays {
			before := l.waitSettled(fmt.Sprintf("kill %d: the pair at rest before the switchover", i+1), 30*time.Second)
			started := countEvents(l.events(), "switchover_started")
			k := l.killConsoleAfter("Switchover in cluster", d, "switchover", "--yes")
			after := l.waitSettled(fmt.Sprintf("kill %d (%s): the switchover completes or rolls back by itself", i+1, k), 30*time.Second)
			outcome := "never started: " + after.primary + " is still primary"
			switch {
			case after.primary != before.primary:
				outcome = fmt.Sprintf("completed: %s is primary at term %d", after.primary, after.term)
			case countEvents(l.events(), "switchover_started") > started:
				outcome = "rolled back: " + after.primary + " is still primary"
			}
			settledAt := time.Now()
			// The writer reconnects within a moment; the gaps are measured
			// once it writes again.
			base := w.acked()
			eventually(t, "writes acknowledged again after the kill", 10*time.Second, func() (bool, string) {
				return w.acked() >= base+5, w.summary()
			})
			from := k.started
			gap, gapAt := w.longestAckGap(from, settledAt)
			alone, aloneAt := w.longestWithoutWriter(from, settledAt)
			t.Logf("kill %d (%s): %s, at rest %s after the kill; longest gap between acknowledged writes %s (from %s), longest time without a node accepting writes %s (from %s)",
				i+1, k, outcome, settledAt.Sub(k.end()).Round(10*time.Millisecond), gap.Round(time.Millisecond), gapAt.Format("15:04:05.000"), alone.Round(time.Millisecond), aloneAt.Format("15:04:05.000"))
			if gap >= time.Second {
				t.Errorf("kill %d (%s): the longest gap between acknowledged writes was %s (from %s), want under 1s: the switchover did not carry on without its console", i+1, k, gap.Round(time.Millisecond), gapAt.Format("15:04:05.000"))
			}
			if alone >= time.Second {
				t.Errorf("kill %d (%s): no node accepted writes for %s (from %s), want under 1s", i+1, k, alone.Round(time.Millisecond), aloneAt.Format("15:04:05.000"))
			}
		}
		w.stop(true)
	})

	t.Run("failover", func(t *testing.T) {
		l := l.sub(t)
		at := l.waitSettled("the pair at rest before the failover", 30*time.Second)
		primary, secondary := at.primary, other(at.primary)
		w := l.startWitness()
		time.Sleep(500 * time.Millisecond)
		l.powerOff(primary)
		// The secondary learns the primary is silent within a few seconds.
		time.Sleep(3 * time.Second)
		promoted := false
		for i, d := range failoverDelays {
			k := l.killConsoleAfter("Failover in cluster", d, "failover", "--yes")
			// Done or not done: the secondary is at rest as primary, or
			// still secondary with no operation in flight.
			var role string
			eventually(t, fmt.Sprintf("kill %d (%s): the failover completes or rolls back by itself", i+1, k), 30*time.Second, func() (bool, string) {
				n, err := l.nodeStatusErr(secondary)
				if err != nil {
					return false, err.Error()
				}
				role = n.Role
				held := l.holdsClusterIP(secondary)
				ok := n.Operation == "" && n.Postgres.State == "running" &&
					(n.Role == "primary" && held && !n.Postgres.InRecovery || n.Role == "secondary" && !held && n.Postgres.InRecovery)
				return ok, fmt.Sprintf("%s is %s (operation %q, PostgreSQL %s, in recovery %v, cluster IP held %v)", secondary, n.Role, n.Operation, n.Postgres.State, n.Postgres.InRecovery, held)
			})
			t.Logf("kill %d (%s): %s is %s", i+1, k, secondary, role)
			if role == "primary" {
				promoted = true
				break
			}
		}
		if !promoted {
			// Every kill came before the failover took effect: the
			// operator runs it again, to the end.
			if out, errOut, code := l.console("failover", "--yes"); code != 0 {
				t.Fatalf("failover after the killed consoles: exit %d\n%s\n%s", code, out, errOut)
			}
		}
		st := l.status()
		if p := st.primaries(); len(p) != 1 || p[0] != secondary {
			t.Fatalf("after the failover the console shows primaries %v, want exactly %s: %s", p, secondary, st)
		}
		l.waitWrites(secondary, 20*time.Second)
		time.Sleep(time.Second)
		l.powerOn(primary)
		l.waitStatus(primary+" rejoined as secondary and streams", 90*time.Second, func(s labStatus) bool {
			r := s.roles()
			return r[primary] == "secondary" && r[secondary] == "primary" && s.Cluster != nil && s.Cluster.Synchronized
		})
		w.stop(true)
	})
}

// pairAtRest is the pair as waitSettled found it.
type pairAtRest struct {
	primary string
	term    int64
}

// waitSettled waits until the pair is at rest: both nodes answer with
// PostgreSQL running and no operation in flight, one is primary (read-
// write) and holds the cluster IP alone, the other is secondary (in
// recovery) and streams from it.
func (l *testLab) waitSettled(what string, timeout time.Duration) pairAtRest {
	l.t.Helper()
	var at pairAtRest
	eventually(l.t, what, timeout, func() (bool, string) {
		s, err := l.statusErr()
		if err != nil {
			return false, err.Error()
		}
		p := s.primaries()
		if len(p) != 1 {
			return false, fmt.Sprintf("primaries %v: %s", p, s)
		}
		primary, secondary := s.node(p[0]), s.node(other(p[0]))
		switch {
		case secondary == nil || !secondary.Reachable || secondary.Role != "secondary":
			return false, "no secondary: " + s.String()
		case primary.Operation != "" || secondary.Operation != "":
			return false, "an operation in flight: " + s.String()
		case primary.Postgres.State != "running" || secondary.Postgres.State != "running":
			return false, "PostgreSQL not running: " + s.String()
		case primary.Postgres.InRecovery || !secondary.Postgres.InRecovery:
			return false, "the primary in recovery or the secondary not: " + s.String()
		case primary.Replication == nil || primary.Replication.State != "streaming":
			return false, "the secondary does not stream: " + s.String()
		}
		if h := l.clusterIPHolders(); len(h) != 1 || h[0] != p[0] {
			return false, fmt.Sprintf("cluster IP held by %v: %s", h, s)
		}
		at = pairAtRest{primary: p[0], term: s.Cluster.Term}
		return true, ""
	})
	return at
}

// consoleKill is one console run and what became of it.
type consoleKill struct {
	delay     time.Duration // asked: from the announcement to SIGKILL
	started   time.Time
	announced time.Time // zero: it never announced the operation
	killed    time.Time // zero: it had ended by itself
	exited    time.Time
	code      int // its exit status when it ended by itself
	stderr    string
}

// end is when the console stopped: killed or exited.
func (k consoleKill) end() time.Time {
	if !k.killed.IsZero() {
		return k.killed
	}
	return k.exited
}

func (k consoleKill) String() string {
	switch {
	case k.announced.IsZero():
		return fmt.Sprintf("the console ended (exit %d) after %s without announcing the operation: %s",
			k.code, k.exited.Sub(k.started).Round(time.Millisecond), lastLine(k.stderr))
	case k.killed.IsZero():
		return fmt.Sprintf("the console finished (exit %d) %s after it announced the operation, before its SIGKILL %s after",
			k.code, k.exited.Sub(k.announced).Round(time.Millisecond), k.delay)
	default:
		return fmt.Sprintf("SIGKILL %s after the console announced the operation (%s after it started)",
			k.killed.Sub(k.announced).Round(time.Millisecond), k.killed.Sub(k.started).Round(time.Millisecond))
	}
}

// killConsoleAfter runs the console on the client with args (and the
// test's cache) and kills it with SIGKILL delay after it printed a line
// holding announce. The console is the very process killed: `ip netns
// exec` becomes it.
func (l *testLab) killConsoleAfter(announce string, delay time.Duration, args ...string) consoleKill {
	l.t.Helper()
	k := consoleKill{delay: delay}
	cmd := exec.Command("ip", append([]string{"netns", "exec", l.netnsOf("client"), filepath.Join(l.bin, "tandem")}, args...)...)
	cmd.Env = append(cleanEnv(), "TANDEM_CACHE_DIR="+l.cache)
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		l.t.Fatal(err)
	}
	var mu sync.Mutex
	var stderr bytes.Buffer
	announced := make(chan time.Time, 1)
	read := make(chan struct{})
	k.started = time.Now()
	if err := cmd.Start(); err != nil {
		l.t.Fatalf("starting tandem %s on the client: %v", strings.Join(args, " "), err)
	}
	go func() {
		defer close(read)
		sc := bufio.NewScanner(errPipe)
		seen := false
		for sc.Scan() {
			mu.Lock()
			stderr.WriteString(sc.Text() + "\n")
			mu.Unlock()
			if !seen && strings.Contains(sc.Text(), announce) {
				seen = true
				announced <- time.Now()
			}
		}
	}()
	select {
	case k.announced = <-announced:
		select {
		case <-read:
		case <-time.After(time.Until(k.announced.Add(delay))):
			if err := cmd.Process.Kill(); err == nil {
				k.killed = time.Now()
			}
		}
	case <-read:
	case <-time.After(time.Minute):
		_ = cmd.Process.Kill()
		l.t.Fatalf("tandem %s printed no %q within a minute", strings.Join(args, " "), announce)
	}
	<-read
	err = cmd.Wait()
	k.exited = time.Now()
	if k.killed.IsZero() {
		k.code = exitCode(err)
	} else if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		// It ended by itself between the timer and the signal.
		k.killed, k.code = time.Time{}, exitCode(err)
	}
	mu.Lock()
	k.stderr = stderr.String()
	mu.Unlock()
	return k
}

// longestBetween is the longest time between consecutive moments (unix
// nanoseconds, in order) that overlaps [from, to], and when it began.
func longestBetween(moments []int64, from, to time.Time) (time.Duration, time.Time) {
	var longest time.Duration
	var began time.Time
	for i := 1; i < len(moments); i++ {
		p, q := moments[i-1], moments[i]
		if q < from.UnixNano() || p > to.UnixNano() {
			continue
		}
		if d := time.Duration(q - p); d > longest {
			longest, began = d, time.Unix(0, p)
		}
	}
	return longest, began
}

// longestAckGap is the longest time between consecutive acknowledged
// writes that overlaps [from, to], and when it began.
func (w *witness) longestAckGap(from, to time.Time) (time.Duration, time.Time) {
	var ends []int64
	for _, pw := range w.writes() {
		if pw.Outcome == "ok" {
			ends = append(ends, pw.End)
		}
	}
	sort.Slice(ends, func(i, j int) bool { return ends[i] < ends[j] })
	return longestBetween(ends, from, to)
}

// longestWithoutWriter is the longest time between consecutive samples
// that found a node accepting writes (a primary), overlapping [from, to],
// and when it began.
func (w *witness) longestWithoutWriter(from, to time.Time) (time.Duration, time.Time) {
	var at []int64
	for _, s := range w.samples() {
		if len(s.Writable) > 0 {
			at = append(at, s.At)
		}
	}
	return longestBetween(at, from, to)
}
