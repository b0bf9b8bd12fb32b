//go:build e2e

package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// witness runs the writer and the sampler (labprobe) on the client while a
// test injects faults, and samples the cluster-IP holders from here.
type witness struct {
	l               *testLab
	dir             string
	writer, sampler *exec.Cmd
	vipStop         chan struct{}
	vipDone         chan struct{}
	vipSamples      [][]string
	halted          sync.Once
	stopped         bool
}

func (l *testLab) startWitness() *witness {
	l.t.Helper()
	w := &witness{l: l, dir: l.t.TempDir(), vipStop: make(chan struct{}), vipDone: make(chan struct{})}
	probe := filepath.Join(l.bin, "labprobe")
	dsn := fmt.Sprintf("host=%s user=postgres password=%s dbname=postgres connect_timeout=1", l.env.DNSName, l.env.Postgres.Password)
	// Ids unique across witnesses in one lab (the benchmark runs several).
	start := strconv.FormatInt(time.Now().UnixMicro(), 10)
	w.writer = l.startIn("client", nil, probe, "-mode", "write", "-dsn", dsn, "-start", start, "-connect-timeout", "200ms", "-out", filepath.Join(w.dir, "writes.jsonl"))
	var nodes []string
	for _, n := range l.env.Nodes {
		nodes = append(nodes, n.Name+"="+n.IP)
	}
	w.sampler = l.startIn("client", nil, probe, "-mode", "sample", "-every", "50ms", "-nodes", strings.Join(nodes, ","), "-password", l.env.Postgres.Password, "-out", filepath.Join(w.dir, "samples.jsonl"))
	var names, namespaces []string
	for _, n := range l.env.Nodes {
		names, namespaces = append(names, n.Name), append(namespaces, l.netnsOf(n.Name))
	}
	go func() {
		defer close(w.vipDone)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-w.vipStop:
				return
			case <-t.C:
			}
			w.vipSamples = append(w.vipSamples, clusterIPHoldersNow(names, namespaces, l.env.ClusterIP))
		}
	}()
	// A test that ends before it stopped the witness leaves no writer
	// behind for the next, and still hears of two writers.
	l.t.Cleanup(func() {
		if w.stopped {
			return
		}
		w.halt()
		l.t.Logf("witness: the test ended before it stopped the witness; checking its samples for two writers and two cluster-IP holders")
		w.checkOneWriter()
	})
	// Let the writer get going.
	eventually(l.t, "the writer's first acknowledged write", 20*time.Second, func() (bool, string) {
		return w.acked() > 0, w.summary()
	})
	return w
}

type probeWrite struct {
	ID      int64  `json:"id"`
	Start   int64  `json:"start"`
	End     int64  `json:"end"`
	Outcome string `json:"outcome"`
	Error   string `json:"error"`
}

func (w *witness) writes() []probeWrite {
	var out []probeWrite
	f, err := os.Open(filepath.Join(w.dir, "writes.jsonl"))
	if err != nil {
		return nil
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var pw probeWrite
		if json.Unmarshal(sc.Bytes(), &pw) == nil {
			out = append(out, pw)
		}
	}
	return out
}

func (w *witness) acked() int {
	n := 0
	for _, pw := range w.writes() {
		if pw.Outcome == "ok" {
			n++
		}
	}
	return n
}

// summary counts the writes by outcome and names the last failure, for
// failure messages.
func (w *witness) summary() string {
	counts := map[string]int{}
	last := ""
	for _, pw := range w.writes() {
		counts[pw.Outcome]++
		if pw.Outcome != "ok" {
			last = pw.Error
		}
	}
	return fmt.Sprintf("writes by outcome %v; last error %q", counts, last)
}

// halt ends the writer and the samplers without checking anything; once.
func (w *witness) halt() {
	w.halted.Do(func() {
		for _, cmd := range []*exec.Cmd{w.writer, w.sampler} {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			_ = cmd.Wait()
		}
		close(w.vipStop)
		<-w.vipDone
	})
}

// probeSample is one look of the sampler at every node.
type probeSample struct {
	At       int64    `json:"at"`
	Writable []string `json:"writable"`
}

func (w *witness) samples() []probeSample {
	var out []probeSample
	f, err := os.Open(filepath.Join(w.dir, "samples.jsonl"))
	if err != nil {
		return nil
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var s probeSample
		if json.Unmarshal(sc.Bytes(), &s) == nil {
			out = append(out, s)
		}
	}
	return out
}

// checkOneWriter fails the test for every sample that saw two nodes
// accepting writes or two cluster-IP holders, and returns how many
// samples of writable nodes there are.
func (w *witness) checkOneWriter() int {
	l := w.l
	l.t.Helper()
	ss := w.samples()
	two := 0
	for _, s := range ss {
		if len(s.Writable) > 1 {
			if two++; two <= 10 {
				l.t.Errorf("INVARIANT: two nodes accepted writes at %s: %v", time.Unix(0, s.At).Format(time.RFC3339Nano), s.Writable)
			}
		}
	}
	if two > 10 {
		l.t.Errorf("INVARIANT: %d samples of %d saw two nodes accepting writes", two, len(ss))
	}
	holders := 0
	for i, h := range w.vipSamples {
		if len(h) > 1 {
			if holders++; holders <= 10 {
				l.t.Errorf("INVARIANT: two cluster-IP holders at sample %d: %v", i, h)
			}
		}
	}
	if holders > 10 {
		l.t.Errorf("INVARIANT: %d samples of %d saw two cluster-IP holders", holders, len(w.vipSamples))
	}
	if len(ss) == 0 || len(w.vipSamples) == 0 {
		l.t.Errorf("the witness recorded no samples")
	}
	return len(ss)
}

// stop ends the witness and checks the invariants: never two nodes
// accepting writes, never two cluster-IP holders, and (when noLoss) every
// acknowledged write present on the primary afterwards. It returns the
// longest gap between acknowledged writes.
func (w *witness) stop(noLoss bool) time.Duration {
	l := w.l
	l.t.Helper()
	w.stopped = true
	w.halt()
	if _, err := os.Stat(filepath.Join(w.dir, "samples.jsonl")); err != nil {
		l.t.Fatal(err)
	}
	samples := w.checkOneWriter()

	ws := w.writes()
	var ok []int64
	var gaps []time.Duration
	var last int64
	for _, pw := range ws {
		if pw.Outcome != "ok" {
			continue
		}
		ok = append(ok, pw.ID)
		if last != 0 {
			gaps = append(gaps, time.Duration(pw.End-last))
		}
		last = pw.End
	}
	if len(ok) == 0 {
		l.t.Fatalf("no acknowledged writes")
	}
	if noLoss {
		var have string
		eventually(l.t, "the primary to answer through the cluster name", 30*time.Second, func() (bool, string) {
			var err error
			have, err = l.sql(l.env.DNSName, "SELECT string_agg(id::text, ',') FROM probe_writes")
			if err != nil {
				return false, err.Error()
			}
			return true, ""
		})
		present := map[int64]bool{}
		for _, f := range strings.Split(have, ",") {
			if id, err := strconv.ParseInt(f, 10, 64); err == nil {
				present[id] = true
			}
		}
		missing := 0
		for _, id := range ok {
			if !present[id] {
				missing++
				if missing <= 10 {
					l.t.Errorf("INVARIANT: acknowledged write %d is missing", id)
				}
			}
		}
		if missing > 0 {
			l.t.Errorf("INVARIANT: %d of %d acknowledged writes missing", missing, len(ok))
		}
	}
	// What the failed writes met, and when the longest gap was: a reader
	// of a slow run starts here.
	errs := map[string]int{}
	var gapStart, gapEnd int64
	last = 0
	for _, pw := range ws {
		if pw.Outcome != "ok" {
			msg := pw.Error
			if len(msg) > 90 {
				msg = msg[:90]
			}
			errs[pw.Outcome+": "+msg]++
			continue
		}
		if last != 0 && pw.End-last > gapEnd-gapStart {
			gapStart, gapEnd = last, pw.End
		}
		last = pw.End
	}
	for msg, n := range errs {
		l.t.Logf("witness: %d× %s", n, msg)
	}
	if gapEnd > 0 {
		l.t.Logf("witness: longest gap from %s to %s", time.Unix(0, gapStart).Format("15:04:05.000"), time.Unix(0, gapEnd).Format("15:04:05.000"))
	}
	sort.Slice(gaps, func(i, j int) bool { return gaps[i] > gaps[j] })
	var maxGap time.Duration
	if len(gaps) > 0 {
		maxGap = gaps[0]
	}
	l.t.Logf("witness: %d writes (%d acknowledged), %d samples, longest gap between acknowledged writes %s", len(ws), len(ok), samples, maxGap)
	return maxGap
}
