//go:build e2e

package e2e

// The fixture's console: `tandem` run on the lab's client host, as an
// operator runs it, with the test's own cache; what its status and events
// say; the assembly of a and b.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// console runs the console on the client host within a minute:
// consoleWith without extra environment.
func (l *testLab) console(args ...string) (stdout, stderr string, code int) {
	return l.consoleWith(nil, time.Minute, args...)
}

// consoleWith runs the tandem console on the client host with the test's
// cache dir, extra environment and a time limit; it returns stdout, stderr
// and the exit status (-1 when it did not exit by itself).
func (l *testLab) consoleWith(env []string, timeout time.Duration, args ...string) (string, string, int) {
	argv := append([]string{"lab", "exec", "--name", l.name, "client", "--", filepath.Join(l.bin, "tandem")}, args...)
	out, errOut, err := l.tandem(append([]string{"TANDEM_CACHE_DIR=" + l.cache}, env...), timeout, argv...)
	return out, errOut, exitCode(err)
}

// consolePiped is consoleWith with stdin an empty pipe instead of the
// harness's /dev/null: another kind of "not a terminal".
func (l *testLab) consolePiped(env []string, timeout time.Duration, args ...string) (string, string, int) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	argv := append([]string{"lab", "exec", "--name", l.name, "client", "--", filepath.Join(l.bin, "tandem")}, args...)
	cmd := exec.CommandContext(ctx, filepath.Join(l.bin, "tandem"), argv...)
	cmd.Env = append(cleanEnv(), append([]string{"TANDEM_CACHE_DIR=" + l.cache}, env...)...)
	cmd.Stdin = strings.NewReader("")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), exitCode(err)
}

// consoleOK is consoleWith, failing the test unless the command exits 0.
func (l *testLab) consoleOK(env []string, timeout time.Duration, args ...string) string {
	l.t.Helper()
	out, errOut, code := l.consoleWith(env, timeout, args...)
	if code != 0 {
		l.t.Fatalf("tandem %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// assembleEnv gives the console both nodes' tokens for an assembly.
func (l *testLab) assembleEnv() []string {
	env := []string{"TANDEM_PRIMARY_TOKEN=" + l.env.token("a"), "TANDEM_SECONDARY_TOKEN=" + l.env.token("b")}
	if w := l.env.Witness; w != nil {
		env = append(env, "TANDEM_WITNESS_TOKEN="+w.Token)
	}
	return env
}

// assembleArgs is `tandem assemble` for primary a and secondary b with the
// lab's cluster IP and DNS name, plus extra.
func (l *testLab) assembleArgs(extra ...string) []string {
	return append([]string{"assemble", "--trust-new",
		"--primary", l.fqdn("a"), "--secondary", l.fqdn("b"),
		"--cluster-ip", l.env.ClusterPrefix, "--dns-name", l.env.DNSName}, extra...)
}

// assemble assembles a (primary) and b (secondary) in mode ("" = the
// default) with the console on the client, and fails the test unless the
// console says it did. It does not wait for anything more (see
// waitStreaming).
func (l *testLab) assemble(mode string) {
	l.t.Helper()
	extra := []string{"--yes"}
	if mode != "" {
		extra = append(extra, "--replication", mode)
	}
	// A lab built with the witness is assembled for automatic failover.
	if w := l.env.Witness; w != nil {
		extra = append(extra, "--failover", "automatic", "--witness", w.FQDN)
	}
	// One built with the external etcd, for automatic failover with it.
	if e := l.env.Etcd; e != nil {
		extra = append(extra, "--failover", "automatic", "--etcd", strings.Join(e.Endpoints, ","))
	}
	start := time.Now()
	out := l.consoleOK(l.assembleEnv(), 5*time.Minute, l.assembleArgs(extra...)...)
	l.t.Logf("assembled in %s:\n%s", time.Since(start).Round(10*time.Millisecond), out)
}

// waitStreaming waits until a, the primary, sees b streaming.
func (l *testLab) waitStreaming(what string, timeout time.Duration) {
	l.t.Helper()
	l.waitStatus("b streams from a "+what, timeout, func(st labStatus) bool {
		a, b := st.node("a"), st.node("b")
		return a != nil && b != nil && a.Role == "primary" && b.Role == "secondary" &&
			a.Replication != nil && a.Replication.State == "streaming" &&
			b.Replication != nil && b.Replication.ReceiverStatus == "streaming"
	})
}

// labStatus is the part of `tandem status -o json` the tests read,
// decoded by the names an operator's scripts read rather than with the
// console's own types: the tests look at the product from outside.
type labStatus struct {
	Cluster *struct {
		Name         string `json:"name"`
		State        string `json:"state"`
		Term         int64  `json:"term"`
		Primary      string `json:"primary"`
		ClusterIP    string `json:"cluster_ip"`
		DNSName      string `json:"dns_name"`
		Replication  string `json:"replication"`
		Synchronized bool   `json:"synchronized"`
		Degraded     bool   `json:"degraded"`
	} `json:"cluster"`
	Nodes    []labNode `json:"nodes"`
	Warnings []string  `json:"warnings"`
}

// labNode is one node of `tandem status -o json`.
type labNode struct {
	Name      string `json:"name"`
	IP        string `json:"ip"`
	Address   string `json:"address"`
	Reachable bool   `json:"reachable"`
	Error     string `json:"error"`
	Role      string `json:"role"`
	Term      int64  `json:"term"`
	Cluster   string `json:"cluster"`
	Operation string `json:"operation"`
	Postgres  struct {
		State      string `json:"state"`
		PID        int    `json:"pid"`
		InRecovery bool   `json:"in_recovery"`
		VersionNum int    `json:"version_num"`
		Restarts   int    `json:"restarts"`
	} `json:"postgres"`
	Replication *struct {
		State          string `json:"state"`
		SyncState      string `json:"sync_state"`
		LagBytes       int64  `json:"lag_bytes"`
		Slot           string `json:"slot"`
		SlotWALStatus  string `json:"slot_wal_status"`
		RetainedBytes  int64  `json:"wal_retained_bytes"`
		ReceiverStatus string `json:"receiver_status"`
	} `json:"replication"`
	ClusterIP *struct {
		Address string `json:"address"`
		Held    bool   `json:"held"`
	} `json:"cluster_ip"`
}

func (s labStatus) node(name string) *labNode {
	for i := range s.Nodes {
		if s.Nodes[i].Name == name {
			return &s.Nodes[i]
		}
	}
	return nil
}

// roles maps node → role, or "unreachable" for a node that did not answer.
func (s labStatus) roles() map[string]string {
	out := map[string]string{}
	for _, n := range s.Nodes {
		out[n.Name] = n.Role
		if !n.Reachable {
			out[n.Name] = "unreachable"
		}
	}
	return out
}

// primaries lists the nodes that say they are primary.
func (s labStatus) primaries() []string {
	var out []string
	for _, n := range s.Nodes {
		if n.Reachable && n.Role == "primary" {
			out = append(out, n.Name)
		}
	}
	return out
}

// streaming reports whether a primary sees its secondary streaming.
func (s labStatus) streaming() bool {
	for _, n := range s.Nodes {
		if n.Role == "primary" && n.Replication != nil && n.Replication.State == "streaming" {
			return true
		}
	}
	return false
}

// String is a one-line summary for failure messages.
func (s labStatus) String() string {
	var b strings.Builder
	if c := s.Cluster; c != nil {
		fmt.Fprintf(&b, "cluster %s state=%s term=%d primary=%s mode=%s synchronized=%v degraded=%v;", c.Name, c.State, c.Term, c.Primary, c.Replication, c.Synchronized, c.Degraded)
	} else {
		b.WriteString("no cluster;")
	}
	for _, n := range s.Nodes {
		fmt.Fprintf(&b, " %s: reachable=%v role=%s term=%d pg=%s recovery=%v op=%q", n.Name, n.Reachable, n.Role, n.Term, n.Postgres.State, n.Postgres.InRecovery, n.Operation)
		if n.Error != "" {
			fmt.Fprintf(&b, " error=%q", n.Error)
		}
		if r := n.Replication; r != nil {
			fmt.Fprintf(&b, " repl=%s sync=%s lag=%d slot=%s/%s retained=%d receiver=%s", r.State, r.SyncState, r.LagBytes, r.Slot, r.SlotWALStatus, r.RetainedBytes, r.ReceiverStatus)
		}
		if c := n.ClusterIP; c != nil {
			fmt.Fprintf(&b, " cluster_ip_held=%v", c.Held)
		}
		b.WriteString(";")
	}
	return b.String()
}

// statusErr is `tandem status -o json` of the cluster the console knows.
func (l *testLab) statusErr() (labStatus, error) {
	out, errOut, code := l.consoleWith(nil, 40*time.Second, "status", "-o", "json")
	var st labStatus
	if code != 0 {
		return st, fmt.Errorf("tandem status: exit %d: %s%s", code, out, errOut)
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return st, fmt.Errorf("tandem status -o json printed no JSON (%v): %s", err, out)
	}
	return st, nil
}

func (l *testLab) status() labStatus {
	l.t.Helper()
	st, err := l.statusErr()
	if err != nil {
		l.t.Fatal(err)
	}
	return st
}

// waitStatus waits until the console's status satisfies cond and returns
// that status; a failure shows the last status seen.
func (l *testLab) waitStatus(what string, timeout time.Duration, cond func(labStatus) bool) labStatus {
	l.t.Helper()
	var st labStatus
	eventually(l.t, what, timeout, func() (bool, string) {
		var err error
		if st, err = l.statusErr(); err != nil {
			return false, err.Error()
		}
		return cond(st), st.String()
	})
	return st
}

// nodeStatusErr is `tandem status --endpoint NODE -o json` with the node's
// own token: that node as it sees itself. A node that does not answer is
// an error.
func (l *testLab) nodeStatusErr(node string) (labNode, error) {
	out, errOut, code := l.consoleWith([]string{"TANDEM_TOKEN=" + l.env.token(node)}, 40*time.Second,
		"status", "--endpoint", l.fqdn(node), "-o", "json", "--trust-new")
	var st labStatus
	if code != 0 {
		return labNode{}, fmt.Errorf("tandem status --endpoint %s: exit %d: %s%s", l.fqdn(node), code, out, errOut)
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return labNode{}, fmt.Errorf("tandem status --endpoint %s -o json: not the expected JSON (%v): %s", l.fqdn(node), err, out)
	}
	n := st.node(node)
	if n == nil {
		return labNode{}, fmt.Errorf("tandem status --endpoint %s -o json lists no node %s: %s", l.fqdn(node), node, out)
	}
	if !n.Reachable {
		return *n, fmt.Errorf("%s does not answer (%s)", node, n.Error)
	}
	return *n, nil
}

func (l *testLab) nodeStatus(node string) labNode {
	l.t.Helper()
	n, err := l.nodeStatusErr(node)
	if err != nil {
		l.t.Fatal(err)
	}
	return n
}

// role is what node says it is, or "unreachable" when it does not answer.
func (l *testLab) role(node string) string {
	n, err := l.nodeStatusErr(node)
	if err != nil {
		return "unreachable"
	}
	return n.Role
}

// primary is the one node the console's status shows as primary; it
// fails the test when there is not exactly one.
func (l *testLab) primary() string {
	l.t.Helper()
	st := l.status()
	p := st.primaries()
	if len(p) != 1 {
		l.t.Fatalf("want one primary, the console's status shows %v: %s", p, st)
	}
	return p[0]
}

// clusterEvent is one line of `tandem events -o json`.
type clusterEvent struct {
	At      time.Time `json:"at"`
	Kind    string    `json:"kind"`
	Node    string    `json:"node"`
	Term    int64     `json:"term"`
	Message string    `json:"message"`
}

// eventsErr lists the cluster's events; with a node name, that node's copy
// through --endpoint and its token (for a cluster the console forgot).
func (l *testLab) eventsErr(endpoint string) ([]clusterEvent, error) {
	args := []string{"events", "-o", "json", "--limit", "1000"}
	var env []string
	if endpoint != "" {
		args = append(args, "--endpoint", l.fqdn(endpoint))
		env = []string{"TANDEM_TOKEN=" + l.env.token(endpoint)}
	}
	out, errOut, code := l.consoleWith(env, 40*time.Second, args...)
	if code != 0 {
		return nil, fmt.Errorf("tandem events: exit %d: %s%s", code, out, errOut)
	}
	var res struct {
		Events []clusterEvent `json:"events"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		return nil, fmt.Errorf("tandem events -o json printed no JSON (%v): %s", err, out)
	}
	return res.Events, nil
}

func (l *testLab) events() []clusterEvent {
	l.t.Helper()
	ev, err := l.eventsErr("")
	if err != nil {
		l.t.Fatal(err)
	}
	return ev
}

func eventKinds(ev []clusterEvent) []string {
	var out []string
	for _, e := range ev {
		out = append(out, e.Kind)
	}
	return out
}

func countEvents(ev []clusterEvent, kind string) int {
	n := 0
	for _, e := range ev {
		if e.Kind == kind {
			n++
		}
	}
	return n
}

// waitEvent waits until the cluster's events hold kind, and returns them.
func (l *testLab) waitEvent(kind string, timeout time.Duration) []clusterEvent {
	l.t.Helper()
	var ev []clusterEvent
	eventually(l.t, "event "+kind, timeout, func() (bool, string) {
		var err error
		ev, err = l.eventsErr("")
		if err != nil {
			return false, err.Error()
		}
		return slices.Contains(eventKinds(ev), kind), fmt.Sprint(eventKinds(ev))
	})
	return ev
}
