package console

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/tandem-ha/tandem/internal/api"
)

// assembled starts a cluster "db" of a (primary) and b (secondary) at
// term 2, as the console would know it after `tandem assemble`. The
// cluster IP is on loopback and the DNS name is localhost, so the console's
// look at them reaches a.
func assembled(t *testing.T) (a, b *fakeNode) {
	t.Helper()
	useCacheDir(t)
	t.Setenv("TANDEM_TOKEN", "")
	t.Setenv("TANDEM_ENDPOINT", "")
	a = newFakeNode(t, "a", "10.77.0.11", 160004)
	b = newFakeNode(t, "b", "10.77.0.12", 160004)
	rec := api.Record{Name: "db", State: "assembled", Term: 2, Primary: "a", ClusterIP: "127.0.0.1/8", DNSName: "localhost", Replication: "sync", Synchronized: true,
		Members: []api.Member{a.member(), b.member()}}
	a.set(func(f *fakeNode) {
		f.info.Role, f.info.Cluster, f.info.Term = rolePrimary, "db", 2
		r := rec
		f.record = &r
		f.replication = &api.ReplicationInfo{State: "streaming", SyncState: "sync", LagBytes: 0, LagSeconds: 0.1, Slot: "tandem_b", RetainedBytes: 16 << 20}
		f.clusterIP = api.ClusterIPInfo{Address: "127.0.0.1/8", Interface: "lo", Held: true}
		m := b.member()
		f.peer = &m
		f.events = []api.Event{
			{ID: 2, At: time.Date(2025, 3, 1, 10, 0, 5, 0, time.UTC), Kind: "node_online", Node: "b", Term: 1, Message: "b streams"},
			{ID: 1, At: time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC), Kind: "assembled", Node: "a", Term: 1, Message: "cluster db assembled"},
			{ID: 3, At: time.Date(2025, 3, 1, 11, 0, 0, 0, time.UTC), Kind: "switchover_finished", Node: "a", Term: 2, Message: "a is primary"},
		}
	})
	b.set(func(f *fakeNode) {
		f.info.Role, f.info.Cluster, f.info.Term = roleSecondary, "db", 2
		f.info.Postgres.InRecovery = true
		r := rec
		f.record = &r
		f.replication = &api.ReplicationInfo{ReceiverStatus: "streaming", ReceivedLSN: "0/3000148", LastMessage: "2025-03-01T11:00:00Z"}
		m := a.member()
		f.peer = &m
		f.events = []api.Event{{ID: 1, At: time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC), Kind: "assembled", Node: "a", Term: 1, Message: "cluster db assembled"}}
	})
	c, err := LoadCache()
	if err != nil {
		t.Fatal(err)
	}
	c.Pins[a.addr], c.Pins[b.addr] = a.fp, b.fp
	seen := time.Now().Add(-time.Hour).UTC()
	c.Clusters["db"] = CachedCluster{ClusterIP: "127.0.0.1/8", DNSName: "localhost", Replication: "sync", Term: 1, Primary: "a",
		Nodes: []CachedNode{
			{Name: "a", IP: "10.77.0.11", Address: a.addr, Role: rolePrimary, LastSeen: seen},
			{Name: "b", IP: "10.77.0.12", Address: b.addr, Role: roleSecondary, LastSeen: seen},
		}}
	if err := c.Save(); err != nil {
		t.Fatal(err)
	}
	toks, _ := LoadTokens()
	toks.ByAddress[a.addr], toks.ByAddress[b.addr] = a.token, b.token
	if err := toks.Save(); err != nil {
		t.Fatal(err)
	}
	return a, b
}

func TestStatusShowsBothNodes(t *testing.T) {
	a, b := assembled(t)
	code, stdout, stderr := runIn(t, "", "status", "-o", "json")
	if code != 0 {
		t.Fatalf("%d\n%s", code, stderr)
	}
	// The fields scripts and the e2e tests read, by name.
	var raw struct {
		Cluster struct {
			Name         string `json:"name"`
			Term         int64  `json:"term"`
			Synchronized bool   `json:"synchronized"`
			Primary      string `json:"primary"`
		} `json:"cluster"`
		Nodes []struct {
			Name      string `json:"name"`
			Address   string `json:"address"`
			IP        string `json:"ip"`
			Role      string `json:"role"`
			Reachable bool   `json:"reachable"`
			Postgres  struct {
				State string `json:"state"`
				LSN   string `json:"lsn"`
			} `json:"postgres"`
			Replication struct {
				State         string `json:"state"`
				RetainedBytes int64  `json:"wal_retained_bytes"`
			} `json:"replication"`
			ClusterIP struct {
				Held bool `json:"held"`
			} `json:"cluster_ip"`
		} `json:"nodes"`
	}
	if err := json.Unmarshal([]byte(stdout), &raw); err != nil {
		t.Fatal(err)
	}
	if raw.Cluster.Name != "db" || raw.Cluster.Term != 2 || !raw.Cluster.Synchronized || raw.Cluster.Primary != "a" || len(raw.Nodes) != 2 {
		t.Fatalf("cluster: %s", stdout)
	}
	na, nb := raw.Nodes[0], raw.Nodes[1]
	if na.Name != "a" || na.Address != a.addr || na.IP != "10.77.0.11" || na.Role != rolePrimary || !na.Reachable || na.Postgres.State != "running" || na.Postgres.LSN != "0/3000148" ||
		na.Replication.State != "streaming" || na.Replication.RetainedBytes != 16<<20 || !na.ClusterIP.Held {
		t.Errorf("a: %+v", na)
	}
	if nb.Name != "b" || nb.Address != b.addr || nb.Role != roleSecondary || !nb.Reachable || nb.ClusterIP.Held {
		t.Errorf("b: %+v", nb)
	}
	st := decode[StatusOutput](t, stdout)
	if st.Cluster.Degraded || st.Cluster.RecordFrom != "a" || st.Cluster.ClusterIPAnswer == nil || st.Cluster.ClusterIPAnswer.Node != "a" || st.Cluster.DNSNameAnswer == nil || st.Cluster.DNSNameAnswer.Node != "a" {
		t.Errorf("cluster details: %+v %+v %+v", st.Cluster, st.Cluster.ClusterIPAnswer, st.Cluster.DNSNameAnswer)
	}

	code, stdout, _ = runIn(t, "", "status")
	for _, want := range []string{"Cluster db  term 2  primary a  replication sync, synchronized", "answered by a", "streaming (sync)", "16.0 MiB", "held", "not held", "WAL receiver streaming"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("table lacks %q:\n%s", want, stdout)
		}
	}
	if code != 0 {
		t.Errorf("table: code %d", code)
	}
	// The cache learned the term.
	if c, _ := LoadCache(); c.Clusters["db"].Term != 2 || time.Since(c.Clusters["db"].Nodes[1].LastSeen) > time.Minute {
		t.Errorf("cache not updated: %+v", c.Clusters["db"])
	}
}

func TestStatusListsAnUnreachableNode(t *testing.T) {
	a, b := assembled(t)
	b.stop()
	code, stdout, stderr := runIn(t, "", "status", "-o", "json")
	if code != 0 {
		t.Fatalf("one node answered, yet code %d\n%s", code, stderr)
	}
	st := decode[StatusOutput](t, stdout)
	if len(st.Nodes) != 2 {
		t.Fatalf("both nodes must be listed: %s", stdout)
	}
	nb := st.Nodes[1]
	if nb.Name != "b" || nb.Address != b.addr || nb.IP != "10.77.0.12" || nb.Reachable || nb.Role != roleUnknown || nb.LastKnownRole != roleSecondary || nb.LastSeen == nil || !strings.Contains(nb.Error, "cannot reach") {
		t.Fatalf("unreachable b: %+v", nb)
	}
	if !st.Nodes[0].Reachable || !st.Cluster.Degraded || st.Cluster.Term != 2 {
		t.Fatalf("a / cluster: %+v %+v", st.Nodes[0], st.Cluster)
	}
	_, stdout, _ = runIn(t, "", "status")
	if !strings.Contains(stdout, "NO") || !strings.Contains(stdout, "b: not reachable") || !strings.Contains(stdout, "last known role secondary") || !strings.Contains(stdout, "DEGRADED") {
		t.Errorf("table:\n%s", stdout)
	}
	// The cache keeps b's last known role and when it was last seen.
	c, _ := LoadCache()
	if n := c.Clusters["db"].Nodes[1]; n.Role != roleSecondary || time.Since(n.LastSeen) < 30*time.Minute {
		t.Errorf("b's cached entry changed though it did not answer: %+v", n)
	}

	// Neither answers: both listed from the cache, exit 3.
	a.stop()
	code, stdout, _ = runIn(t, "", "status", "-o", "json")
	if code != ExitUnreachable {
		t.Fatalf("no node answered: code %d\n%s", code, stdout)
	}
	st = decode[StatusOutput](t, stdout)
	if len(st.Nodes) != 2 || st.Nodes[0].Reachable || st.Nodes[0].Role != roleUnknown || st.Cluster.Name != "db" || st.Cluster.RecordFrom != "cache" {
		t.Fatalf("nothing answered, yet: %s", stdout)
	}
}

func TestStatusRecordFromSecondaryWhenPrimaryIsGone(t *testing.T) {
	a, _ := assembled(t)
	a.stop()
	code, stdout, stderr := runIn(t, "", "status", "-o", "json")
	if code != 0 {
		t.Fatalf("%d %s", code, stderr)
	}
	st := decode[StatusOutput](t, stdout)
	if st.Cluster.RecordFrom != "b (replicated copy)" || st.Cluster.Primary != "a" || !st.Cluster.Degraded || st.Nodes[0].Role != roleUnknown || st.Nodes[0].LastKnownRole != rolePrimary {
		t.Fatalf("%s", stdout)
	}
	if st.Cluster.ClusterIPAnswer == nil || st.Cluster.ClusterIPAnswer.Reachable {
		t.Errorf("the cluster IP answered, though its holder is gone: %+v", st.Cluster.ClusterIPAnswer)
	}
}

func TestStatusUpdatesCachedRoles(t *testing.T) {
	a, b := assembled(t)
	// A switchover happened elsewhere: b is primary at term 3.
	a.set(func(f *fakeNode) { f.info.Role, f.info.Term, f.clusterIP.Held = roleSecondary, 3, false })
	b.set(func(f *fakeNode) {
		f.info.Role, f.info.Term = rolePrimary, 3
		f.record.Term, f.record.Primary = 3, "b"
	})
	code, stdout, _ := runIn(t, "", "status", "-o", "json")
	st := decode[StatusOutput](t, stdout)
	if code != 0 || st.Cluster.Primary != "b" || st.Cluster.Term != 3 || st.Cluster.RecordFrom != "b" {
		t.Fatalf("%d %s", code, stdout)
	}
	// a still holds the record of term 2 and a held flag off; the cluster
	// IP answers with a's certificate: a warning.
	if len(st.Warnings) == 0 || !strings.Contains(st.Warnings[0], "answered by a, but the primary is b") {
		t.Errorf("warnings: %v", st.Warnings)
	}
	c, _ := LoadCache()
	cc := c.Clusters["db"]
	if cc.Primary != "b" || cc.Term != 3 || cc.Nodes[0].Role != roleSecondary || cc.Nodes[1].Role != rolePrimary {
		t.Fatalf("cache: %+v", cc)
	}
}

func TestStatusTwoPrimariesWarns(t *testing.T) {
	_, b := assembled(t)
	b.set(func(f *fakeNode) { f.info.Role, f.info.Term = rolePrimary, 3 })
	_, stdout, _ := runIn(t, "", "status")
	if !strings.Contains(stdout, "MORE THAN ONE NODE SAYS IT IS PRIMARY") {
		t.Fatalf("%s", stdout)
	}
}

func TestStatusEndpointShowsPeerWithCachedToken(t *testing.T) {
	a, b := assembled(t)
	// No TANDEM_TOKEN: the token comes from tokens.json.
	code, stdout, stderr := runIn(t, "", "status", "--endpoint", a.addr, "-o", "json")
	if code != 0 {
		t.Fatalf("%d %s", code, stderr)
	}
	st := decode[StatusOutput](t, stdout)
	if len(st.Nodes) != 2 || st.Nodes[0].Name != "a" || st.Nodes[1].Name != "b" || st.Nodes[1].Address != b.addr || !st.Nodes[1].Reachable || st.Cluster == nil || st.Cluster.Name != "db" {
		t.Fatalf("%s", stdout)
	}
	// Without the peer's token only the node itself is shown.
	toks, _ := LoadTokens()
	delete(toks.ByAddress, b.addr)
	toks.Save()
	code, stdout, _ = runIn(t, "", "status", "--endpoint", a.addr, "-o", "json")
	if st := decode[StatusOutput](t, stdout); code != 0 || len(st.Nodes) != 1 {
		t.Fatalf("%d %s", code, stdout)
	}
}

func TestStatusNeedsAClusterOrEndpoint(t *testing.T) {
	useCacheDir(t)
	t.Setenv("TANDEM_ENDPOINT", "")
	code, _, stderr := runIn(t, "", "status")
	if code != ExitUsage || !strings.Contains(stderr, "--endpoint") {
		t.Fatalf("%d %s", code, stderr)
	}
	assembled(t)
	c, _ := LoadCache()
	c.Clusters["other"] = CachedCluster{}
	c.Save()
	if code, _, stderr := runIn(t, "", "status"); code != ExitUsage || !strings.Contains(stderr, "--cluster") {
		t.Fatalf("two clusters: %d %s", code, stderr)
	}
	if code, _, stderr := runIn(t, "", "status", "--cluster", "nosuch"); code != ExitUsage || !strings.Contains(stderr, "db, other") {
		t.Fatalf("unknown cluster: %d %s", code, stderr)
	}
	if code, _, stderr := runIn(t, "", "status", "--cluster", "db"); code != 0 {
		t.Fatalf("--cluster db: %d %s", code, stderr)
	}
}

func TestEventsFromPrimaryElseSecondary(t *testing.T) {
	a, b := assembled(t)
	code, stdout, stderr := runIn(t, "", "events", "-o", "json")
	if code != 0 {
		t.Fatalf("%d %s", code, stderr)
	}
	ev := decode[EventsOutput](t, stdout)
	if ev.Source != "a" || !ev.FromPrimary || len(ev.Events) != 3 || ev.Events[0].ID != 1 || ev.Events[2].ID != 3 {
		t.Fatalf("events from the primary, oldest first: %s", stdout)
	}
	_, stdout, _ = runIn(t, "", "events", "--limit", "2")
	if strings.Contains(stdout, "cluster db assembled") || !strings.Contains(stdout, "switchover_finished") || !strings.Contains(stdout, "KIND") {
		t.Fatalf("limit 2:\n%s", stdout)
	}
	if len(a.posts())+len(b.posts()) != 0 {
		t.Errorf("events POSTed something")
	}

	a.stop()
	code, stdout, stderr = runIn(t, "", "events", "-o", "json")
	ev = decode[EventsOutput](t, stdout)
	if code != 0 || ev.Source != "b" || ev.FromPrimary || len(ev.Events) != 1 || !strings.Contains(stderr, "replicated copy") {
		t.Fatalf("fallback to the secondary: %d %s %s", code, stdout, stderr)
	}
	b.stop()
	if code, _, stderr := runIn(t, "", "events"); code != ExitUnreachable || !strings.Contains(stderr, "no node of cluster db answered") {
		t.Fatalf("none: %d %s", code, stderr)
	}
	if code, _, _ := runIn(t, "", "events", "--limit", "0"); code != ExitUsage {
		t.Fatalf("--limit 0: %d", code)
	}
}

func TestDisassemble(t *testing.T) {
	a, b := assembled(t)
	if code, _, stderr := runIn(t, "", "disassemble"); code != ExitUsage || !strings.Contains(stderr, "--yes") {
		t.Fatalf("off a terminal without --yes: %d %s", code, stderr)
	}
	a.set(func(f *fakeNode) {
		f.disassemble = api.DisassembleResult{Primary: "standalone", Secondary: "left the cluster"}
	})
	code, stdout, stderr := runIn(t, "", "disassemble", "--yes")
	if code != 0 || !strings.Contains(stdout, "Cluster db disassembled") || !strings.Contains(stdout, "left the cluster") {
		t.Fatalf("%d %s %s", code, stdout, stderr)
	}
	ps := a.posts()
	if len(ps) != 1 || ps[0].Path != "/v1/cluster/disassemble" || len(b.posts()) != 0 {
		t.Fatalf("POSTs: a %v b %v", ps, b.posts())
	}
	if req := decode[api.DisassembleRequest](t, string(ps[0].Body)); req.Force {
		t.Errorf("force sent without --force")
	}
	c, _ := LoadCache()
	toks, _ := LoadTokens()
	if len(c.Clusters) != 0 || c.Pins[a.addr] != a.fp || c.Pins[b.addr] != b.fp || toks.ByAddress[a.addr] == "" {
		t.Fatalf("after disassembly: clusters %v, pins %v, tokens kept %v", c.Clusters, c.Pins, toks.ByAddress[a.addr] != "")
	}
}

func TestDisassembleForceFallsBackToSecondary(t *testing.T) {
	a, b := assembled(t)
	a.stop()
	code, _, stderr := runIn(t, "", "disassemble", "--yes")
	if code != ExitUnreachable || !strings.Contains(stderr, "--force") || len(b.posts()) != 0 {
		t.Fatalf("primary gone, no --force: %d %s", code, stderr)
	}
	b.set(func(f *fakeNode) { f.disassemble = api.DisassembleResult{Secondary: "left the cluster"} })
	code, stdout, stderr := runIn(t, "", "disassemble", "--force", "--yes", "-o", "json")
	if code != 0 {
		t.Fatalf("%d %s", code, stderr)
	}
	ps := b.posts()
	if len(ps) != 1 || ps[0].Path != "/v1/cluster/disassemble" || !decode[api.DisassembleRequest](t, string(ps[0].Body)).Force {
		t.Fatalf("the secondary was not asked with force: %v", ps)
	}
	out := decode[DisassembleOutput](t, stdout)
	if out.SentTo != "b" || !out.Fallback || len(out.Left) != 1 || out.Left[0] != a.addr {
		t.Fatalf("%s", stdout)
	}
	if !strings.Contains(stderr, "will NOT be told") || !strings.Contains(stderr, "--endpoint "+a.addr) {
		t.Errorf("the plan does not warn about the primary:\n%s", stderr)
	}
	if c, _ := LoadCache(); len(c.Clusters) != 0 {
		t.Fatalf("cluster still cached")
	}
}

func TestDisassembleForceWithSecondaryGone(t *testing.T) {
	a, b := assembled(t)
	b.stop()
	onTerminal(t)
	code, _, stderr := runIn(t, "y\n", "disassemble", "--force")
	if code != 0 || !strings.Contains(stderr, "b does not answer") || !strings.Contains(stderr, "Disassemble cluster db? [y/N]") {
		t.Fatalf("%d %s", code, stderr)
	}
	ps := a.posts()
	if len(ps) != 1 || !decode[api.DisassembleRequest](t, string(ps[0].Body)).Force {
		t.Fatalf("primary POSTs: %v", ps)
	}
}
