//go:build e2e

package e2e

// Helpers of TestDeploy (deploy_test.go): reading docs/deploy.md's marked
// blocks, relocating a node's paths into its root directory, and running
// blocks on lab hosts. The conventions are explained in deploy_test.go.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// deployDoc is the document the test follows, relative to this package.
const deployDoc = "../docs/deploy.md"

// deployMark opens the marks in a fenced block's info string.
const deployMark = "{deploy-test"

// deployKeys are the words a mark may hold; anything else is a typo in the
// document, and fails the test rather than being ignored.
var deployKeys = map[string]bool{
	"vars": true, "zone": true, "on": true, "install": true, "start": true,
	"save": true, "answer": true, "id": true, "variant": true,
	"not": true, "step": true, "named": true, "copy": true,
}

// deployHosts are the lab hosts a block may run on: the nodes, the
// witness, the operator's machine and (step 13) the zone's primary DNS
// server.
var deployHosts = []string{"a", "b", "w", "client", "dns"}

// deployBlock is one fenced block of the document carrying a mark.
type deployBlock struct {
	line  int               // line of the opening fence
	step  int               // the step (## N. heading) it is in
	mark  string            // the mark as written, for messages
	attrs map[string]string // key → value ("" for a bare word)
	text  string            // the block's content
}

func (b deployBlock) has(k string) bool { _, ok := b.attrs[k]; return ok }

func (b deployBlock) on() []string {
	if v := b.attrs["on"]; v != "" {
		return strings.Split(v, ",")
	}
	return nil
}

// runsIn tells whether b is run in variant v: not when it is another
// variant's (variant=) or left out of v (not=).
func (b deployBlock) runsIn(v string) bool {
	if w := b.attrs["variant"]; w != "" && w != v {
		return false
	}
	return !slices.Contains(strings.Split(b.attrs["not"], ","), v)
}

// runStep is the step b runs within: step= for a block of step 13 that
// changes an earlier step, else the step it is written in.
func (b deployBlock) runStep() int {
	if v, ok := b.attrs["step"]; ok {
		n, _ := strconv.Atoi(v)
		return n
	}
	return b.step
}

// copySpec is copy=HOST:SRC:DST.
func (b deployBlock) copySpec() (host, src, dst string) {
	f := strings.SplitN(b.attrs["copy"], ":", 3)
	if len(f) != 3 {
		return "", "", ""
	}
	return f[0], f[1], f[2]
}

func (b deployBlock) String() string {
	return fmt.Sprintf("docs/deploy.md:%d %s", b.line, b.mark)
}

// parseDeployDoc returns the marked blocks of the document, in order.
func parseDeployDoc(t *testing.T, path string) []deployBlock {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("the deployment document: %v", err)
	}
	defer f.Close()
	var (
		blocks []deployBlock
		cur    *deployBlock
		body   []string
		inside bool
		n      int
		step   = -1
	)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		n++
		line := sc.Text()
		if m := deployStepRE.FindStringSubmatch(line); m != nil && !inside {
			step, _ = strconv.Atoi(m[1])
		}
		if !strings.HasPrefix(line, "```") {
			if inside && cur != nil {
				body = append(body, line)
			}
			continue
		}
		if inside { // a closing fence
			if strings.TrimSpace(line) != "```" {
				t.Fatalf("docs/deploy.md:%d: a fence inside a code block: %q", n, line)
			}
			if cur != nil {
				cur.text = strings.Join(body, "\n") + "\n"
				blocks = append(blocks, *cur)
			}
			inside, cur, body = false, nil, nil
			continue
		}
		inside = true
		info := strings.TrimPrefix(line, "```")
		i := strings.Index(info, deployMark)
		if i < 0 {
			continue
		}
		j := strings.Index(info[i:], "}")
		if j < 0 {
			t.Fatalf("docs/deploy.md:%d: a mark without its closing brace: %q", n, line)
		}
		mark := info[i : i+j+1]
		b := deployBlock{line: n, step: step, mark: mark, attrs: map[string]string{}}
		for _, w := range strings.Fields(strings.TrimSuffix(strings.TrimPrefix(mark, deployMark), "}")) {
			k, v, _ := strings.Cut(w, "=")
			if !deployKeys[k] {
				t.Fatalf("docs/deploy.md:%d: unknown word %q in the mark %s", n, k, mark)
			}
			b.attrs[k] = v
		}
		for _, h := range b.on() {
			if !slices.Contains(deployHosts, h) {
				t.Fatalf("%s: on=%s names no lab host %v", b, h, deployHosts)
			}
		}
		if !b.has("vars") && !b.has("zone") && !b.has("named") && len(b.on()) == 0 {
			t.Fatalf("%s: the mark says neither where to run the block (on=) nor what it is (vars, zone, named)", b)
		}
		if v, ok := b.attrs["step"]; ok {
			k, err := strconv.Atoi(v)
			if err != nil || k < 0 || k >= b.step || b.attrs["variant"] == "" {
				t.Fatalf("%s: step=%s must name an earlier step, in a block of one variant (variant=)", b, v)
			}
		}
		if b.has("copy") {
			h, src, dst := b.copySpec()
			if !slices.Contains(deployHosts, h) || !filepath.IsAbs(src) || !filepath.IsAbs(dst) || len(b.on()) == 0 {
				t.Fatalf("%s: copy= must be HOST:/SOURCE:/DESTINATION, on a block with on=", b)
			}
		}
		cur = &b
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if inside {
		t.Fatalf("docs/deploy.md: a code block is not closed")
	}
	if len(blocks) == 0 {
		t.Fatalf("docs/deploy.md has no block marked %s…}", deployMark)
	}
	return blocks
}

// deployStepRE is a step's heading: "## 8. Preflight and assembly".
var deployStepRE = regexp.MustCompile(`^## ([0-9]+)\. `)

var deployAssignRE = regexp.MustCompile(`^([A-Z_][A-Z0-9_]*)=(.*)$`)

// parseDeployVars reads the vars block: NAME=VALUE words, several to a
// line, comments after #. Values may refer to earlier ones ($A_IP).
// It returns the names in order and the values as the document gives them.
func parseDeployVars(t *testing.T, b deployBlock) ([]string, map[string]string) {
	t.Helper()
	var names []string
	vals := map[string]string{}
	for _, line := range strings.Split(b.text, "\n") {
		if i := strings.Index(line, "#"); i >= 0 {
			line = line[:i]
		}
		for _, w := range strings.Fields(line) {
			m := deployAssignRE.FindStringSubmatch(w)
			if m == nil {
				t.Fatalf("%s: %q is not NAME=VALUE", b, w)
			}
			v := strings.Trim(m[2], `'"`)
			v = os.Expand(v, func(k string) string { return vals[k] })
			if !slices.Contains(names, m[1]) {
				names = append(names, m[1])
			}
			if _, seen := vals[m[1]]; !seen { // node b's line repeats node a's names
				vals[m[1]] = v
			}
		}
	}
	return names, vals
}

// deployRecord is one record of the zone block, in the lab's terms.
type deployRecord struct {
	kind string // A, AAAA or PTR
	name string // fully qualified, no trailing dot
	ip   string
}

// parseDeployZone reads zone-file lines (owner [TTL] [class] type data,
// comments after ;) and maps every name and address through lab, which
// maps the document's example values to the lab's.
func parseDeployZone(t *testing.T, b deployBlock, lab map[string]string) []deployRecord {
	t.Helper()
	mapName := func(s string) string {
		k := strings.ToLower(strings.TrimSuffix(s, "."))
		v, ok := lab[k]
		if !ok {
			t.Fatalf("%s: the name %s is none of the names in the vars block", b, s)
		}
		return v
	}
	mapIP := func(a netip.Addr) string {
		v, ok := lab[a.String()]
		if !ok {
			t.Fatalf("%s: the address %s is none of the addresses in the vars block", b, a)
		}
		return v
	}
	var out []deployRecord
	for _, line := range strings.Split(b.text, "\n") {
		if i := strings.Index(line, ";"); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		i := 1
		for i < len(f) && (deployTTLRE.MatchString(f[i]) || slices.Contains([]string{"IN", "CH", "HS"}, strings.ToUpper(f[i]))) {
			i++
		}
		if len(f) != i+2 {
			t.Fatalf("%s: cannot read the zone line %q", b, line)
		}
		kind, data := strings.ToUpper(f[i]), f[i+1]
		switch kind {
		case "A", "AAAA":
			a, err := netip.ParseAddr(data)
			if err != nil || a.Is4() != (kind == "A") {
				t.Fatalf("%s: %q is no %s record's address", b, data, kind)
			}
			out = append(out, deployRecord{kind: kind, name: mapName(f[0]), ip: mapIP(a)})
		case "PTR":
			a, err := deployReverseAddr(f[0])
			if err != nil {
				t.Fatalf("%s: %v", b, err)
			}
			out = append(out, deployRecord{kind: kind, name: mapName(data), ip: mapIP(a)})
		default:
			t.Fatalf("%s: the test knows A, AAAA and PTR records, not %s", b, kind)
		}
	}
	return out
}

var deployTTLRE = regexp.MustCompile(`^[0-9]+[smhdwSMHDW]?$`)

// deployReverseAddr reads the address of an in-addr.arpa or ip6.arpa name.
func deployReverseAddr(name string) (netip.Addr, error) {
	n := strings.ToLower(strings.TrimSuffix(name, "."))
	if s, ok := strings.CutSuffix(n, ".in-addr.arpa"); ok {
		p := strings.Split(s, ".")
		slices.Reverse(p)
		return netip.ParseAddr(strings.Join(p, "."))
	}
	if s, ok := strings.CutSuffix(n, ".ip6.arpa"); ok {
		p := strings.Split(s, ".")
		if len(p) != 32 {
			return netip.Addr{}, fmt.Errorf("%s: an ip6.arpa name has 32 nibbles", name)
		}
		slices.Reverse(p)
		var b strings.Builder
		for i, x := range p {
			if i > 0 && i%4 == 0 {
				b.WriteByte(':')
			}
			b.WriteString(x)
		}
		return netip.ParseAddr(b.String())
	}
	return netip.Addr{}, fmt.Errorf("%s is no reverse (in-addr.arpa, ip6.arpa) name", name)
}

// deployNodePaths are where the package and PostgreSQL keep a node's files
// on a real host. In the test each node has a root directory and all of
// these live under it. Longest first, so /usr/bin/tandemd is not read as
// /usr/bin/tandem followed by "d".
var deployNodePaths = []string{
	"/lib/systemd/system/tandem-witness.service",
	"/lib/systemd/system/tandemd.service",
	"/usr/bin/tandem-witness",
	"/var/lib/tandem-witness",
	"/etc/postgresql-common",
	"/var/lib/postgresql",
	"/etc/nftables.conf",
	"/var/lib/bind",
	"/usr/bin/tandemd",
	"/usr/bin/tandem",
	"/var/lib/tandem",
	"/etc/postgresql",
	"/dev/watchdog",
	"/etc/bind",
	"/etc/tandem",
	"/run/tandem",
}

func deployPathChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("_.-/", c) >= 0
}

// relocateText puts root in front of every node path in text: where one
// of deployNodePaths starts a path (not inside another) and ends at a
// component boundary, so /etc/postgresql-common is not read as
// /etc/postgresql followed by "-common", and /var/lib/tandem-lab stays as
// it is.
func relocateText(root, text string) string {
	var b strings.Builder
	for i := 0; i < len(text); {
		hit := ""
		if i == 0 || !deployPathChar(text[i-1]) {
			for _, p := range deployNodePaths {
				end := i + len(p)
				if strings.HasPrefix(text[i:], p) && (end == len(text) || text[end] == '/' || !deployPathChar(text[end])) {
					hit = p
					break
				}
			}
		}
		if hit != "" {
			b.WriteString(root + hit)
			i += len(hit)
			continue
		}
		b.WriteByte(text[i])
		i++
	}
	return b.String()
}

// relocatePath is relocateText for one absolute path, which may already
// be under root (written into a file by a relocated block).
func relocatePath(root, p string) string {
	if p == root || strings.HasPrefix(p, root+"/") {
		return p
	}
	return relocateText(root, p)
}

// deployPassword is a random password of letters and digits.
func deployPassword(t *testing.T) string {
	t.Helper()
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// deployEnv renders an environment from a map, sorted.
func deployEnv(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// deployRun is one command run on a lab host.
type deployRun struct {
	host    string
	env     map[string]string // the whole environment
	argv    []string
	timeout time.Duration
	answer  string // typed when the command asks "[y/N]" (on a terminal)
}

// run runs r through `tandem lab exec` and returns stdout, stderr and the
// exit status (-1 when it could not run or timed out).
func (d *deployment) run(r deployRun) (string, string, int) {
	if r.timeout == 0 {
		r.timeout = 3 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	args := append([]string{"lab", "exec", "--name", d.lab.name, r.host, "--"}, r.argv...)
	cmd := exec.CommandContext(ctx, filepath.Join(d.lab.bin, "tandem"), args...)
	cmd.Env = deployEnv(r.env)
	cmd.Dir = "/" // the scripts cd where they run; others need no directory
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	var asked *answerer
	if r.answer != "" {
		in, err := cmd.StdinPipe()
		if err != nil {
			d.t.Fatal(err)
		}
		asked = &answerer{in: in, answer: r.answer, out: &stdout}
		cmd.Stdout = asked
	}
	err := cmd.Run()
	code := cmd.ProcessState.ExitCode()
	if err != nil && code <= 0 {
		fmt.Fprintf(&stderr, "\n(test: %v)", err)
		code = -1
	}
	if ctx.Err() != nil {
		fmt.Fprintf(&stderr, "\n(test: gave up after %s)", r.timeout)
		code = -1
	}
	out := stdout.String()
	if asked != nil {
		out = strings.ReplaceAll(out, "\r", "")
		if !asked.done {
			fmt.Fprintf(&stderr, "\n(test: the command never asked [y/N])")
			if code == 0 {
				code = -1
			}
		}
	}
	return out, stderr.String(), code
}

// answerer collects a terminal's output and types the answer once the
// question "[y/N]" shows.
type answerer struct {
	mu     sync.Mutex
	in     io.WriteCloser
	answer string
	out    *bytes.Buffer
	done   bool
}

func (a *answerer) Write(p []byte) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.out.Write(p)
	if !a.done && strings.Contains(a.out.String(), "[y/N]") {
		a.done = true
		_, _ = io.WriteString(a.in, a.answer+"\n")
	}
	return len(p), nil
}

// deployUnit is what the test reads from the packaged systemd unit.
type deployUnit struct {
	execStart []string
	env       map[string]string
	// stateDir and stateDirMode are StateDirectory= (relative to
	// /var/lib) and its mode, which systemd makes before the start.
	stateDir     string
	stateDirMode os.FileMode
	// protectSystem and readWrite: under ProtectSystem=strict only
	// ReadWritePaths= (and the StateDirectory=) may be written.
	protectSystem string
	readWrite     []string
}

// readDeployUnit reads ExecStart= and Environment= from the [Service]
// section, and refuses what it would have to interpret further.
func readDeployUnit(t *testing.T, path string) deployUnit {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the packaged unit: %v", err)
	}
	u := deployUnit{env: map[string]string{}, stateDirMode: 0o755}
	section := ""
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if strings.HasPrefix(line, "[") {
			section = line
			continue
		}
		if section != "[Service]" {
			continue
		}
		k, v, _ := strings.Cut(line, "=")
		switch k {
		case "ExecStart":
			if strings.ContainsAny(v, `"'$\%`) || strings.ContainsAny(v[:1], "-@+!:") {
				t.Fatalf("%s: ExecStart=%s needs more of systemd's syntax than the test reads; teach it", path, v)
			}
			u.execStart = strings.Fields(v)
		case "Environment":
			for _, kv := range strings.Fields(v) {
				ek, ev, ok := strings.Cut(kv, "=")
				if !ok || strings.ContainsAny(kv, `"'$\%`) {
					t.Fatalf("%s: Environment=%s needs more of systemd's syntax than the test reads; teach it", path, v)
				}
				u.env[ek] = ev
			}
		case "StateDirectory":
			if strings.ContainsAny(v, " /") {
				t.Fatalf("%s: StateDirectory=%s names more than one directory of /var/lib, which the test does not make; teach it", path, v)
			}
			u.stateDir = v
		case "StateDirectoryMode":
			m, err := strconv.ParseUint(v, 8, 32)
			if err != nil {
				t.Fatalf("%s: StateDirectoryMode=%s: %v", path, v, err)
			}
			u.stateDirMode = os.FileMode(m)
		case "ProtectSystem":
			u.protectSystem = v
		case "ReadWritePaths":
			u.readWrite = append(u.readWrite, strings.Fields(v)...)
		case "EnvironmentFile", "ExecStartPre", "ExecStartPost", "User", "Group", "WorkingDirectory", "RootDirectory":
			t.Fatalf("%s: the unit now has %s=, which the test does not do when it starts tandemd; teach it", path, k)
		}
	}
	if len(u.execStart) == 0 {
		t.Fatalf("%s: no ExecStart= in [Service]", path)
	}
	return u
}

// deployStatus is the part of `tandem status -o json` the test checks.
type deployStatus struct {
	Cluster *struct {
		Name            string `json:"name"`
		Term            int64  `json:"term"`
		Primary         string `json:"primary"`
		ClusterIP       string `json:"cluster_ip"`
		DNSName         string `json:"dns_name"`
		Replication     string `json:"replication"`
		Synchronized    bool   `json:"synchronized"`
		Degraded        bool   `json:"degraded"`
		RecordFrom      string `json:"record_from"`
		ClusterIPAnswer struct {
			Node string `json:"node"`
		} `json:"cluster_ip_answer"`
		DNSNameAnswer struct {
			Node string `json:"node"`
		} `json:"dns_name_answer"`
		// Endpoint and DNS: vip, or dns (step 13) with what the zone's
		// server and the console's resolver answer for the name.
		Endpoint string `json:"endpoint"`
		DNS      *struct {
			Resolver  []string `json:"resolver"`
			Authority []string `json:"authority"`
		} `json:"dns"`
	} `json:"cluster"`
	Nodes []struct {
		Name      string `json:"name"`
		Reachable bool   `json:"reachable"`
		Role      string `json:"role"`
		Postgres  struct {
			State      string `json:"state"`
			InRecovery bool   `json:"in_recovery"`
		} `json:"postgres"`
		Replication struct {
			State string `json:"state"`
		} `json:"replication"`
		ClusterIP struct {
			Held bool `json:"held"`
		} `json:"cluster_ip"`
		// Failover and Quorum: the node's failover mode and, in automatic
		// mode, its view of the quorum (step 12).
		Failover string `json:"failover"`
		Quorum   *struct {
			Reachable bool `json:"reachable"`
			Members   []struct {
				Name    string `json:"name"`
				Healthy bool   `json:"healthy"`
			} `json:"members"`
			Holder   string `json:"holder"`
			Eligible bool   `json:"eligible"`
			Why      string `json:"why"`
			Error    string `json:"error"`
		} `json:"quorum"`
	} `json:"nodes"`
}

// healthy says what keeps s from being the cluster the document promises
// in step 9 (primary a) and step 11 (primary b), or "" when nothing does.
// With the DNS endpoint (step 13, primaryIP set) there is no cluster IP:
// the name is answered with the primary's node IP instead.
func (s deployStatus) healthy(clusterName, primary, primaryIP string) string {
	c := s.Cluster
	dnsEndpoint := primaryIP != ""
	switch {
	case c == nil:
		return "no cluster"
	case c.Name != clusterName || c.DNSName != clusterName:
		return fmt.Sprintf("cluster %q, DNS name %q; want %q", c.Name, c.DNSName, clusterName)
	case c.Primary != primary || c.Term < 1:
		return fmt.Sprintf("primary %q at term %d; want %s", c.Primary, c.Term, primary)
	case c.Replication != "sync" || !c.Synchronized || c.Degraded:
		return fmt.Sprintf("replication %s, synchronized %v, degraded %v (record from %s); want sync, synchronized", c.Replication, c.Synchronized, c.Degraded, c.RecordFrom)
	case !dnsEndpoint && (c.ClusterIPAnswer.Node != primary || c.DNSNameAnswer.Node != primary):
		return fmt.Sprintf("the cluster IP is answered by %q, the DNS name by %q; want %s", c.ClusterIPAnswer.Node, c.DNSNameAnswer.Node, primary)
	case dnsEndpoint && (c.Endpoint != "dns" || c.ClusterIP != ""):
		return fmt.Sprintf("endpoint %q, cluster IP %q; want dns and none", c.Endpoint, c.ClusterIP)
	case dnsEndpoint && (c.DNS == nil || !slices.Equal(c.DNS.Authority, []string{primaryIP}) || !slices.Equal(c.DNS.Resolver, []string{primaryIP})):
		return fmt.Sprintf("the name is answered with %+v; want %s, by the zone's server and by the console's resolver", c.DNS, primaryIP)
	case dnsEndpoint && c.DNSNameAnswer.Node != primary:
		return fmt.Sprintf("the DNS name is answered by %q; want %s", c.DNSNameAnswer.Node, primary)
	}
	want := map[string]string{"a": "secondary", "b": "secondary"}
	want[primary] = "primary"
	for _, n := range s.Nodes {
		role, ok := want[n.Name]
		if !ok {
			return "an unexpected node " + n.Name
		}
		delete(want, n.Name)
		switch {
		case !n.Reachable || n.Role != role:
			return fmt.Sprintf("node %s: reachable %v, role %q; want %s", n.Name, n.Reachable, n.Role, role)
		case n.Postgres.State != "running" || n.Postgres.InRecovery != (role == "secondary"):
			return fmt.Sprintf("node %s: PostgreSQL %s, in recovery %v", n.Name, n.Postgres.State, n.Postgres.InRecovery)
		case n.Replication.State != "streaming":
			return fmt.Sprintf("node %s: replication %q; want streaming", n.Name, n.Replication.State)
		case n.ClusterIP.Held != (role == "primary"):
			// With the DNS endpoint: the zone's server answers the name
			// with this node's address.
			return fmt.Sprintf("node %s: holds the cluster IP (or the DNS name): %v", n.Name, n.ClusterIP.Held)
		}
	}
	if len(want) > 0 {
		return fmt.Sprintf("nodes missing: %v", want)
	}
	return ""
}

// automatic says what keeps s from showing the quorum the document
// promises in step 12 (automatic mode, the leader key held by primary,
// the three members healthy, the secondary ready to fail over by itself),
// or "" when nothing does.
func (s deployStatus) automatic(primary string, members []string) string {
	for _, n := range s.Nodes {
		q := n.Quorum
		switch {
		case n.Failover != "automatic":
			return fmt.Sprintf("node %s: failover mode %q; want automatic", n.Name, n.Failover)
		case q == nil || !q.Reachable:
			return fmt.Sprintf("node %s: the quorum does not answer: %+v", n.Name, q)
		case n.Name == primary && q.Holder != primary:
			return fmt.Sprintf("node %s: the leader key is held by %q; want %s", n.Name, q.Holder, primary)
		case n.Name != primary && !q.Eligible:
			return fmt.Sprintf("node %s would not fail over by itself: %s", n.Name, q.Why)
		}
		var healthy []string
		for _, m := range q.Members {
			if m.Healthy {
				healthy = append(healthy, m.Name)
			}
		}
		if !slices.Equal(sortedCopy(healthy), sortedCopy(members)) {
			return fmt.Sprintf("node %s: healthy members %v of %+v; want %v", n.Name, healthy, q.Members, members)
		}
	}
	return ""
}

func parseDeployStatus(out string) (deployStatus, error) {
	var s deployStatus
	err := json.Unmarshal([]byte(out), &s)
	return s, err
}

// deployProcesses lists the processes whose command line mentions dir.
func deployProcesses(dir string) []string {
	var out []string
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || len(b) == 0 {
			continue
		}
		cmd := string(bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
		if strings.Contains(cmd, dir+"/") {
			out = append(out, fmt.Sprintf("process %s: %s", filepath.Base(filepath.Dir(p)), cmd))
		}
	}
	return out
}

// startDetached starts argv in network namespace ns in a session of its
// own, output appended to logPath, as systemd would start a service (and
// as the lab starts tandemd). The returned channel closes when it exits.
func deployStartDetached(t *testing.T, ns string, env []string, logPath string, argv []string) (int, <-chan struct{}) {
	t.Helper()
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, argv...)...)
	cmd.Env = env
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %v in %s: %v", argv, ns, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }() // reaps it, whoever ends it
	return cmd.Process.Pid, done
}

// tailOf returns the last n lines of a file, for failure messages.
func tailOf(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
