package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/tandem-ha/tandem/internal/api"
	"github.com/tandem-ha/tandem/internal/clusterip"
	"github.com/tandem-ha/tandem/internal/postgres"
	"github.com/tandem-ha/tandem/internal/state"
)

// fakePG stands in for the PostgreSQL supervisor: it records what the
// cluster logic asked of it. It has no SQL: paths that query PostgreSQL
// are covered by the integration and end-to-end tiers.
type fakePG struct {
	mu       sync.Mutex
	dir      string
	running  bool
	recovery bool
	calls    []string
	settings map[string]string
	files    map[string][]byte
	haltErr  error
	fenced   bool
	handsOff bool
}

func (f *fakePG) SetHandsOff(on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.handsOff = on
}

func newFakePG(t *testing.T) *fakePG {
	return &fakePG{dir: filepath.Join(t.TempDir(), "pgdata"), files: map[string][]byte{}}
}

func (f *fakePG) call(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, s)
}

func (f *fakePG) called() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakePG) Status(context.Context) postgres.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.running {
		return postgres.Status{State: postgres.StateStopped}
	}
	return postgres.Status{State: postgres.StateRunning, InRecovery: f.recovery}
}
func (f *fakePG) Connect(context.Context) (*pgx.Conn, error) {
	return nil, errors.New("fake PostgreSQL takes no connections")
}
func (f *fakePG) Halt(context.Context, bool) error {
	f.call("halt")
	f.mu.Lock()
	defer f.mu.Unlock()
	f.running = false
	return f.haltErr
}
func (f *fakePG) Fence(context.Context) error {
	f.call("fence")
	f.mu.Lock()
	defer f.mu.Unlock()
	f.running, f.fenced = false, true
	return nil
}
func (f *fakePG) Unfence() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fenced = false
}
func (f *fakePG) Fenced() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fenced
}
func (f *fakePG) start(settings map[string]string, standby bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.settings = settings
	if standby {
		f.files["standby.signal"] = nil
	} else {
		delete(f.files, "standby.signal")
	}
	f.running, f.recovery = true, standby
}
func (f *fakePG) StartPrimary(_ context.Context, settings map[string]string, _ bool) error {
	f.call("start-primary")
	f.start(settings, false)
	return nil
}
func (f *fakePG) SetSettings(settings map[string]string) {
	f.call("set-settings")
	f.mu.Lock()
	defer f.mu.Unlock()
	f.settings = settings
}
func (f *fakePG) Reload(context.Context) error {
	f.call("reload")
	return nil
}
func (f *fakePG) StartStandby(_ context.Context, settings map[string]string) error {
	f.call("start-standby")
	f.start(settings, true)
	return nil
}
func (f *fakePG) Promote(context.Context) error {
	f.call("promote")
	f.mu.Lock()
	defer f.mu.Unlock()
	f.recovery = false
	delete(f.files, "standby.signal")
	return nil
}
func (f *fakePG) ShutdownForSwitchover(context.Context) (string, error) {
	f.call("shutdown-for-switchover")
	f.mu.Lock()
	defer f.mu.Unlock()
	f.running = false
	return "0/3000028", nil
}
func (f *fakePG) Rewind(context.Context, postgres.Source) error {
	f.call("rewind")
	return errors.New("fake PostgreSQL cannot rewind")
}
func (f *fakePG) Clone(context.Context, postgres.Source, string, func(int64, int64)) (string, error) {
	f.call("clone")
	return "", errors.New("fake PostgreSQL cannot clone")
}
func (f *fakePG) RestoreAside(context.Context, string) error { f.call("restore-aside"); return nil }
func (f *fakePG) DiscardAside(context.Context, string) error { f.call("discard-aside"); return nil }
func (f *fakePG) MoveDataAside(context.Context) (string, error) {
	f.call("move-aside")
	return f.dir + ".tandem-left-x", nil
}

// RecoverInterruptedClone does what the supervisor does, on the fake's
// directory: the newest copy aside goes back in place of the partial one.
func (f *fakePG) RecoverInterruptedClone(context.Context) (string, error) {
	m, _ := filepath.Glob(f.dir + ".tandem-old-*")
	if len(m) == 0 {
		return "", nil
	}
	sort.Strings(m)
	aside := m[len(m)-1]
	if err := os.RemoveAll(f.dir); err != nil {
		return "", err
	}
	return aside, os.Rename(aside, f.dir)
}
func (f *fakePG) SetReplicationPeers(ips []string) error {
	f.call(fmt.Sprintf("replication peers %v", ips))
	return nil
}
func (f *fakePG) ReadDataFile(name string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.files[name]
	if !ok {
		return nil, os.ErrNotExist
	}
	return b, nil
}
func (f *fakePG) EndWALReceiver(pid int) error {
	f.call(fmt.Sprintf("end-wal-receiver %d", pid))
	return nil
}
func (f *fakePG) StartHalted() error { f.call("start-halted"); return nil }
func (f *fakePG) PostmasterRunning() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.running
}

// fakeVIP stands in for the cluster IP owner.
type fakeVIP struct {
	mu    sync.Mutex
	held  bool
	inUse bool // another host answers the probe
	calls []string
}

func (v *fakeVIP) SetAddress(netip.Prefix) {}
func (v *fakeVIP) Acquire(context.Context) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.calls = append(v.calls, "acquire")
	v.held = true
	return nil
}
func (v *fakeVIP) AcquireTrusted(ctx context.Context) error { return v.Acquire(ctx) }
func (v *fakeVIP) Prepare(context.Context) error            { return nil }
func (v *fakeVIP) Release(context.Context) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.calls = append(v.calls, "release")
	v.held = false
	return nil
}
func (v *fakeVIP) Status() clusterip.Status {
	v.mu.Lock()
	defer v.mu.Unlock()
	return clusterip.Status{Held: v.held}
}
func (v *fakeVIP) Probe(context.Context, netip.Prefix) (string, bool, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.inUse {
		return "02:00:00:00:00:99", true, nil
	}
	return "", false, nil
}
func (v *fakeVIP) isHeld() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.held
}

// fakePeer answers the peer API from a function, or not at all.
type fakePeer struct {
	mu      sync.Mutex
	hb      func() (api.Heartbeat, error)
	promote func(api.PromoteRequest) (api.PromoteResult, error)
	events  []api.PeerEvent
	// maint answers PeerMaintenance (nil: silent).
	maint func(api.MaintenanceInfo) (api.MaintenanceInfo, error)

	slotsRecreated int
	ipTaken        int // TakeClusterIP calls
	prepared       int // PreparePromotion calls
}

var errSilent = errors.New("peer silent")

func (p *fakePeer) Heartbeat(context.Context) (api.Heartbeat, error) {
	p.mu.Lock()
	hb := p.hb
	p.mu.Unlock()
	if hb == nil {
		return api.Heartbeat{}, errSilent
	}
	return hb()
}
func (p *fakePeer) Promote(_ context.Context, r api.PromoteRequest) (api.PromoteResult, error) {
	if p.promote == nil {
		return api.PromoteResult{}, errSilent
	}
	return p.promote(r)
}
func (p *fakePeer) Leave(context.Context) error { return nil }
func (p *fakePeer) TakeClusterIP(context.Context, int64) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ipTaken++
	return nil
}
func (p *fakePeer) PreparePromotion(context.Context, int64) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.prepared++
	return nil
}
func (p *fakePeer) RecreateSlot(context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.slotsRecreated++
	return nil
}
func (p *fakePeer) PeerEvent(_ context.Context, e api.PeerEvent) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.hb == nil {
		return errSilent // a silent peer records nothing either
	}
	p.events = append(p.events, e)
	return nil
}
func (p *fakePeer) PeerMaintenance(_ context.Context, m api.MaintenanceInfo) (api.MaintenanceInfo, error) {
	p.mu.Lock()
	f := p.maint
	p.mu.Unlock()
	if f == nil {
		return api.MaintenanceInfo{}, errSilent
	}
	return f(m)
}
func (p *fakePeer) answer(hb api.Heartbeat) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hb = func() (api.Heartbeat, error) { return hb, nil }
}

// testNode is a node over fakes, with the given durable state.
type testNode struct {
	*Node
	pg   *fakePG
	vip  *fakeVIP
	peer *fakePeer
	dir  string
}

func newTestNode(t *testing.T, st state.State) *testNode {
	t.Helper()
	dir := t.TempDir()
	st.Node = "a"
	if err := state.Save(dir, st); err != nil {
		t.Fatal(err)
	}
	pg, vip, peer := newFakePG(t), &fakeVIP{}, &fakePeer{}
	n := New(Config{Name: "a", IP: "10.0.0.11", APIPort: 7400, PGPort: 5432, StateDir: dir}, st, pg, vip, slog.New(slog.NewTextHandler(io.Discard, nil)))
	n.peerFor = func(*api.Member) Peer { return peer }
	t.Cleanup(func() { n.Stop(0) })
	return &testNode{Node: n, pg: pg, vip: vip, peer: peer, dir: dir}
}

// clusterState is a member of a two-node cluster in role at term.
func clusterState(role state.Role, term int64) state.State {
	return state.State{Role: role, Term: term, Cluster: &state.Membership{
		Name: "db", ClusterIP: "10.0.0.10/24", DNSName: "db.example.test", Replication: ModeSync,
		Peer: &state.Peer{Name: "b", IP: "10.0.0.12", APIPort: 7400, PGPort: 5432, Fingerprint: "sha256:peer"},
	}}
}

// saved reads the state file back: what a restart would see.
func (tn *testNode) saved(t *testing.T) state.State {
	t.Helper()
	s, ok, err := state.Load(tn.dir)
	if err != nil || !ok {
		t.Fatalf("state file: ok=%v err=%v", ok, err)
	}
	return s
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
