package cluster

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tandem-ha/tandem/internal/api"
	"github.com/tandem-ha/tandem/internal/clusterip"
	"github.com/tandem-ha/tandem/internal/dnsupdate"
	"github.com/tandem-ha/tandem/internal/postgres"
	"github.com/tandem-ha/tandem/internal/quorum"
	"github.com/tandem-ha/tandem/internal/state"
	"github.com/tandem-ha/tandem/internal/version"
)

// Config is what the node needs to know about itself.
type Config struct {
	Name        string
	IP          string
	APIPort     int
	PGPort      int
	StateDir    string
	Cert        tls.Certificate
	Fingerprint string
	// MaxSlotWALKeep caps the WAL the primary keeps for an absent
	// secondary (max_slot_wal_keep_size); past it the secondary is
	// re-seeded when it returns.
	MaxSlotWALKeep string
	// SyncGrace is how long sync mode waits for an absent secondary before
	// it degrades to async.
	SyncGrace time.Duration
	// AwayAfter is how long the secondary may be gone before the
	// "secondary unavailable" event.
	AwayAfter time.Duration
	// PeerGrace and SelfElect: see rejoin.* in docs/config.md.
	PeerGrace time.Duration
	SelfElect bool
	Services  []Service
	Hook      []string
	HookLimit time.Duration
	// Notify, when set, is told about every event this node records (it
	// picks the ones that need a person and never blocks).
	Notify func(kind, about string, term int64, msg string)

	// Automatic failover mode: this node's etcd member (its data dir, its
	// entry as the console sees it, its certificate and key in PEM: the
	// node certificate), the lease timings (zero: the defaults) and, in
	// async mode, the most WAL a secondary may miss and still promote by
	// itself.
	QuorumDir       string
	QuorumSelf      api.QuorumMember
	CertPEM, KeyPEM []byte
	Lease           quorum.LeaseConfig
	MaxLag          int64
	// Etcd: this node's TLS files for an external etcd (quorum.etcd.*).
	Etcd EtcdFiles
	// SyncFiles: the files the primary carries to the secondary
	// (sync.files, filesync.go).
	SyncFiles []string
	// Upgrade: this node's part of `tandem upgrade` (upgrade.go).
	Upgrade UpgradeConfig
	// Watchdog is the device a primary arms in automatic mode (watchdog.go).
	Watchdog WatchdogConfig
	// DNSUpdater, when set, points the cluster DNS name at this node when
	// it is primary of a cluster whose endpoint is the name (endpoint.go).
	DNSUpdater *dnsupdate.Updater
}

// Service is a role-bound service (see config.Service).
type Service struct {
	Name    string
	Start   []string
	Stop    []string
	Timeout time.Duration
}

// Postgres is what the cluster logic asks of the one goroutine that owns
// the postmaster (postgres.Supervisor): intents, each a request the owner
// carries out whole, so two actions on the postmaster or the data
// directory never interleave.
type Postgres interface {
	Status(ctx context.Context) postgres.Status
	Connect(ctx context.Context) (*pgx.Conn, error)
	StartHalted() error
	PostmasterRunning() bool
	// Roles: start (or reload) read-write, start (or restart) in recovery,
	// stop and stay stopped (a fence, a leave).
	StartPrimary(ctx context.Context, settings map[string]string, mayInit bool) error
	StartStandby(ctx context.Context, settings map[string]string) error
	// SetSettings replaces the settings the next start or Reload writes;
	// Reload writes them and has the postmaster re-read its configuration.
	SetSettings(settings map[string]string)
	Reload(ctx context.Context) error
	Halt(ctx context.Context, fast bool) error
	// The self-fence of automatic mode: an immediate shutdown at once,
	// and nothing read-write until Unfence.
	Fence(ctx context.Context) error
	Unfence()
	Fenced() bool
	// Role changes.
	Promote(ctx context.Context) error
	ShutdownForSwitchover(ctx context.Context) (checkpointLSN string, err error)
	Rewind(ctx context.Context, src postgres.Source) error
	// The data directory: a clone with the old data aside until the copy
	// works, moves aside, and their recovery after a crash.
	Clone(ctx context.Context, src postgres.Source, slot string, progress func(done, total int64)) (aside string, err error)
	RestoreAside(ctx context.Context, aside string) error
	DiscardAside(ctx context.Context, aside string) error
	MoveDataAside(ctx context.Context) (aside string, err error)
	RecoverInterruptedClone(ctx context.Context) (restored string, err error)
	// Who may replicate: the nodes' IPs in pg_hba.conf, which the
	// supervisor writes (taking effect at the next reload or start).
	SetReplicationPeers(ips []string) error
	// A file of the data directory (standby.signal).
	ReadDataFile(name string) ([]byte, error)
	// EndWALReceiver ends the WAL receiver process pid (a fresh one
	// follows).
	EndWALReceiver(pid int) error
	// SetHandsOff: maintenance mode, no crash restart (postgres/handsoff.go).
	SetHandsOff(on bool)
}

// VIP is what the cluster logic needs from the cluster IP owner
// (clusterip.Manager).
type VIP interface {
	SetAddress(p netip.Prefix)
	Acquire(ctx context.Context) error
	AcquireTrusted(ctx context.Context) error
	// Prepare readies the next AcquireTrusted (a switchover's handover)
	// without changing anything.
	Prepare(ctx context.Context) error
	Release(ctx context.Context) error
	Status() clusterip.Status
	Probe(ctx context.Context, p netip.Prefix) (holderMAC string, inUse bool, err error)
}

// Node is one node's cluster logic. Every operation runs through run, the
// node's one runner, which holds the one exclusion; the durable state
// changes only through update.
type Node struct {
	cfg Config
	log *slog.Logger
	pg  Postgres
	vip VIP       // the endpoint, in either mode (endpoint.go)
	ep  *endpoint // the same, for what only it knows (the DNS name's state)
	run *runner
	up  upgradeState
	// hurry asks the monitor to look every monitorHurryEvery for a while
	// (hurryMonitor).
	hurry chan struct{}

	mu sync.Mutex // held across read, modify, save and publish of st
	st state.State

	// handoff is closed when the old primary of a switchover hands the
	// cluster IP over (TakeClusterIP), for the promotion of handoffTerm.
	handoffMu   sync.Mutex
	handoff     chan struct{}
	handoffTerm int64
	// prep is what PreparePromotion began for a switchover's promotion.
	prepMu    sync.Mutex
	prep      *promotionPrep
	peerMu    sync.Mutex
	lastHeard time.Time // last successful heartbeat from or to the peer
	// contact is what the primary said at this secondary's last
	// heartbeat to it (contactKnown: since this tandemd started).
	contact      primaryContact
	contactKnown bool

	ops opStats

	metricsMu sync.Mutex
	pgMetrics pgMetrics // the collector's last reading (metrics.go)

	progMu   sync.Mutex
	progress *api.Progress

	// peerFor, when set, replaces the peer API (unit tests).
	peerFor func(*api.Member) Peer

	// handover is what the process before a reload was doing, while the
	// boot after it uses it (reload.go).
	handover atomic.Pointer[Handover]

	// syncFlagReset says that afterPromotion wrote synchronized = false
	// into the record behind the monitor's back: the monitor, which writes
	// the flag only when its own value changes, must write it again (its
	// first tick as primary may have come before, leaving the record not
	// synchronized for good).
	syncFlagReset atomic.Bool

	// svcMu orders role-bound services and hooks: a start after a
	// promotion and a stop at the next demotion never interleave.
	svcMu sync.Mutex

	peers peerClients // the one client to the peer, kept alive (peer.go)

	kept keptEvents // maintenance events the history could not take yet (maintenance.go)

	q  quorumState   // automatic mode (auto.go)
	wd watchdogState // its watchdog (watchdog.go)

	// certMu guards the certificate in force and the prepared next one
	// (certrot.go): a rotation replaces them while tandemd runs.
	certMu sync.RWMutex
	cert   tls.Certificate
	certFP string
	nextFP string
}

// ReplicationUser is the role the secondary streams as.
const ReplicationUser = "tandem_replication"

// replPasswordFile keeps the replication password in the state dir.
const replPasswordFile = "replication-password"

// New returns a node over an opened state.
func New(cfg Config, st state.State, pg Postgres, vip VIP, log *slog.Logger) *Node {
	if cfg.SyncGrace <= 0 {
		cfg.SyncGrace = 10 * time.Second
	}
	if cfg.AwayAfter <= 0 {
		cfg.AwayAfter = 10 * time.Minute
	}
	if cfg.PeerGrace <= 0 {
		cfg.PeerGrace = 30 * time.Second
	}
	if cfg.HookLimit <= 0 {
		cfg.HookLimit = 30 * time.Second
	}
	if cfg.MaxSlotWALKeep == "" {
		cfg.MaxSlotWALKeep = "8GB"
	}
	ep := &endpoint{ip: vip}
	n := &Node{cfg: cfg, st: st, pg: pg, vip: ep, ep: ep, log: log, run: newRunner(), cert: cfg.Cert, certFP: cfg.Fingerprint, hurry: make(chan struct{}, 1)}
	if self, err := netip.ParseAddr(cfg.IP); err == nil && cfg.DNSUpdater != nil {
		ep.dns = newDNSName(cfg.DNSUpdater, self, log.With("component", "dnsname"), func(kind, msg string) {
			n.event(context.Background(), kind, cfg.Name, msg)
		})
	}
	ep.follow(st.Cluster)
	n.loadPreparedCert()
	return n
}

// State returns a copy of the node's durable state.
func (n *Node) State() state.State {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.st.Clone()
}

// update is the one writer of the durable state: fn changes a copy while
// the lock is held; the copy is saved (fsynced) and published only when fn
// and the save succeed, so the file and memory never disagree and two
// writers never lose each other's change.
func (n *Node) update(fn func(s *state.State) error) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	s := n.st.Clone()
	if err := fn(&s); err != nil {
		return err
	}
	if err := state.Save(n.cfg.StateDir, s); err != nil {
		return fmt.Errorf("while saving the node state: %w", err)
	}
	n.st = s
	n.ep.follow(s.Cluster)
	return nil
}

// set is update for a change that cannot fail by itself.
func (n *Node) set(fn func(s *state.State)) error {
	return n.update(func(s *state.State) error { fn(s); return nil })
}

// journal records in the state file the step an operation has reached
// (and, when term is not 0, the term it moves to). Only steps in the
// recovery table may be journaled: a step a restart could not finish or
// roll back is a bug, refused here.
func (n *Node) journal(kind state.OpKind, step state.Step, term int64) error {
	return n.journalWith(kind, step, term, nil)
}

// journalWith journals a step together with a change of the rest of the
// state (the role and term a step moves to), in one write.
func (n *Node) journalWith(kind state.OpKind, step state.Step, term int64, change func(*state.State)) error {
	if _, ok := recoveryFor(kind, step); !ok {
		return fmt.Errorf("internal error: step %s:%s has no entry in the recovery table", kind, step)
	}
	err := n.set(func(s *state.State) {
		if change != nil {
			change(s)
		}
		if s.Operation == nil || s.Operation.Kind != kind {
			s.Operation = &state.Operation{Kind: kind, StartedAt: time.Now().UTC()}
		}
		s.Operation.Step = step
		if term != 0 {
			s.Operation.Term = term
		}
	})
	if err != nil {
		return err
	}
	n.log.Info("operation step", "op", kind, "step", step, "term", term)
	n.run.noteStep(step)
	crashAt(n.log, kind, step)
	return nil
}

// processStarted is when this tandemd process started (again, after a
// reload re-executed it).
var processStarted = time.Now().UTC()

// Node answers GET /v1/node.
func (n *Node) Node(ctx context.Context) api.NodeInfo {
	ps := n.pg.Status(ctx)
	s := n.State()
	info := api.NodeInfo{
		Name:           n.cfg.Name,
		IP:             n.cfg.IP,
		APIPort:        n.cfg.APIPort,
		TandemdVersion: version.Version,
		Protocol:       version.ProtocolLevel(),
		TandemdPID:     os.Getpid(),
		TandemdStarted: processStarted,
		Fingerprint:    n.fingerprint(),
		Role:           string(s.Role),
		Term:           s.Term,
		Postgres: api.PostgresInfo{
			State:      ps.State,
			PID:        ps.PID,
			Port:       n.cfg.PGPort,
			InRecovery: ps.InRecovery,
			LSN:        ps.LSN,
			Version:    ps.Version,
			VersionNum: ps.VersionNum,
			Restarts:   ps.Restarts,
			Error:      ps.Error,
		},
	}
	if s.Cluster != nil {
		info.Cluster = s.Cluster.Name
		info.Failover = s.Cluster.Failover
		if info.Failover == "" && s.Cluster.Peer != nil {
			info.Failover = FailoverManual
		}
	}
	if s.Cluster != nil && s.Cluster.Maintenance != nil {
		m := *s.Cluster.Maintenance
		info.Maintenance = &m
	}
	if len(n.cfg.CertPEM) > 0 {
		self := n.cfg.QuorumSelf
		info.QuorumMember = &self
	}
	if automatic(s) {
		info.Quorum = n.quorumInfo()
	}
	info.Upgrade = n.up.get()
	info.NextFingerprint = n.nextFingerprint()
	info.Op = opString(s.Operation)
	info.Running, info.Last = n.run.snapshot()
	n.progMu.Lock()
	if n.progress != nil {
		p := *n.progress
		info.Progress = &p
	}
	n.progMu.Unlock()
	return info
}

// PeerFingerprints are the certificates a peer call may present: the
// pinned one and, while the peer rotates its certificate, the next one.
func (n *Node) PeerFingerprints() []string {
	s := n.State()
	if s.Cluster == nil || s.Cluster.Peer == nil {
		return nil
	}
	return []string{s.Cluster.Peer.Fingerprint, s.Cluster.Peer.NextFingerprint}
}

func (n *Node) self(slot string) api.Member {
	return api.Member{Name: n.cfg.Name, IP: n.cfg.IP, APIPort: n.cfg.APIPort, PGPort: n.cfg.PGPort, Fingerprint: n.fingerprint(), Slot: slot}
}

// withConn runs fn over a fresh superuser connection.
func (n *Node) withConn(ctx context.Context, fn func(*pgx.Conn) error) error {
	conn, err := n.pg.Connect(ctx)
	if err != nil {
		return &api.Error{Status: http.StatusServiceUnavailable, Code: api.CodeUnavailable, Message: "PostgreSQL on " + n.cfg.Name + " is not accepting connections: " + err.Error()}
	}
	defer conn.Close(context.Background())
	return fn(conn)
}

func (n *Node) readReplPassword() (string, error) {
	b, err := os.ReadFile(filepath.Join(n.cfg.StateDir, replPasswordFile))
	if err != nil {
		return "", fmt.Errorf("while reading the replication password: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

func conflict(format string, a ...any) error {
	return api.Errorf(http.StatusConflict, api.CodeConflict, format, a...)
}

func badRequest(format string, a ...any) error {
	return api.Errorf(http.StatusBadRequest, api.CodeBadRequest, format, a...)
}

func unavailable(format string, a ...any) error {
	return api.Errorf(http.StatusServiceUnavailable, api.CodeUnavailable, format, a...)
}

func (n *Node) markHeard() {
	n.peerMu.Lock()
	n.lastHeard = time.Now()
	n.peerMu.Unlock()
}

// primaryContact is the primary's word at a heartbeat: its record said
// synchronized, and its WAL was flushed up to flushLSN.
type primaryContact struct {
	synchronized bool
	flushLSN     string
}

// noteContact keeps what a primary peer said at a heartbeat, for
// failover's "synchronized at the last contact"; any other answer (the
// peer is no primary) forgets it.
func (n *Node) noteContact(hb api.Heartbeat) {
	n.peerMu.Lock()
	defer n.peerMu.Unlock()
	if state.Role(hb.Role) != state.RolePrimary || hb.FlushLSN == "" {
		n.contactKnown = false
		return
	}
	n.contact, n.contactKnown = primaryContact{synchronized: hb.Synchronized, flushLSN: hb.FlushLSN}, true
}

func (n *Node) heardAgo() time.Duration {
	n.peerMu.Lock()
	defer n.peerMu.Unlock()
	if n.lastHeard.IsZero() {
		return -1
	}
	return time.Since(n.lastHeard)
}

// event records an event in the cluster's history. Only the primary
// writes the record; a secondary asks the primary, and when that fails
// the event is only logged.
func (n *Node) event(ctx context.Context, kind, node, msg string) {
	_ = n.eventErr(ctx, kind, node, msg)
}

// eventErr is event, saying whether the history took it (a caller that
// must not lose one keeps it for later: maintenance.go).
func (n *Node) eventErr(ctx context.Context, kind, node, msg string) error {
	n.log.Info("event", "kind", kind, "about", node, "message", msg)
	s := n.State()
	if n.cfg.Notify != nil {
		n.cfg.Notify(kind, node, s.Term, msg)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	switch s.Role {
	case state.RolePrimary, state.RoleStandalone:
		err := n.withConn(ctx, func(c *pgx.Conn) error { return AddEvent(ctx, c, kind, node, s.Term, msg) })
		if err != nil {
			n.log.Warn("could not record the event", "kind", kind, "err", err)
		}
		return err
	case state.RoleSecondary:
		if s.Cluster == nil || s.Cluster.Peer == nil {
			return nil
		}
		err := n.peer(memberOf(s.Cluster.Peer)).PeerEvent(ctx, api.PeerEvent{Kind: kind, Message: msg})
		if err != nil {
			n.log.Warn("could not have the primary record the event", "kind", kind, "err", err)
		}
		return err
	}
	return nil
}

func memberOf(p *state.Peer) *api.Member {
	return &api.Member{Name: p.Name, IP: p.IP, APIPort: p.APIPort, PGPort: p.PGPort, Fingerprint: p.Fingerprint, NextFingerprint: p.NextFingerprint, Slot: slotName(p.Name)}
}

// progressOf publishes the progress of a copy (a clone) until the
// returned stop is called; report is the copy's progress callback.
func (n *Node) progressOf(phase string) (report func(done, total int64), stop func()) {
	n.progMu.Lock()
	n.progress = &api.Progress{Phase: phase, Since: time.Now().UTC()}
	n.progMu.Unlock()
	report = func(done, total int64) {
		n.progMu.Lock()
		defer n.progMu.Unlock()
		if n.progress != nil {
			n.progress.DoneBytes, n.progress.TotalBytes = done, total
		}
	}
	stop = func() {
		n.progMu.Lock()
		n.progress = nil
		n.progMu.Unlock()
	}
	return report, stop
}
