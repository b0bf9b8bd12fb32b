//go:build e2e

package e2e

import (
	"bufio"
	crand "crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The fault suite's machinery: one chaosRun per run of a scenario, with
// its seeded randomness, its lab, its witness, its step log, and what a
// failed run leaves behind for whoever investigates.

// chaosBound is how long a scenario may take, after the fault is healed
// (and the operator did what tandem leaves to an operator), to converge:
// one primary holding the cluster IP, the other streaming from it, the
// console's status synchronized (sync mode) and not degraded.
const chaosBound = 120 * time.Second

// chaosKeepRoot is where failed runs keep their history.
func chaosKeepRoot() string {
	if d := os.Getenv("TANDEM_CHAOS_KEEP"); d != "" {
		return d
	}
	return "/var/tmp/tandem-chaos"
}

// chaosScenario is one row of the fault table.
type chaosScenario struct {
	name string
	// ci: part of the short subset that runs without TANDEM_CHAOS=full.
	ci bool
	// mode is the replication mode; "" is sync.
	mode string
	// failover is "automatic" for a run in automatic failover mode (the
	// lab with the witness host w, assembled --failover automatic); "" is
	// manual. chaosAll makes the automatic variants.
	failover string
	// ciAuto: the automatic variant is part of the CI subset.
	ciAuto bool
	// manualOnly, when set, says why the scenario has no automatic variant.
	manualOnly string
	// autoRun and autoAfter replace run and after in the automatic
	// variant, where automatic failover changes what must happen.
	autoRun   func(x *chaosRun)
	autoAfter func(x *chaosRun)
	// skip, when it returns a reason, skips the run before any lab is
	// built (a missing kernel feature already seen by an earlier run).
	skip func() string
	// prepare runs on the assembled lab before the witness starts.
	prepare func(x *chaosRun)
	// run injects the fault, heals it and does the operator's part; it
	// sets x.wantPrimary (and x.wantTerm when the term must not change).
	run func(x *chaosRun)
	// after runs once the cluster converged and the witness is checked.
	after func(x *chaosRun)
}

// chaosResult is what one run of one scenario found, for the summary.
type chaosResult struct {
	Scenario   string  `json:"scenario"`
	Run        int     `json:"run"`
	Seed       uint64  `json:"seed"`
	Outcome    string  `json:"outcome"` // pass, fail, skip
	Violations int     `json:"violations"`
	TwoWriters int     `json:"two_writer_samples"`
	TwoHolders int     `json:"two_holder_samples"`
	Acked      int     `json:"acked"`
	LostAcked  int     `json:"lost_acked"`
	Converged  float64 `json:"converged_s"` // after healing; -1 when it did not
	LongestGap float64 `json:"longest_gap_s"`
	Took       float64 `json:"took_s"`
	Note       string  `json:"note,omitempty"`
	Kept       string  `json:"kept,omitempty"`
}

// chaosRun is one run of one scenario.
type chaosRun struct {
	t           *testing.T
	sc          chaosScenario
	mode        string
	seed        uint64
	rng         *rand.Rand
	res         *chaosResult
	start       time.Time
	l           *testLab
	w           *witness
	witnessDone bool
	keep        string
	// healed is when the last healing step began (heal, power-on,
	// resume, a link up, space freed, tandemd started): convergence is
	// timed from there.
	healed time.Time
	// wantPrimary is the node that must be primary at the end; wantTerm,
	// when not 0, the term the cluster must still have (no failover).
	wantPrimary string
	wantTerm    int64
	// afterLab runs after the lab is down (cleanups of things outside it).
	afterLab []func()
}

// chaosSeed is TANDEM_CHAOS_SEED (every run replays it) or a fresh one.
func chaosSeed(t *testing.T) uint64 {
	if s := os.Getenv("TANDEM_CHAOS_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("TANDEM_CHAOS_SEED=%q is not a number: %v", s, err)
		}
		return v
	}
	var b [8]byte
	if _, err := crand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return binary.LittleEndian.Uint64(b[:]) % 1_000_000_000_000
}

// runChaos runs one scenario once: a fresh assembled lab, the witness,
// the fault, convergence, then the invariants.
func runChaos(t *testing.T, sc chaosScenario, res *chaosResult) {
	needRoot(t)
	mode := sc.mode
	if mode == "" {
		mode = "sync"
	}
	x := &chaosRun{t: t, sc: sc, mode: mode, seed: res.Seed, res: res, start: time.Now()}
	x.rng = rand.New(rand.NewPCG(res.Seed, 0x74616e64656d))
	res.Converged = -1
	t.Logf("scenario %s run %d (%s mode): seed %d; replay with TANDEM_CHAOS_SEED=%d TANDEM_CHAOS=full go test -tags e2e -count=1 -run 'TestChaos/%s/' -v ./e2e/",
		sc.name, res.Run, mode, res.Seed, res.Seed, sc.name)
	if x.sc.skip != nil {
		if why := x.sc.skip(); why != "" {
			res.Note = why
			t.Skip(why)
		}
	}
	// Registered first, so it runs last: after `lab down`.
	t.Cleanup(func() {
		for i := len(x.afterLab) - 1; i >= 0; i-- {
			x.afterLab[i]()
		}
	})
	x.l = upCluster(t, clusterOpts{failover: sc.failover, mode: mode, synchronized: true})
	if x.auto() {
		x.l.waitEligible("a", "b")
		x.logf("lab %s assembled (%s, automatic failover: a holds the leader key, b eligible)", x.l.name, mode)
	} else {
		x.logf("lab %s assembled (%s)", x.l.name, mode)
	}
	// Registered after the lab, so it runs before `lab down`.
	t.Cleanup(x.keepLab)
	if x.sc.prepare != nil {
		x.sc.prepare(x)
	}
	x.w = x.l.startWitness()
	// Registered after the witness's directory, so it runs before that goes.
	t.Cleanup(x.keepWitness)
	x.logf("witness running: writer through %s, sampler every 50ms, cluster IP sampler", x.l.env.DNSName)
	x.sc.run(x)
	x.converge(chaosBound)
	// The cluster takes writes through its name again (and the witness's
	// longest gap spans the whole outage).
	x.waitAckedGrowth(20, 30*time.Second, "writes acknowledged through the cluster name after convergence")
	x.finishWitness()
	x.replicasAgree()
	if x.sc.after != nil {
		x.sc.after(x)
	}
}

// logf logs a step with the time since the run started.
func (x *chaosRun) logf(format string, args ...any) {
	x.t.Helper()
	x.t.Logf("[t+%6.1fs] %s", time.Since(x.start).Seconds(), fmt.Sprintf(format, args...))
}

// between is a random duration in [lo, hi].
func (x *chaosRun) between(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(x.rng.Int64N(int64(hi-lo)+1))
}

// pause waits a random time in [lo, hi], saying why.
func (x *chaosRun) pause(lo, hi time.Duration, why string) {
	x.t.Helper()
	d := x.between(lo, hi).Round(10 * time.Millisecond)
	x.logf("wait %s: %s", d, why)
	time.Sleep(d)
}

// sleepUntil waits until the deadline (a fault's planned end).
func (x *chaosRun) sleepUntil(at time.Time) {
	if d := time.Until(at); d > 0 {
		time.Sleep(d)
	}
}

// lab runs a `tandem lab` fault command on this run's lab.
func (x *chaosRun) lab(verb string, args ...string) {
	x.t.Helper()
	switch verb {
	case "heal", "power-on", "resume":
		x.markHealed()
	}
	out := x.l.labCommand(verb, args...)
	x.logf("lab %s %s: %s", verb, strings.Join(args, " "), firstLine(out))
}

// markHealed notes that a healing step begins now.
func (x *chaosRun) markHealed() { x.healed = time.Now() }

// failover runs `tandem failover --yes` on the client and expects it to
// succeed; it returns the console's stdout and stderr (the warnings). In
// automatic mode the operator types nothing: it waits for the secondary to
// promote by itself, within 30 s, and returns nothing.
func (x *chaosRun) failover() (string, string) {
	x.t.Helper()
	start := time.Now()
	if x.auto() {
		var to string
		eventually(x.t, "the secondary promotes by itself (automatic failover)", 30*time.Second, func() (bool, string) {
			s, err := x.l.statusErr()
			if err != nil {
				return false, err.Error()
			}
			for _, n := range s.Nodes {
				if n.Reachable && n.Role == "primary" && n.Name == "b" { // every scenario fails a over to b
					to = n.Name
					return true, ""
				}
			}
			return false, s.String()
		})
		x.logf("automatic failover: %s primary by itself %s after the operator would have typed", to, time.Since(start).Round(time.Millisecond))
		return "", ""
	}
	out, errOut, code := x.l.console("failover", "--yes")
	if code != 0 {
		x.t.Fatalf("tandem failover: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	x.logf("tandem failover done in %s: %s", time.Since(start).Round(time.Millisecond), firstLine(out))
	return out, errOut
}

// expectFailoverRefused runs `tandem failover --yes` while the primary is
// still alive in some way: it must be refused (exit 5) and change
// nothing. It returns the console's stderr.
func (x *chaosRun) expectFailoverRefused(why string) string {
	x.t.Helper()
	out, errOut, code := x.l.console("failover", "--yes")
	if code == 0 {
		x.t.Fatalf("ONE WRITER: tandem failover was accepted while %s:\n%s\n%s", why, out, errOut)
	}
	if code != 5 {
		x.t.Errorf("tandem failover while %s: exit %d, want 5 (refused)\nstdout:\n%s\nstderr:\n%s", why, code, out, errOut)
	}
	x.logf("tandem failover refused (%s): %s", why, lastLine(errOut))
	return errOut
}

// lastLine is the last line of a console's stderr that is not `lab
// exec`'s own note about the exit status.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(lines[i]); l != "" && !strings.HasPrefix(l, "tandem: the command on ") {
			return l
		}
	}
	return ""
}

// waitWritesOn waits until the cluster DNS name reaches a read-write
// PostgreSQL and node holds the cluster IP.
func (x *chaosRun) waitWritesOn(node string, limit time.Duration) {
	x.t.Helper()
	took := x.l.waitWrites(node, limit)
	x.logf("%s accepts writes through %s (%s)", node, x.l.env.DNSName, took.Round(10*time.Millisecond))
}

// waitAckedGrowth waits until the witness has n more acknowledged writes
// than it had when called, and returns how long that took.
func (x *chaosRun) waitAckedGrowth(n int, limit time.Duration, what string) time.Duration {
	x.t.Helper()
	base := x.w.acked()
	d := eventually(x.t, what, limit, func() (bool, string) {
		return x.w.acked() >= base+n, fmt.Sprintf("%d more acknowledged writes of %d; %s", x.w.acked()-base, n, x.w.summary())
	})
	x.logf("%s: %d more acknowledged writes within %s", what, n, d.Round(10*time.Millisecond))
	return d
}

// converge waits, within limit, for one primary (x.wantPrimary when set)
// holding the cluster IP alone, the other node streaming from it, and the
// console's status not degraded and (except in async mode) synchronized.
func (x *chaosRun) converge(limit time.Duration) {
	x.t.Helper()
	start := time.Now()
	if !x.healed.IsZero() {
		start = x.healed
	}
	var why string
	eventually(x.t, fmt.Sprintf("CONVERGENCE: the cluster converges within %s after healing", limit), limit-time.Since(start), func() (bool, string) {
		ok, w := x.convergedNow()
		if !ok && w != why {
			x.logf("not converged yet: %s", w)
			why = w
		}
		return ok, w
	})
	took := time.Since(start)
	x.res.Converged = took.Seconds()
	x.logf("converged %s after the last healing step: %s primary, term %d", took.Round(10*time.Millisecond), x.wantPrimaryOr(), x.termNow())
	x.healed = time.Time{}
}

func (x *chaosRun) wantPrimaryOr() string {
	if x.wantPrimary == "" {
		return "a node"
	}
	return x.wantPrimary
}

func (x *chaosRun) termNow() int64 {
	if s, err := x.l.statusErr(); err == nil && s.Cluster != nil {
		return s.Cluster.Term
	}
	return 0
}

func (x *chaosRun) convergedNow() (bool, string) {
	s, err := x.l.statusErr()
	if err != nil {
		return false, err.Error()
	}
	if s.Cluster == nil {
		return false, "the console's status has no cluster"
	}
	var primary, secondary *labNode
	for i := range s.Nodes {
		n := &s.Nodes[i]
		if !n.Reachable {
			return false, fmt.Sprintf("%s does not answer (%s)", n.Name, n.Error)
		}
		switch n.Role {
		case "primary":
			if primary != nil {
				return false, "two nodes say they are primary"
			}
			primary = n
		case "secondary":
			secondary = n
		default:
			return false, fmt.Sprintf("%s is %s (operation %q)", n.Name, n.Role, n.Operation)
		}
	}
	if primary == nil || secondary == nil {
		return false, fmt.Sprintf("no primary/secondary pair among %d nodes", len(s.Nodes))
	}
	if x.wantPrimary != "" && primary.Name != x.wantPrimary {
		return false, fmt.Sprintf("%s is primary, want %s", primary.Name, x.wantPrimary)
	}
	if primary.Operation != "" || secondary.Operation != "" {
		return false, fmt.Sprintf("operation in flight: %s %q, %s %q", primary.Name, primary.Operation, secondary.Name, secondary.Operation)
	}
	if primary.Postgres.State != "running" || secondary.Postgres.State != "running" {
		return false, fmt.Sprintf("PostgreSQL %s on %s, %s on %s", primary.Postgres.State, primary.Name, secondary.Postgres.State, secondary.Name)
	}
	if r := primary.Replication; r == nil || r.State != "streaming" {
		st := "unknown"
		if r != nil {
			st = r.State
		}
		return false, fmt.Sprintf("%s is %s, not streaming from %s", secondary.Name, st, primary.Name)
	}
	if s.Cluster.Degraded {
		return false, "the cluster is degraded"
	}
	if x.mode != "async" && !s.Cluster.Synchronized {
		return false, "the cluster is not synchronized"
	}
	if x.wantTerm != 0 && s.Cluster.Term != x.wantTerm {
		return false, fmt.Sprintf("term %d, want %d (a change of primary that should not have happened)", s.Cluster.Term, x.wantTerm)
	}
	if !x.l.holdsClusterIP(primary.Name) || x.l.holdsClusterIP(secondary.Name) {
		return false, fmt.Sprintf("cluster IP held by %s %v, %s %v", primary.Name, x.l.holdsClusterIP(primary.Name), secondary.Name, x.l.holdsClusterIP(secondary.Name))
	}
	if x.auto() {
		// The quorum whole again: the primary holds the key and the
		// secondary would fail over by itself.
		q, err := x.l.quorumOf(secondary.Name)
		if err != nil || q == nil {
			return false, "the secondary's quorum view: " + errText(err)
		}
		if q.Holder != primary.Name || !q.Eligible {
			return false, secondary.Name + "'s quorum: " + describeQuorum(q)
		}
		for _, m := range q.Members {
			if !m.Healthy {
				return false, secondary.Name + "'s quorum: " + describeQuorum(q)
			}
		}
	}
	x.wantPrimary = primary.Name
	return true, ""
}

// auto says whether this run is in automatic failover mode.
func (x *chaosRun) auto() bool { return strings.HasPrefix(x.sc.failover, "automatic") }

// chaosAll is the scenario table with the automatic variants: every
// scenario that is not manual-only once more as NAME-auto, then the
// automatic-only scenarios.
func chaosAll() []chaosScenario {
	all := append([]chaosScenario(nil), chaosScenarios...)
	for _, sc := range chaosScenarios {
		if sc.manualOnly != "" {
			continue
		}
		v := sc
		v.name, v.failover, v.ci = sc.name+"-auto", "automatic", sc.ciAuto
		if sc.autoRun != nil {
			v.run = sc.autoRun
		}
		if sc.autoAfter != nil {
			v.after = sc.autoAfter
		}
		all = append(all, v)
	}
	return append(all, chaosAutoScenarios...)
}

// finishWitness stops the witness, which checks the invariants (witness.stop),
// and counts the violations again for the summary.
func (x *chaosRun) finishWitness() {
	x.t.Helper()
	noLoss := x.mode != "async"
	gap := x.w.stop(noLoss)
	x.witnessDone = true
	x.res.LongestGap = gap.Seconds()

	// The same checks, counted, for the results table.
	if f, err := os.Open(filepath.Join(x.w.dir, "samples.jsonl")); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var s struct {
				Writable []string `json:"writable"`
			}
			if json.Unmarshal(sc.Bytes(), &s) == nil && len(s.Writable) > 1 {
				x.res.TwoWriters++
			}
		}
		f.Close()
	}
	for _, h := range x.w.vipSamples {
		if len(h) > 1 {
			x.res.TwoHolders++
		}
	}
	var acked []int64
	unknown, failed := 0, 0
	for _, pw := range x.w.writes() {
		switch pw.Outcome {
		case "ok":
			acked = append(acked, pw.ID)
		case "unknown":
			unknown++
		default:
			failed++
		}
	}
	x.res.Acked = len(acked)
	have, err := x.l.sql(x.l.env.DNSName, "SELECT string_agg(id::text, ',') FROM probe_writes")
	if err != nil {
		x.t.Errorf("reading the witness's rows back: %v", err)
	} else {
		present := map[int64]bool{}
		for _, f := range strings.Split(have, ",") {
			if id, err := strconv.ParseInt(f, 10, 64); err == nil {
				present[id] = true
			}
		}
		for _, id := range acked {
			if !present[id] {
				x.res.LostAcked++
			}
		}
	}
	x.res.Violations = x.res.TwoWriters + x.res.TwoHolders
	if noLoss {
		x.res.Violations += x.res.LostAcked
	}
	x.logf("witness: %d acknowledged, %d failed, %d unknown; lost acknowledged %d; two-writer samples %d, two-holder samples %d; longest gap %s",
		len(acked), failed, unknown, x.res.LostAcked, x.res.TwoWriters, x.res.TwoHolders, gap.Round(time.Millisecond))
}

// replicasAgree checks that the secondary, once it replayed, holds exactly
// the witness rows the primary holds: nothing left of a discarded
// timeline, nothing missing.
func (x *chaosRun) replicasAgree() {
	x.t.Helper()
	primary := x.wantPrimary
	secondary := other(primary)
	const q = "SELECT count(*) || ' rows, id sum ' || coalesce(sum(id), 0) FROM probe_writes"
	want, err := x.l.sql(primary, q)
	if err != nil {
		x.t.Fatalf("reading the witness rows on the primary %s: %v", primary, err)
	}
	eventually(x.t, fmt.Sprintf("REPLICAS: the secondary %s holds what the primary %s holds (%s)", secondary, primary, want), 60*time.Second, func() (bool, string) {
		got, err := x.l.sql(secondary, q)
		if err != nil {
			return false, err.Error()
		}
		return got == want, "the secondary has " + got
	})
	x.logf("the secondary %s holds what the primary %s holds: %s", secondary, primary, want)
}

// eventsHave checks that `tandem events` lists each of the words.
func (x *chaosRun) eventsHave(words ...string) {
	x.t.Helper()
	ev, errOut, code := x.l.console("events")
	if code != 0 {
		x.t.Errorf("tandem events: exit %d\n%s", code, errOut)
		return
	}
	for _, w := range words {
		if !strings.Contains(ev, w) {
			x.t.Errorf("tandem events lack %q:\n%s", w, ev)
		}
	}
}

// keepDir is where this run's history goes when it failed.
func (x *chaosRun) keepDir() string {
	if x.keep == "" {
		x.keep = filepath.Join(chaosKeepRoot(), fmt.Sprintf("%s-run%d-%d", x.sc.name, x.res.Run, x.seed))
		if err := os.MkdirAll(x.keep, 0o755); err != nil {
			x.t.Logf("cannot keep the history in %s: %v", x.keep, err)
		}
		x.res.Kept = x.keep
	}
	return x.keep
}

// keepWitness saves the witness's records of a failed run (stopping the
// witness first if the run failed before it did).
func (x *chaosRun) keepWitness() {
	if !x.witnessDone {
		x.w.halt()
		x.witnessDone = true
	}
	if !x.t.Failed() {
		return
	}
	dir := x.keepDir()
	for _, f := range []string{"writes.jsonl", "samples.jsonl"} {
		copyFile(filepath.Join(x.w.dir, f), filepath.Join(dir, f))
	}
	if f, err := os.Create(filepath.Join(dir, "vip-samples.jsonl")); err == nil {
		enc := json.NewEncoder(f)
		for _, h := range x.w.vipSamples {
			_ = enc.Encode(h)
		}
		f.Close()
	}
}

// keepLab saves a failed run's logs, the console's view and the data
// directories, before the lab goes down.
func (x *chaosRun) keepLab() {
	if !x.t.Failed() {
		return
	}
	dir := x.keepDir()
	lab := filepath.Join(labBase, x.l.name)
	for _, f := range []string{"a/tandemd.log", "b/tandemd.log", "w/tandemd.log", "a/tandemd.yaml", "b/tandemd.yaml",
		"a/state/state.json", "b/state/state.json", "dnsmasq.log", "faults.json", "layout.json"} {
		copyFile(filepath.Join(lab, f), filepath.Join(dir, strings.ReplaceAll(f, "/", "-")))
	}
	for name, args := range map[string][]string{
		"status.txt":  {"status"},
		"status.json": {"status", "-o", "json"},
		"events.txt":  {"events"},
	} {
		out, errOut, code := x.l.console(args...)
		_ = os.WriteFile(filepath.Join(dir, name), []byte(fmt.Sprintf("%s\n--- stderr (exit %d)\n%s", out, code, errOut)), 0o644)
	}
	if os.Getenv("TANDEM_CHAOS_KEEP_DATA") != "0" {
		for _, node := range []string{"a", "b"} {
			if out, err := exec.Command("cp", "-a", filepath.Join(lab, node, "pgdata"), filepath.Join(dir, node+"-pgdata")).CombinedOutput(); err != nil {
				x.t.Logf("copying %s's data directory: %v %s", node, err, out)
			}
		}
	}
	x.t.Logf("THE HISTORY OF THIS FAILED RUN IS KEPT IN %s (writes.jsonl, samples.jsonl, vip-samples.jsonl, tandemd logs, status, events, data directories)", dir)
}

func copyFile(from, to string) {
	b, err := os.ReadFile(from)
	if err != nil {
		return
	}
	_ = os.WriteFile(to, b, 0o644)
}

// chaosSummary logs a table of every run and, with TANDEM_CHAOS_RESULTS,
// appends each run as a JSON line to that file.
func chaosSummary(t *testing.T, results []*chaosResult) {
	if len(results) == 0 {
		return
	}
	type row struct {
		runs, pass, fail, skip, violations, lost int
		conv                                     []float64
		notes                                    []string
	}
	rows := map[string]*row{}
	var order []string
	for _, r := range results {
		w := rows[r.Scenario]
		if w == nil {
			w = &row{}
			rows[r.Scenario] = w
			order = append(order, r.Scenario)
		}
		w.runs++
		switch r.Outcome {
		case "pass":
			w.pass++
		case "skip":
			w.skip++
		default:
			w.fail++
		}
		w.violations += r.Violations
		w.lost += r.LostAcked
		if r.Converged >= 0 && r.Outcome != "skip" {
			w.conv = append(w.conv, r.Converged)
		}
		if r.Note != "" && !slices.Contains(w.notes, r.Note) {
			w.notes = append(w.notes, r.Note)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n| scenario | runs | pass | fail | skip | violations | acked writes lost | longest convergence |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, name := range order {
		w := rows[name]
		conv := "-"
		if len(w.conv) > 0 {
			conv = fmt.Sprintf("%.1f s", slices.Max(w.conv))
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %d | %d | %d | %s |\n", name, w.runs, w.pass, w.fail, w.skip, w.violations, w.lost, conv)
	}
	for _, name := range order {
		for _, n := range rows[name].notes {
			fmt.Fprintf(&b, "%s: %s\n", name, n)
		}
	}
	for _, r := range results {
		fmt.Fprintf(&b, "run %s #%d seed %d: %s, %.0fs%s\n", r.Scenario, r.Run, r.Seed, r.Outcome, r.Took, map[bool]string{true: ", kept in " + r.Kept, false: ""}[r.Kept != ""])
	}
	t.Logf("fault suite summary:%s", b.String())
	if p := os.Getenv("TANDEM_CHAOS_RESULTS"); p != "" {
		f, err := os.OpenFile(p, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			t.Errorf("TANDEM_CHAOS_RESULTS: %v", err)
			return
		}
		defer f.Close()
		enc := json.NewEncoder(f)
		for _, r := range results {
			_ = enc.Encode(r)
		}
	}
}
