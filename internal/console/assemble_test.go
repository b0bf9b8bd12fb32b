package console

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandem-ha/tandem/internal/api"
	"github.com/tandem-ha/tandem/internal/dnscheck"
)

// twoNodes starts a future primary a and secondary b, both without a
// cluster, and puts their tokens in the variables assemble reads.
func twoNodes(t *testing.T) (a, b *fakeNode) {
	t.Helper()
	useCacheDir(t)
	t.Setenv("TANDEM_TOKEN", "")
	a = newFakeNode(t, "a", "10.77.0.11", 160004)
	b = newFakeNode(t, "b", "10.77.0.12", 160002)
	t.Setenv("TANDEM_PRIMARY_TOKEN", a.token)
	t.Setenv("TANDEM_SECONDARY_TOKEN", b.token)
	return a, b
}

func assembleArgs(a, b *fakeNode, extra ...string) []string {
	return append([]string{"assemble", "--primary", a.addr, "--secondary", b.addr,
		"--cluster-ip", "10.77.0.10/24", "--dns-name", "db.lab.test", "--trust-new"}, extra...)
}

func TestAssembleFlagsAreCheckedBeforeAnythingIsSent(t *testing.T) {
	a, b := twoNodes(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"assemble", "--secondary", b.addr, "--cluster-ip", "10.77.0.10/24", "--dns-name", "db.lab.test", "--yes"}, "--primary is missing"},
		{assembleArgs(a, b, "--yes", "--cluster-ip", "10.77.0.10"), "prefix length"},
		{assembleArgs(a, b, "--yes", "--cluster-ip", "10.77.0.300/24"), "prefix length"},
		{assembleArgs(a, b, "--yes", "--cluster-ip", "10.77.0.0/24"), "network address"},
		{assembleArgs(a, b, "--yes", "--cluster-ip", "10.77.0.255/24"), "broadcast"},
		{assembleArgs(a, b, "--yes", "--cluster-ip", "10.77.0.10/32"), "names no subnet"},
		{assembleArgs(a, b, "--yes", "--cluster-ip", "127.0.0.5/8"), "not a unicast address"},
		{assembleArgs(a, b, "--yes", "--dns-name", "db_lab!"), "not a valid host name"},
		{assembleArgs(a, b, "--yes", "--name", "-bad name"), "--name"},
		{assembleArgs(a, b, "--yes", "--replication", "fast"), "async, sync or strict"},
		{assembleArgs(a, b, "--yes", "--dns-server", "resolver"), "--dns-server"},
		{assembleArgs(a, b, "--yes", "--secondary", a.addr), "name two different nodes"},
		{assembleArgs(a, b, "--yes", "--primary-fingerprint", "sha256:xyz"), "--primary-fingerprint"},
		{assembleArgs(a, b, "--yes", "--secondary-token-file", filepath.Join(t.TempDir(), "none")), "--secondary-token-file"},
		{assembleArgs(a, b, "--yes", "-o", "yaml"), "table or json"},
		{assembleArgs(a, b, "--yes", "--bogus"), "unknown flag"},
	} {
		code, _, stderr := runIn(t, "", c.args...)
		if code != ExitUsage || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: code %d, want %d and %q in:\n%s", c.args, code, ExitUsage, c.want, stderr)
		}
	}
	// Every problem at once, not only the first.
	code, _, stderr := runIn(t, "", assembleArgs(a, b, "--yes", "--cluster-ip", "x", "--replication", "fast")...)
	if code != ExitUsage || !strings.Contains(stderr, "--cluster-ip") || !strings.Contains(stderr, "--replication") {
		t.Errorf("several problems: %d\n%s", code, stderr)
	}
	t.Setenv("TANDEM_SECONDARY_TOKEN", "")
	if code, _, stderr := runIn(t, "", assembleArgs(a, b, "--yes")...); code != ExitUsage || !strings.Contains(stderr, "TANDEM_SECONDARY_TOKEN") {
		t.Errorf("missing token: %d\n%s", code, stderr)
	}
	if n := a.requestCount() + b.requestCount(); n != 0 {
		t.Fatalf("bad flags, yet the nodes saw %d requests", n)
	}
}

func TestAssembleNeedsYesOffTerminal(t *testing.T) {
	a, b := twoNodes(t)
	code, _, stderr := runIn(t, "", assembleArgs(a, b)...)
	if code != ExitUsage || !strings.Contains(stderr, "--yes") {
		t.Fatalf("no --yes off a terminal: %d\n%s", code, stderr)
	}
	if n := a.requestCount() + b.requestCount(); n != 0 {
		t.Fatalf("refused, yet the nodes saw %d requests", n)
	}
}

func TestAssembleAsksOnTerminal(t *testing.T) {
	a, b := twoNodes(t)
	onTerminal(t)
	code, _, stderr := runIn(t, "n\n", assembleArgs(a, b)...)
	if code != ExitFailure || !strings.Contains(stderr, "will be REPLACED") || !strings.Contains(stderr, "[y/N]") || !strings.Contains(stderr, "not confirmed") {
		t.Fatalf("operator said no: %d\n%s", code, stderr)
	}
	if len(a.posts())+len(b.posts()) != 0 {
		t.Fatal("the operator said no, yet something was POSTed")
	}
	a.set(func(f *fakeNode) { f.assemble = api.AssembleResult{Took: "1s"} })
	code, _, stderr = runIn(t, "yes\n", assembleArgs(a, b)...)
	if code != 0 || len(a.posts()) != 1 {
		t.Fatalf("operator said yes: %d, %d POSTs\n%s", code, len(a.posts()), stderr)
	}
}

func TestAssembleRefusesLocally(t *testing.T) {
	for _, c := range []struct {
		name  string
		setup func(a, b *fakeNode)
		want  string
	}{
		{"secondary in a cluster", func(a, b *fakeNode) { b.info.Role, b.info.Cluster = roleSecondary, "other" }, `already holds a cluster: it is secondary of cluster "other"`},
		{"secondary standalone", func(a, b *fakeNode) { b.info.Role, b.info.Cluster = roleStandalone, "old" }, "already holds a cluster"},
		{"major versions differ", func(a, b *fakeNode) { b.info.Postgres.VersionNum, b.info.Postgres.Version = 150008, "15.8" }, "major versions differ: 16.4 on a, 15.8 on b"},
		{"primary already primary", func(a, b *fakeNode) { a.info.Role, a.info.Cluster = rolePrimary, "db" }, `already belongs to cluster "db"`},
		{"primary stopped", func(a, b *fakeNode) { a.info.Postgres.State, a.info.Postgres.VersionNum = "stopped", 0 }, "PostgreSQL on the primary a is stopped"},
		{"secondary version unknown", func(a, b *fakeNode) { b.info.Postgres.State, b.info.Postgres.VersionNum = "no_data", 0 }, "version on b is not known"},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, b := twoNodes(t)
			c.setup(a, b)
			code, _, stderr := runIn(t, "", assembleArgs(a, b, "--yes")...)
			if code != ExitConflict || !strings.Contains(stderr, c.want) || !strings.Contains(stderr, "nothing was sent") {
				t.Fatalf("code %d, want %d and %q in:\n%s", code, ExitConflict, c.want, stderr)
			}
			if len(a.posts())+len(b.posts()) != 0 {
				t.Fatal("refused locally, yet something was POSTed")
			}
		})
	}
}

func TestAssembleWritesCacheAndTokens(t *testing.T) {
	a, b := twoNodes(t)
	rec := api.Record{Name: "prod", State: "assembled", Term: 1, Primary: "a", ClusterIP: "10.77.0.10/24", DNSName: "db.lab.test", Replication: "strict",
		Members: []api.Member{a.member(), b.member()}}
	a.set(func(f *fakeNode) { f.assemble = api.AssembleResult{Record: rec, Took: "42s"} })
	tokFile := filepath.Join(t.TempDir(), "b.token")
	os.WriteFile(tokFile, []byte(b.token+"\n"), 0o600)
	t.Setenv("TANDEM_SECONDARY_TOKEN", "")

	code, stdout, stderr := runIn(t, "", assembleArgs(a, b, "--yes", "--name", "prod", "--replication", "strict", "--skip-preflight", "--secondary-token-file", tokFile)...)
	if code != 0 {
		t.Fatalf("code %d\n%s", code, stderr)
	}
	if !strings.Contains(stderr, "The database on b (PostgreSQL 16.2, node IP 10.77.0.12) will be REPLACED by a copy of a's") {
		t.Errorf("the plan does not say what is replaced:\n%s", stderr)
	}
	if !strings.Contains(stdout, "Cluster prod assembled in 42s") {
		t.Errorf("stdout:\n%s", stdout)
	}
	posts := a.posts()
	if len(posts) != 1 || posts[0].Path != "/v1/cluster/assemble" || len(b.posts()) != 0 {
		t.Fatalf("POSTs: a %v, b %v", posts, b.posts())
	}
	req := decode[api.AssembleRequest](t, string(posts[0].Body))
	want := api.AssembleRequest{Name: "prod", ClusterIP: "10.77.0.10/24", DNSName: "db.lab.test", Replication: "strict",
		Secondary: api.PeerRef{Address: b.addr, Token: b.token, Fingerprint: b.fp}, SkipPreflight: true}
	if req != want {
		t.Fatalf("assemble request\n got %+v\nwant %+v", req, want)
	}

	dir := os.Getenv("TANDEM_CACHE_DIR")
	for _, f := range []string{cacheFile, tokensFile} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, %v; want mode 0600", f, fi.Mode(), err)
		}
	}
	raw, _ := os.ReadFile(filepath.Join(dir, cacheFile))
	if strings.Contains(string(raw), a.token) || strings.Contains(string(raw), b.token) {
		t.Fatalf("a token went into cache.json:\n%s", raw)
	}
	c, _ := LoadCache()
	cc, ok := c.Clusters["prod"]
	if !ok || cc.ClusterIP != "10.77.0.10/24" || cc.DNSName != "db.lab.test" || cc.Replication != "strict" || cc.Term != 1 || cc.Primary != "a" || len(cc.Nodes) != 2 {
		t.Fatalf("cached cluster: %+v", c.Clusters)
	}
	if n := cc.Nodes[0]; n.Name != "a" || n.Address != a.addr || n.IP != "10.77.0.11" || n.Role != rolePrimary || time.Since(n.LastSeen) > time.Minute {
		t.Errorf("cached primary: %+v", n)
	}
	if n := cc.Nodes[1]; n.Name != "b" || n.Address != b.addr || n.Role != roleSecondary {
		t.Errorf("cached secondary: %+v", n)
	}
	if c.Pins[a.addr] != a.fp || c.Pins[b.addr] != b.fp {
		t.Errorf("pins: %v", c.Pins)
	}
	toks, _ := LoadTokens()
	if toks.ByAddress[a.addr] != a.token || toks.ByAddress[b.addr] != b.token {
		t.Errorf("tokens: %v", toks.ByAddress)
	}

	// Now the operator needs no token: status finds both through the cache.
	t.Setenv("TANDEM_PRIMARY_TOKEN", "")
	a.set(func(f *fakeNode) { f.info.Role, f.info.Cluster, f.info.Term, f.record = rolePrimary, "prod", 1, &rec })
	b.set(func(f *fakeNode) { f.info.Role, f.info.Cluster, f.info.Term, f.record = roleSecondary, "prod", 1, &rec })
	code, stdout, stderr = runIn(t, "", "status", "-o", "json")
	if code != 0 {
		t.Fatalf("status after assembly: %d\n%s", code, stderr)
	}
	st := decode[StatusOutput](t, stdout)
	if st.Cluster == nil || st.Cluster.Name != "prod" || len(st.Nodes) != 2 || !st.Nodes[0].Reachable || !st.Nodes[1].Reachable {
		t.Fatalf("status after assembly: %s", stdout)
	}
}

func TestAssembleJSONAndServerRefusal(t *testing.T) {
	a, b := twoNodes(t)
	a.set(func(f *fakeNode) {
		f.assemble = api.AssembleResult{Record: api.Record{Name: "db.lab.test", Term: 1, Primary: "a"}, Took: "3s"}
	})
	code, stdout, stderr := runIn(t, "", assembleArgs(a, b, "--yes", "-o", "json")...)
	if code != 0 {
		t.Fatalf("%d\n%s", code, stderr)
	}
	res := decode[api.AssembleResult](t, stdout)
	if res.Record.Name != "db.lab.test" || res.Took != "3s" {
		t.Fatalf("json: %s", stdout)
	}
	req := decode[api.AssembleRequest](t, string(a.posts()[0].Body))
	if req.Name != "db.lab.test" || req.Replication != "sync" || req.SkipPreflight {
		t.Errorf("defaults: %+v", req)
	}

	// A refusal by the primary (the preflight found problems) is passed on.
	a.set(func(f *fakeNode) {
		f.failWith["/v1/cluster/assemble"] = api.Errorf(409, api.CodeConflict, "preflight: 2 problems: db.lab.test does not resolve")
	})
	c, _ := LoadCache()
	delete(c.Clusters, "db.lab.test")
	c.Save()
	code, _, stderr = runIn(t, "", assembleArgs(a, b, "--yes")...)
	if code != ExitConflict || !strings.Contains(stderr, "db.lab.test does not resolve") {
		t.Fatalf("server refusal: %d\n%s", code, stderr)
	}
	if c, _ := LoadCache(); len(c.Clusters) != 0 {
		t.Fatalf("a refused assembly was cached: %+v", c.Clusters)
	}
}

func TestPreflightPrintsBothNodesAndFailsOnProblems(t *testing.T) {
	a, b := twoNodes(t)
	a.set(func(f *fakeNode) {
		f.checks = api.PreflightResult{Node: "a", Problems: 1, Checks: []dnscheck.Result{
			{ID: "dns.server", Title: "this node has a DNS server that answers", Status: dnscheck.StatusOK, Detail: "asking 10.77.0.2"},
			{ID: "forward.cluster", Title: "db.lab.test resolves to 10.77.0.10", Status: dnscheck.StatusProblem, Detail: "NXDOMAIN", Fix: "add db.lab.test. IN A 10.77.0.10"},
			{ID: "cluster_ip_free", Title: "the cluster IP is free", Status: dnscheck.StatusSkipped, Detail: "no prober"},
		}}
	})
	b.set(func(f *fakeNode) {
		f.checks = api.PreflightResult{Node: "b", Checks: []dnscheck.Result{{ID: "dns.server", Title: "this node has a DNS server that answers", Status: dnscheck.StatusOK}}}
	})
	args := []string{"preflight", "--primary", a.addr, "--secondary", b.addr, "--cluster-ip", "10.77.0.10/24", "--dns-name", "db.lab.test", "--dns-server", "10.77.0.2", "--trust-new"}
	code, stdout, stderr := runIn(t, "", args...)
	if code != ExitFailure {
		t.Fatalf("a problem must exit 1: %d\n%s%s", code, stdout, stderr)
	}
	for _, want := range []string{"As a (", "the future primary", "1 problem", "PROBLEM  db.lab.test resolves to 10.77.0.10", "found: NXDOMAIN", "fix:   add db.lab.test. IN A 10.77.0.10", "skipped  the cluster IP is free (no prober)", "As b (", "no problems", "ok       this node has a DNS server"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("missing %q in:\n%s", want, stdout)
		}
	}
	// Each node was asked about the other.
	for _, c := range []struct {
		n    *fakeNode
		peer *fakeNode
	}{{a, b}, {b, a}} {
		ps := c.n.posts()
		if len(ps) != 1 || ps[0].Path != "/v1/preflight" {
			t.Fatalf("%s: POSTs %v", c.n.info.Name, ps)
		}
		req := decode[api.PreflightRequest](t, string(ps[0].Body))
		want := api.PreflightRequest{Peer: c.peer.member(), ClusterIP: "10.77.0.10/24", DNSName: "db.lab.test", DNSServer: "10.77.0.2"}
		if req != want {
			t.Errorf("%s asked\n got %+v\nwant %+v", c.n.info.Name, req, want)
		}
	}

	code, stdout, _ = runIn(t, "", append(args, "-o", "json")...)
	out := decode[PreflightOutput](t, stdout)
	if code != ExitFailure || out.Problems != 1 || len(out.Nodes) != 2 || out.Nodes[0].Role != rolePrimary || out.Nodes[1].Node != "b" || len(out.Nodes[0].Checks) != 3 {
		t.Fatalf("json: %d %s", code, stdout)
	}

	a.set(func(f *fakeNode) { f.checks = api.PreflightResult{Node: "a"} })
	if code, stdout, stderr := runIn(t, "", args...); code != 0 {
		t.Fatalf("no problems must exit 0: %d\n%s%s", code, stdout, stderr)
	}
}

func TestParseClusterIP(t *testing.T) {
	for in, ok := range map[string]bool{
		"10.0.0.10/24": true, "fd00::10/64": true, "192.168.1.201/29": true, "192.168.1.200/29": false,
		"10.0.0.10": false, "10.0.0.0/24": false, "10.0.0.255/24": false, "10.0.0.1/31": false, "fd00::10/128": false,
		"0.0.0.0/8": false, "224.0.0.5/4": false, "fe80::1/64": false, "10.0.0.10/0": false,
	} {
		if _, err := parseClusterIP(in); (err == nil) != ok {
			t.Errorf("%s: %v, want ok=%v", in, err, ok)
		}
	}
}

func TestJSONTokensFileShape(t *testing.T) {
	useCacheDir(t)
	toks, _ := LoadTokens()
	toks.ByAddress["10.0.0.1:7400"] = "secret"
	if err := toks.Save(); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(os.Getenv("TANDEM_CACHE_DIR"), tokensFile))
	var v map[string]map[string]string
	if err := json.Unmarshal(b, &v); err != nil || v["tokens"]["10.0.0.1:7400"] != "secret" {
		t.Fatalf("tokens.json: %v %s", err, b)
	}
}

func TestLongCommandsHaveLongerTimeouts(t *testing.T) {
	for _, c := range []struct {
		args []string
		want time.Duration
	}{
		{[]string{"assemble"}, assembleTimeout},
		{[]string{"assemble", "--timeout", "5s"}, 5 * time.Second},
		{[]string{"disassemble"}, disassembleTimeout},
		{[]string{"preflight"}, preflightTimeout},
		{[]string{"preflight", "--timeout", "2m"}, 2 * time.Minute},
	} {
		root := NewRootCommand()
		cmd, rest, err := root.Find(c.args)
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.ParseFlags(rest); err != nil {
			t.Fatal(err)
		}
		cmd.SetContext(t.Context())
		g := &globals{}
		g.timeout, _ = cmd.Flags().GetDuration("timeout")
		ctx, cancel := g.contextFor(cmd, map[string]time.Duration{"assemble": assembleTimeout, "disassemble": disassembleTimeout, "preflight": preflightTimeout}[cmd.Name()])
		d, ok := ctx.Deadline()
		cancel()
		if got := time.Until(d); !ok || got > c.want || got < c.want-time.Minute/2 {
			t.Errorf("%v: deadline in %v, want %v", c.args, got, c.want)
		}
	}
}
