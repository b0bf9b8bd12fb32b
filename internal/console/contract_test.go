package console

import (
	"context"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandem-ha/tandem/internal/api"
	"github.com/tandem-ha/tandem/internal/dnscheck"
	"github.com/tandem-ha/tandem/internal/identity"
)

// clusterBackend drives the real api.Server's cluster routes. It embeds
// the interface so that methods the console never calls need no fake (and
// new ones do not break this test); calling one panics.
type clusterBackend struct {
	api.ClusterBackend
	mu       sync.Mutex
	info     api.NodeInfo
	record   *api.Record
	got      []string // what was called, with the request
	assemble api.AssembleRequest
}

func (b *clusterBackend) Node(context.Context) api.NodeInfo {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.info
}

func (b *clusterBackend) View(context.Context) (api.ClusterView, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return api.ClusterView{Node: b.info, Record: b.record, Replication: &api.ReplicationInfo{State: "streaming"}}, nil
}

func (b *clusterBackend) Events(_ context.Context, limit int) (api.EventList, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.got = append(b.got, "events "+strconv.Itoa(limit))
	return api.EventList{Events: []api.Event{{ID: 1, At: time.Now(), Kind: "assembled", Node: b.info.Name, Term: 1, Message: "assembled"}}}, nil
}

func (b *clusterBackend) Preflight(_ context.Context, req api.PreflightRequest) (api.PreflightResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.got = append(b.got, "preflight "+req.Peer.Name)
	return api.PreflightResult{Node: b.info.Name, Checks: []dnscheck.Result{{ID: "dns.server", Title: "dns", Status: dnscheck.StatusOK}}}, nil
}

func (b *clusterBackend) Assemble(_ context.Context, req api.AssembleRequest) (api.AssembleResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.got = append(b.got, "assemble")
	b.assemble = req
	b.info.Role, b.info.Cluster, b.info.Term = rolePrimary, req.Name, 1
	b.record = &api.Record{Name: req.Name, State: "assembled", Term: 1, Primary: b.info.Name, ClusterIP: req.ClusterIP, DNSName: req.DNSName, Replication: req.Replication}
	return api.AssembleResult{Record: *b.record, Took: "1s"}, nil
}

func (b *clusterBackend) Disassemble(_ context.Context, req api.DisassembleRequest) (api.DisassembleResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.got = append(b.got, "disassemble force="+strconv.FormatBool(req.Force))
	return api.DisassembleResult{Primary: "standalone", Secondary: "left"}, nil
}

func (b *clusterBackend) calls() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.got, ", ")
}

func startRealNode(t *testing.T, name, ip string) (*clusterBackend, string, string) {
	t.Helper()
	dir := t.TempDir()
	cert, err := identity.EnsureCert(dir, name, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	token, err := identity.EnsureToken(dir)
	if err != nil {
		t.Fatal(err)
	}
	b := &clusterBackend{info: api.NodeInfo{Name: name, IP: ip, Fingerprint: identity.Fingerprint(cert.Certificate[0]), Role: roleNone,
		Postgres: api.PostgresInfo{State: "running", Port: 5432, Version: "16.4", VersionNum: 160004}}}
	s := api.NewServer(api.Config{Listen: "127.0.0.1:0", Cert: cert, Token: token, Backend: b, Log: slog.New(slog.DiscardHandler)})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop(context.Background()) })
	_, port, _ := net.SplitHostPort(s.Addr())
	b.info.APIPort, _ = strconv.Atoi(port)
	return b, s.Addr(), token
}

// TestAgainstTheRealNodeAPI checks paths, methods and bodies against the
// node API's own router and strict JSON decoding.
func TestAgainstTheRealNodeAPI(t *testing.T) {
	useCacheDir(t)
	t.Setenv("TANDEM_TOKEN", "")
	t.Setenv("TANDEM_ENDPOINT", "")
	pa, addrA, tokA := startRealNode(t, "a", "10.77.0.11")
	pb, addrB, tokB := startRealNode(t, "b", "10.77.0.12")
	t.Setenv("TANDEM_PRIMARY_TOKEN", tokA)
	t.Setenv("TANDEM_SECONDARY_TOKEN", tokB)
	pair := []string{"--primary", addrA, "--secondary", addrB, "--cluster-ip", "10.77.0.10/24", "--dns-name", "db.lab.test", "--trust-new"}

	if code, out, errs := runIn(t, "", append([]string{"preflight"}, pair...)...); code != 0 {
		t.Fatalf("preflight: %d\n%s%s", code, out, errs)
	}
	if pa.calls() != "preflight b" || pb.calls() != "preflight a" {
		t.Fatalf("preflight calls: a %q, b %q", pa.calls(), pb.calls())
	}
	if code, out, errs := runIn(t, "", append([]string{"assemble", "--yes"}, pair...)...); code != 0 {
		t.Fatalf("assemble: %d\n%s%s", code, out, errs)
	}
	if pa.assemble.Secondary.Address != addrB || pa.assemble.Secondary.Token != tokB || pa.assemble.Secondary.Fingerprint != pb.info.Fingerprint {
		t.Fatalf("assemble request: %+v", pa.assemble)
	}
	pb.mu.Lock()
	pb.info.Role, pb.info.Cluster, pb.info.Term = roleSecondary, "db.lab.test", 1
	pb.mu.Unlock()

	code, out, errs := runIn(t, "", "status", "-o", "json")
	st := decode[StatusOutput](t, out)
	if code != 0 || st.Cluster == nil || st.Cluster.Name != "db.lab.test" || len(st.Nodes) != 2 || st.Nodes[0].Role != rolePrimary || st.Nodes[1].Role != roleSecondary {
		t.Fatalf("status: %d %s %s", code, out, errs)
	}
	if code, out, errs := runIn(t, "", "events", "--limit", "7"); code != 0 || !strings.Contains(out, "assembled") {
		t.Fatalf("events: %d %s %s", code, out, errs)
	}
	if code, out, errs := runIn(t, "", "disassemble", "--yes"); code != 0 {
		t.Fatalf("disassemble: %d %s %s", code, out, errs)
	}
	if got := pa.calls(); got != "preflight b, assemble, events 7, disassemble force=false" {
		t.Fatalf("calls on a: %q", got)
	}
}
