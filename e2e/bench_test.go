//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tandem-ha/tandem/internal/api"
)

// TestBenchmark measures what DESIGN.md sets targets for and prints a
// table of medians (min, max) over repeated runs, with the machine named.
// It asserts nothing about speed: run it with scripts/bench.sh and read
// the table. It runs only with TANDEM_BENCH=1.
//
//	TANDEM_BENCH_RUNS      runs of each short measurement (default 5)
//	TANDEM_BENCH_DB_MB     database size for rejoin, clone and catch-up (default 1024)
//	TANDEM_BENCH_BIG_RUNS  runs of the rejoin and clone measurements (default 3)
//	TANDEM_BENCH_PGBENCH_MINUTES  minutes of pgbench at full speed on a healthy
//	                       automatic-mode cluster, counting fences and failovers (default 0: off)
//	TANDEM_BENCH_ONLY=automatic   only the automatic failover mode's rows
//	TANDEM_BENCH_ONLY=switchover  only the switchover rows
//	TANDEM_BENCH_ONLY=dns         only the DNS endpoint's rows (cross-subnet lab)
func TestBenchmark(t *testing.T) {
	needRoot(t)
	if os.Getenv("TANDEM_BENCH") != "1" {
		t.Skip("the benchmark runs only with TANDEM_BENCH=1 (scripts/bench.sh)")
	}
	runs := envInt("TANDEM_BENCH_RUNS", 5)
	switchovers := envInt("TANDEM_BENCH_SWITCHOVERS", 20)
	bigRuns := envInt("TANDEM_BENCH_BIG_RUNS", 3)
	dbMB := envInt("TANDEM_BENCH_DB_MB", 1024)
	var rows []benchRow
	if os.Getenv("TANDEM_BENCH_ONLY") == "automatic" {
		rows = append(rows, benchAutomatic(t, runs)...)
		fmt.Printf("\n%s\n%s", machine(), table(rows))
		return
	}
	if os.Getenv("TANDEM_BENCH_ONLY") == "dns" {
		rows = append(rows, benchDNSEndpoint(t, switchovers, runs)...)
		fmt.Printf("\n%s\n%s", machine(), table(rows))
		return
	}

	// Switchover and failover outages, status latency, memory and CPU, in
	// one lab with a writer running.
	c := upCluster(t, clusterOpts{mode: "sync", synchronized: true})
	var sw, fo, stUp, stDown, syncAfter []float64
	for i := 0; i < switchovers; i++ {
		to := other(c.primary())
		w := c.startWitness()
		time.Sleep(time.Second)
		typed := time.Now()
		out, errOut, code := c.console("switchover", "--yes", "-o", "json")
		if code != 0 {
			t.Fatalf("switchover: exit %d\n%s\n%s", code, out, errOut)
		}
		syncAfter = append(syncAfter, ms(c.untilSynchronized(to, 30*time.Second)))
		time.Sleep(time.Second)
		gap := w.stop(true)
		sw = append(sw, ms(gap))
		if os.Getenv("TANDEM_BENCH_TRACE") == "1" {
			w.traceGap(t, typed, out)
		}
		c.waitStatus("synchronized again", 60*time.Second, func(s labStatus) bool {
			return s.Cluster != nil && s.Cluster.Synchronized
		})
	}
	rows = append(rows, summarize("switchover: longest gap between acknowledged writes through the cluster IP", "ms", sw, "≤ 300 ms median"))
	rows = append(rows, summarize("switchover (sync mode): `tandem switchover` returns → the new primary's record says synchronized", "ms", syncAfter, "≤ 300 ms"))
	if os.Getenv("TANDEM_BENCH_ONLY") == "switchover" {
		fmt.Printf("\n%s\n%s", machine(), table(rows))
		return
	}

	// A reload of tandemd on the primary (what a package upgrade does):
	// the writer's longest gap over the reload, beside the same over an
	// idle window as long just before it.
	var rl, rlIdle []float64
	for i := 0; i < runs; i++ {
		p := c.primary()
		w := c.startWitness()
		idleFrom := time.Now()
		time.Sleep(2 * time.Second)
		from := time.Now()
		c.labReload(p)
		to := time.Now()
		time.Sleep(time.Second)
		w.stop(true)
		gap, _ := w.longestAckGap(from, to)
		idle, _ := w.longestAckGap(idleFrom, idleFrom.Add(to.Sub(from)))
		rl, rlIdle = append(rl, ms(gap)), append(rlIdle, ms(idle))
	}
	rows = append(rows, summarize("reload of tandemd on the primary: longest write gap", "ms", rl, "no gap: the idle value"))
	rows = append(rows, summarize("the same over an idle window as long, just before", "ms", rlIdle, "—"))

	for i := 0; i < runs; i++ {
		stUp = append(stUp, ms(c.timeStatus()))
	}
	rss, cpu := c.idleFootprint("a", 30*time.Second)
	rows = append(rows, summarize("console `status`, both nodes up", "ms", stUp, "—"))
	rows = append(rows, benchRow{what: "tandemd resident memory (primary, idle)", unit: "MiB", med: rss, min: rss, p95: rss, max: rss, n: 1, target: "≤ 30 MiB"})
	rows = append(rows, benchRow{what: "tandemd CPU over 30 s idle (primary)", unit: "% of a core", med: cpu, min: cpu, p95: cpu, max: cpu, n: 1, target: "≤ 0.5 %"})

	var foTyped, foTypedWrite []float64
	for i := 0; i < runs; i++ {
		primary := c.primary()
		secondary := other(primary)
		w := c.startWitness()
		time.Sleep(time.Second)
		c.powerOff(primary)
		time.Sleep(3 * time.Second)
		stDown = append(stDown, ms(c.timeStatus()))
		// From the moment the operator's command starts (the console's
		// checks included) to its return, and to the first write
		// acknowledged through the cluster IP after that moment.
		typed := time.Now()
		out, errOut, code := c.console("failover", "--yes", "-o", "json")
		foTyped = append(foTyped, ms(time.Since(typed)))
		if code != 0 {
			t.Fatalf("failover: exit %d\n%s\n%s", code, out, errOut)
		}
		var fout struct {
			Confirmed time.Time `json:"confirmed_at"`
		}
		if err := json.Unmarshal([]byte(out), &fout); err != nil {
			t.Fatalf("failover -o json: %v\n%s", err, out)
		}
		eventually(t, "writes on the new primary", 30*time.Second, func() (bool, string) {
			return w.firstAckAfter(fout.Confirmed) > 0, w.summary()
		})
		fo = append(fo, ms(w.firstAckAfter(fout.Confirmed)))
		foTypedWrite = append(foTypedWrite, ms(w.firstAckAfter(typed)))
		c.powerOn(primary)
		c.waitStatus("the old primary rejoined", 120*time.Second, func(s labStatus) bool {
			r := s.roles()
			return r[primary] == "secondary" && r[secondary] == "primary" && s.Cluster != nil && s.Cluster.Synchronized
		})
		w.stop(true)
	}
	rows = append(rows, summarize("manual failover, primary powered off: typed command → command returns", "ms", foTyped, "≤ 1.5 s"))
	rows = append(rows, summarize("manual failover, primary powered off: typed command → first acknowledged write through the cluster IP", "ms", foTypedWrite, "≤ 1 s"))
	rows = append(rows, summarize("manual failover: confirmed console command → first acknowledged write", "ms", fo, "≤ 500 ms"))
	rows = append(rows, summarize("console `status`, primary powered off", "ms", stDown, "—"))

	// Streaming after a partition between the nodes heals, from the start
	// of `lab heal` to the console's status showing the secondary streaming
	// (what the operator sees); the partition lasts past
	// wal_receiver_timeout, so the receiver reconnects into the cut.
	var resume []float64
	for i := 0; i < runs; i++ {
		resume = append(resume, ms(c.partitionAndHeal(12*time.Second)))
		c.waitStatus("synchronized again after the heal", 60*time.Second, func(s labStatus) bool {
			return s.Cluster != nil && s.Cluster.Synchronized
		})
	}
	rows = append(rows, summarize("streaming resumes after a partition between the nodes heals (12 s partitions): start of `lab heal` → `tandem status` shows streaming", "ms", resume, "≤ 2 s"))

	c.Down()

	rows = append(rows, benchAutomatic(t, runs)...)

	if bigRuns == 0 {
		fmt.Printf("\n%s\n%s", machine(), table(rows))
		return
	}
	// Rejoin, clone and catch-up on a database of dbMB.
	big := upCluster(t, clusterOpts{mode: "async", synchronized: true})
	big.fill(dbMB)
	var rewind, clone, catchup []float64
	for i := 0; i < bigRuns; i++ {
		primary := big.primary()
		big.powerOff(primary)
		time.Sleep(3 * time.Second)
		if out, errOut, code := big.console("failover", "--yes"); code != 0 {
			t.Fatalf("failover: exit %d\n%s\n%s", code, out, errOut)
		}
		big.psqlLong(big.env.DNSName, "UPDATE bench_fill SET v = v WHERE id % 100 = 0")
		start := time.Now()
		big.powerOn(primary)
		big.waitStatus("rejoined", 10*time.Minute, func(s labStatus) bool { return s.roles()[primary] == "secondary" && s.streaming() })
		rewind = append(rewind, ms(time.Since(start)))
	}
	for i := 0; i < bigRuns; i++ {
		primary := big.primary()
		big.powerOff(primary)
		time.Sleep(3 * time.Second)
		if out, errOut, code := big.console("failover", "--yes"); code != 0 {
			t.Fatalf("failover: exit %d\n%s\n%s", code, out, errOut)
		}
		// Rewind made impossible: a fresh clone is the only way back.
		_ = os.Remove(filepath.Join(big.nodeDir(primary), "pgdata", "global", "pg_control"))
		start := time.Now()
		big.powerOn(primary)
		big.waitStatus("rejoined by clone", 20*time.Minute, func(s labStatus) bool { return s.roles()[primary] == "secondary" && s.streaming() })
		clone = append(clone, ms(time.Since(start)))
	}
	for i := 0; i < bigRuns; i++ {
		secondary := other(big.primary())
		big.stopTandemd(secondary)
		big.fillMore(dbMB)
		start := time.Now()
		big.startTandemd(secondary)
		big.waitStatus("caught up", 20*time.Minute, func(s labStatus) bool {
			for _, n := range s.Nodes {
				if n.Role == "primary" && n.Replication != nil && n.Replication.State == "streaming" && n.Replication.LagBytes == 0 {
					return true
				}
			}
			return false
		})
		secs := time.Since(start).Seconds()
		catchup = append(catchup, float64(dbMB)/secs)
	}
	rows = append(rows, summarize(fmt.Sprintf("former primary back as streaming secondary after failover (pg_rewind), %d MiB database", dbMB), "ms", rewind, "≤ 10 s, no full copy"))
	rows = append(rows, summarize(fmt.Sprintf("the same by full clone (rewind impossible), %d MiB database", dbMB), "ms", clone, "—"))
	rows = append(rows, summarize(fmt.Sprintf("catch-up after the secondary was away during %d MiB of writes", dbMB), "MiB/s", catchup, "—"))

	fmt.Printf("\n%s\n%s", machine(), table(rows))
}

type benchRow struct {
	what, unit, target string
	med, min, p95, max float64
	n                  int
}

func summarize(what, unit string, xs []float64, target string) benchRow {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	r := benchRow{what: what, unit: unit, target: target, n: len(s)}
	if len(s) > 0 {
		r.min, r.max = s[0], s[len(s)-1]
		// Nearest rank: the smallest value at or above 95 % of the runs.
		r.p95 = s[(95*len(s)+99)/100-1]
		if len(s)%2 == 1 {
			r.med = s[len(s)/2]
		} else {
			r.med = (s[len(s)/2-1] + s[len(s)/2]) / 2
		}
	}
	return r
}

func table(rows []benchRow) string {
	var b strings.Builder
	b.WriteString("| what | median | 95th percentile | worst | best | runs | target |\n| --- | --- | --- | --- | --- | --- | --- |\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %.1f %s | %.1f | %.1f | %.1f | %d | %s |\n", r.what, r.med, r.unit, r.p95, r.max, r.min, r.n, r.target)
	}
	return b.String()
}

func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				model = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		mem = strings.Fields(strings.SplitN(string(b), "\n", 2)[0])[1] + " kB"
	}
	kernel, _ := exec.Command("uname", "-r").Output()
	pg, _ := exec.Command("/usr/lib/postgresql/15/bin/postgres", "--version").Output()
	return fmt.Sprintf("machine: %s, %d cores, %s RAM, Linux %s, %s, %s, %s",
		model, runtime.NumCPU(), mem, strings.TrimSpace(string(kernel)), strings.TrimSpace(string(pg)), runtime.Version(), time.Now().UTC().Format("2006-01-02"))
}

func envInt(k string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(k)); err == nil && v >= 0 {
		return v
	}
	return def
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// firstAckAfter is how long after t the first acknowledged write ended.
func (w *witness) firstAckAfter(t time.Time) time.Duration {
	for _, pw := range w.writes() {
		if pw.Outcome == "ok" && pw.Start >= t.UnixNano() {
			return time.Duration(pw.End - t.UnixNano())
		}
	}
	return 0
}

// timeStatus is how long `tandem status` takes.
func (c *testLab) timeStatus() time.Duration {
	start := time.Now()
	c.console("status")
	return time.Since(start)
}

// idleFootprint reads tandemd's resident memory and its CPU use over d.
func (c *testLab) idleFootprint(node string, d time.Duration) (rssMiB, cpuPct float64) {
	pid := c.tandemdPid(node)
	ticks := func() float64 {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		u, _ := strconv.ParseFloat(f[11], 64)
		k, _ := strconv.ParseFloat(f[12], 64)
		return u + k
	}
	t0 := ticks()
	time.Sleep(d)
	cpuPct = (ticks() - t0) / 100 / d.Seconds() * 100 // USER_HZ is 100 on Linux
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			kb, _ := strconv.ParseFloat(strings.Fields(l)[1], 64)
			rssMiB = kb / 1024
		}
	}
	return rssMiB, cpuPct
}

// fill makes a table of about mb MiB on the primary.
func (c *testLab) fill(mb int) {
	c.t.Helper()
	rows := mb * 1024 * 1024 / 1100
	c.psqlLong(c.env.DNSName, fmt.Sprintf("CREATE TABLE bench_fill AS SELECT g AS id, repeat('x', 1000) AS v FROM generate_series(1, %d) g; ALTER TABLE bench_fill ADD PRIMARY KEY (id)", rows))
}

// fillMore writes about mb MiB more.
func (c *testLab) fillMore(mb int) {
	c.t.Helper()
	rows := mb * 1024 * 1024 / 1100
	c.psqlLong(c.env.DNSName, fmt.Sprintf("INSERT INTO bench_fill SELECT g + (SELECT max(id) FROM bench_fill), repeat('y', 1000) FROM generate_series(1, %d) g", rows))
}

// psqlLong runs SQL that may take many minutes (bulk loads).
func (c *testLab) psqlLong(host, sql string) {
	c.t.Helper()
	out, errOut, err := c.tandem(nil, 60*time.Minute, "lab", "exec", "--name", c.name, "client", "--",
		"psql", fmt.Sprintf("host=%s user=postgres password=%s connect_timeout=3", host, c.env.Postgres.Password), "-v", "ON_ERROR_STOP=1", "-Atc", sql)
	if err != nil {
		c.t.Fatalf("psql: %v\n%s\n%s", err, out, errOut)
	}
}

// benchAutomatic measures automatic failover mode (docs/quorum.md) in a
// lab with the witness host w: tandemd's and the witness's resident
// memory after a minute of writes, optionally N minutes of pgbench with no
// fence and no failover, then primary power-off → first acknowledged
// write through the cluster IP, runs times.
func benchAutomatic(t *testing.T, runs int) []benchRow {
	var rows []benchRow
	c := upCluster(t, clusterOpts{failover: "automatic", mode: "sync", synchronized: true})
	c.waitEligible("a", "b")

	w := c.startWitness()
	time.Sleep(time.Minute)
	rssPrimary := rssMiB(c.tandemdPid(c.primary()))
	rssWitness := rssMiB(c.witnessPid(t))
	w.stop(true)
	rows = append(rows, one("tandemd resident memory with an embedded etcd member (primary, automatic mode, after a minute of writes)", "MiB", rssPrimary, "≤ 64 MiB"))
	rows = append(rows, one("the witness's resident memory (tandem-witness on w, same minute)", "MiB", rssWitness, "≤ 40 MiB"))

	// The same after a restart, as a witness is most of its life: etcd
	// reopens its data file then (before tandem cleared etcd's
	// MAP_POPULATE this added 16 MiB; internal/quorum/populate_linux.go).
	c.restartTandemd("w")
	time.Sleep(30 * time.Second)
	c.waitEligible("a", "b")
	rows = append(rows, one("the witness's resident memory 30 s after a restart", "MiB", rssMiB(c.witnessPid(t)), "≤ 40 MiB"))

	if minutes := envInt("TANDEM_BENCH_PGBENCH_MINUTES", 0); minutes > 0 {
		fences, failovers := c.pgbenchHealthy(minutes)
		rows = append(rows, one(fmt.Sprintf("fences during %d minutes of pgbench at full speed through the cluster IP (healthy cluster)", minutes), "", float64(fences), "0"))
		rows = append(rows, one(fmt.Sprintf("failovers during the same %d minutes", minutes), "", float64(failovers), "0"))
	}

	af := c.autoFailovers(runs, nil)
	rows = append(rows, summarize("automatic failover, primary powered off → first acknowledged write through the cluster IP", "ms", af, "≤ 3 s median"))

	// The same with the etcd leader on the primary when it loses power
	// (the bench knob of crashhook builds: the primary pulls the etcd
	// leadership to itself instead of keeping it off): the other two
	// members must first elect a leader, which also extends every lease.
	onPrimary := []string{"TANDEMD_ETCD_LEADER_ON_PRIMARY=1"}
	for _, n := range []string{"a", "b"} {
		c.restartTandemd(n, onPrimary...)
		c.waitReady(n, 60*time.Second)
	}
	lf := c.autoFailovers(runs, onPrimary)
	rows = append(rows, summarize("the same with the etcd leader on the primary at the power-off (forced: tandem keeps it off the primary)", "ms", lf, "— (the worst case the placement avoids)"))
	c.Down()

	// The external shape: the lab's etcd on e1-e3 instead of the witness.
	e := upCluster(t, clusterOpts{failover: "automatic-etcd", mode: "sync", synchronized: true})
	defer e.Down()
	ef := e.autoFailovers(runs, nil)
	rows = append(rows, summarize("automatic failover on an external etcd (Debian's etcd 3.4 on e1-e3), primary powered off → first acknowledged write", "ms", ef, "≤ 3 s median"))
	return rows
}

// autoFailovers powers the primary off runs times and returns, for each,
// the time from the power-off to the first write acknowledged by the new
// primary through the cluster IP; the old primary is powered on again
// (with env) and rejoins between runs. With env holding the bench knob
// TANDEMD_ETCD_LEADER_ON_PRIMARY, each power-off waits until the primary's
// member leads etcd.
func (c *testLab) autoFailovers(runs int, env []string) []float64 {
	var af []float64
	for i := 0; i < runs; i++ {
		primary := c.primary()
		secondary := other(primary)
		c.waitEligible(primary, secondary)
		if slices.Contains(env, "TANDEMD_ETCD_LEADER_ON_PRIMARY=1") {
			eventually(c.t, "the etcd leader on the primary "+primary, 20*time.Second, func() (bool, string) {
				q, err := c.quorumOf(primary)
				if err != nil || q == nil {
					return false, errText(err)
				}
				for _, m := range q.Members {
					if m.Name == primary && m.EtcdLeader {
						return true, ""
					}
				}
				return false, describeQuorum(q)
			})
		}
		w := c.startWitness()
		time.Sleep(time.Second)
		off := time.Now()
		c.powerOff(primary)
		// The first write acknowledged after the pause the power-off
		// caused (a write started just after the power-off may still have
		// been acknowledged by the old primary before its processes died).
		c.waitStatus(secondary+" primary by itself", 30*time.Second, func(s labStatus) bool { return s.roles()[secondary] == "primary" })
		c.waitWrites(secondary, 20*time.Second)
		time.Sleep(500 * time.Millisecond)
		gap, at := w.longestAckGap(off.Add(-time.Second), time.Now())
		af = append(af, ms(at.Add(gap).Sub(off)))
		c.powerOn(primary, env...)
		c.waitStatus("the old primary back as the synchronous standby", 120*time.Second, func(s labStatus) bool {
			r := s.roles()
			return r[primary] == "secondary" && r[secondary] == "primary" && s.Cluster != nil && s.Cluster.Synchronized
		})
		c.waitEligible(secondary, primary)
		w.stop(true)
	}
	return af
}

// untilSynchronized polls primary's own cluster record every 10 ms until it
// says synchronized, and returns how long that took.
func (c *testLab) untilSynchronized(primary string, limit time.Duration) time.Duration {
	c.t.Helper()
	start := time.Now()
	for time.Since(start) < limit {
		var v api.ClusterView
		if err := c.call(c.env, c.env.nodeIP(primary), primary, http.MethodGet, "/v1/cluster", nil, &v, time.Second); err == nil && v.Record != nil && v.Record.Primary == primary && v.Record.Synchronized {
			return time.Since(start)
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.t.Fatalf("%s's record not synchronized within %s of the switchover", primary, limit)
	return 0
}

// one is a row of a single measurement.
func one(what, unit string, v float64, target string) benchRow {
	return benchRow{what: what, unit: unit, med: v, min: v, p95: v, max: v, n: 1, target: target}
}

// rssMiB is a process's resident memory (VmRSS), as idleFootprint reads it.
// witnessPid is the witness's process on w, which must be the witness's
// own program (what the package installs and the lab runs), not
// `tandemd --witness`: the row is about that program.
func (c *testLab) witnessPid(t *testing.T) int {
	t.Helper()
	pid := c.tandemdPid("w")
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil || filepath.Base(exe) != "tandem-witness" {
		t.Fatalf("the witness on w runs %q (%v), not tandem-witness: build it beside tandemd", exe, err)
	}
	return pid
}

func rssMiB(pid int) float64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			kb, _ := strconv.ParseFloat(strings.Fields(l)[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// pgbenchHealthy runs pgbench (8 clients, no pause) through the cluster
// DNS name for minutes on a healthy cluster and returns the fences (both
// nodes' logs) and the failovers (term changes, automatic failovers
// started) it caused, which must be 0: it fails the test otherwise.
func (c *testLab) pgbenchHealthy(minutes int) (fences, failovers int) {
	t := c.t
	pgbench := findPgbench(t)
	dsn := fmt.Sprintf("host=%s user=postgres password=%s dbname=postgres connect_timeout=2", c.env.DNSName, c.env.Postgres.Password)
	if out, errOut, err := c.execErr("client", nil, pgbench, "-i", "-q", "-s", "10", dsn); err != nil {
		t.Fatalf("pgbench -i: %v\n%s\n%s", err, out, errOut)
	}
	before := map[string]int{"a": c.fenceLines("a"), "b": c.fenceLines("b")}
	term := c.status().Cluster.Term
	started := countEvents(c.events(), "automatic_failover_started")
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(minutes)*time.Minute+5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", c.netnsOf("client"), pgbench, "-n", "-c", "8", "-j", "2", "-T", strconv.Itoa(minutes*60), "-P", "60", dsn)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	t.Logf("pgbench for %d minutes (%v):\n%s", minutes, err, tail(out.String(), 20))
	if err != nil {
		t.Errorf("pgbench through %s on a healthy cluster failed: %v", c.env.DNSName, err)
	}
	fences = c.fenceLines("a") - before["a"] + c.fenceLines("b") - before["b"]
	s := c.status()
	if s.Cluster != nil && s.Cluster.Term != term {
		failovers += int(s.Cluster.Term - term)
	}
	if n := countEvents(c.events(), "automatic_failover_started") - started; n > failovers {
		failovers = n
	}
	if fences != 0 || failovers != 0 {
		t.Errorf("during %d minutes of pgbench on a healthy cluster: %d fences, %d failovers; want none", minutes, fences, failovers)
	}
	return fences, failovers
}

// fenceLines counts the self-fences in node's tandemd log (the lines
// noFence looks for).
func (c *testLab) fenceLines(node string) int {
	b, err := os.ReadFile(filepath.Join(c.nodeDir(node), "tandemd.log"))
	if err != nil {
		c.t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, "FENCE:") || strings.Contains(line, "fencing:") {
			n++
		}
	}
	return n
}

// traceGap logs, for TANDEM_BENCH_TRACE=1, what the writer saw over the
// longest gap after typed (each attempt: start and end relative to the
// gap's start, outcome, error) and the switchover's own steps (its -o json
// output): where a switchover's write gap goes.
func (w *witness) traceGap(t *testing.T, typed time.Time, switchoverJSON string) {
	t.Helper()
	gap, began := w.longestAckGap(typed, time.Now())
	g0 := began.UnixNano()
	t.Logf("trace: gap %s began %s after the command was typed", gap.Round(100*time.Microsecond), began.Sub(typed).Round(100*time.Microsecond))
	for _, pw := range w.writes() {
		if pw.End < g0 || pw.Start > g0+int64(gap) {
			continue
		}
		t.Logf("trace:   %+8.1f … %+8.1f ms  %-7s %s", float64(pw.Start-g0)/1e6, float64(pw.End-g0)/1e6, pw.Outcome, pw.Error)
	}
	t.Logf("trace: switchover %s", switchoverJSON)
}

// benchDNSEndpoint measures the write gap of a cluster whose endpoint is
// its DNS name (the cross-subnet lab, `--endpoint dns`), through a writer
// that connects to the name: switchovers, and failovers after a power-off
// (typed command → first acknowledged write). The writer asks the lab's
// BIND, which is authoritative: no resolver cache, so the TTL (5 s) is not
// in these numbers; behind a caching resolver a client may wait up to it
// more.
func benchDNSEndpoint(t *testing.T, switchovers, runs int) []benchRow {
	c := upLabFlags(t, "--cross-subnet")
	c.cache = filepath.Join(labBase, c.name, "console")
	defer c.Down()
	c.waitStatus("synchronized after assembly", time.Minute, func(s labStatus) bool { return s.Cluster != nil && s.Cluster.Synchronized })
	var sw, fo []float64
	for i := 0; i < switchovers; i++ {
		w := c.startWitness()
		time.Sleep(time.Second)
		from := time.Now()
		if out, errOut, code := c.console("switchover", "--yes"); code != 0 {
			t.Fatalf("switchover: exit %d\n%s\n%s", code, out, errOut)
		}
		time.Sleep(2 * time.Second)
		gap, _ := w.longestAckGap(from, time.Now())
		w.stop(true)
		sw = append(sw, ms(gap))
		c.waitStatus("synchronized again", time.Minute, func(s labStatus) bool { return s.Cluster != nil && s.Cluster.Synchronized })
	}
	for i := 0; i < runs; i++ {
		w := c.startWitness()
		time.Sleep(time.Second)
		primary := c.primary()
		c.powerOff(primary)
		time.Sleep(3 * time.Second)
		typed := time.Now()
		if out, errOut, code := c.console("failover", "--yes"); code != 0 {
			t.Fatalf("failover: exit %d\n%s\n%s", code, out, errOut)
		}
		eventually(t, "a write after the failover", 30*time.Second, func() (bool, string) { return w.firstAckAfter(typed) > 0, w.summary() })
		fo = append(fo, ms(w.firstAckAfter(typed)))
		w.stop(true)
		c.powerOn(primary)
		c.waitStatus("rejoined", 2*time.Minute, func(s labStatus) bool {
			return s.roles()[primary] == "secondary" && s.Cluster != nil && s.Cluster.Synchronized
		})
	}
	return []benchRow{
		summarize("switchover, DNS endpoint (cross-subnet lab): longest gap between acknowledged writes through the name", "ms", sw, "—"),
		summarize("manual failover, DNS endpoint, primary powered off: typed command → first acknowledged write through the name", "ms", fo, "—"),
	}
}
