package cluster

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tandem-ha/tandem/internal/api"
	"github.com/tandem-ha/tandem/internal/postgres"
	"github.com/tandem-ha/tandem/internal/state"
)

// opStats counts operations and remembers the last durations, for
// /metrics.
type opStats struct {
	mu    sync.Mutex
	count map[[2]string]float64 // {op, outcome}
	last  map[string]float64    // op → seconds
}

func (s *opStats) record(op string, err error, took time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.count == nil {
		s.count, s.last = map[[2]string]float64{}, map[string]float64{}
	}
	outcome := "ok"
	if err != nil {
		outcome = "failed"
	} else {
		s.last[op] = took.Seconds()
	}
	s.count[[2]string{op, outcome}]++
}

// metricsEvery is how often the collector reads PostgreSQL for /metrics:
// a third of Prometheus's usual 15 s scrape interval, and rare enough that
// an idle node's CPU stays low (tandem_metrics_age_seconds says how old
// the values are).
const metricsEvery = 5 * time.Second

// pgMetrics is what /metrics shows from PostgreSQL. The collector reads it
// every metricsEvery, whoever scrapes: a scrape reads only memory, so scrapers,
// however many, never open a connection to PostgreSQL.
type pgMetrics struct {
	at     time.Time
	up     bool
	role   state.Role // the role the replication values were read in
	record *api.Record
	repl   *api.ReplicationInfo
}

// runCollector refreshes the metrics snapshot until shutdown.
func (n *Node) runCollector(ctx context.Context) {
	t := time.NewTicker(metricsEvery)
	defer t.Stop()
	for {
		n.collectPG(ctx)
		select {
		case <-ctx.Done():
			return
		case <-n.run.stopping:
			return
		case <-t.C:
		}
	}
}

// collectPG reads the cluster as View sees it (one connection, closed at
// once, and the supervisor's status) into the snapshot.
func (n *Node) collectPG(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	v, _ := n.View(ctx)
	m := pgMetrics{at: time.Now(), up: v.Node.Postgres.State == postgres.StateRunning, role: state.Role(v.Node.Role), record: v.Record, repl: v.Replication}
	n.metricsMu.Lock()
	n.pgMetrics = m
	n.metricsMu.Unlock()
}

var (
	descRole         = prometheus.NewDesc("tandem_role", "1 for this node's current role (none, primary, secondary, standalone).", []string{"role"}, nil)
	descTerm         = prometheus.NewDesc("tandem_term", "The term this node knows; it grows by one at every change of primary.", nil, nil)
	descPGUp         = prometheus.NewDesc("tandem_postgres_up", "1 when this node's PostgreSQL accepts connections.", nil, nil)
	descVIP          = prometheus.NewDesc("tandem_cluster_ip_held", "1 when this node holds the cluster IP (with the DNS endpoint: when the zone's server answers the cluster DNS name with this node's address).", nil, nil)
	descPeer         = prometheus.NewDesc("tandem_peer_reachable", "1 when the peer answered its last heartbeat (within 3 s).", nil, nil)
	descPeerSilent   = prometheus.NewDesc("tandem_peer_silent_seconds", "Seconds since the peer last answered (-1: never).", nil, nil)
	descSync         = prometheus.NewDesc("tandem_synchronized", "1 when the cluster record says the cluster is synchronized.", nil, nil)
	descLagBytes     = prometheus.NewDesc("tandem_replication_lag_bytes", "Replication lag in bytes, as this node sees it.", nil, nil)
	descLagSeconds   = prometheus.NewDesc("tandem_replication_lag_seconds", "Replication lag in seconds, as this node sees it.", nil, nil)
	descStreaming    = prometheus.NewDesc("tandem_replication_streaming", "1 when the secondary streams (seen from either side).", nil, nil)
	descRetained     = prometheus.NewDesc("tandem_wal_retained_bytes", "WAL the primary keeps in pg_wal for the secondary (its slot).", nil, nil)
	descOps          = prometheus.NewDesc("tandem_operations_total", "Operations run on this node, by outcome.", []string{"operation", "outcome"}, nil)
	descLastDuration = prometheus.NewDesc("tandem_last_operation_duration_seconds", "Duration of the last successful operation of each kind on this node.", []string{"operation"}, nil)
	// Automatic failover mode (docs/quorum.md); absent in manual mode.
	descQuorumUp      = prometheus.NewDesc("tandem_quorum_reachable", "Automatic mode: 1 when this node's etcd client gets answers from the quorum.", nil, nil)
	descQuorumMember  = prometheus.NewDesc("tandem_quorum_member_healthy", "Automatic mode: 1 when the quorum member answers healthy, as this node sees it.", []string{"member"}, nil)
	descLeaderHeld    = prometheus.NewDesc("tandem_leader_key_held", "Automatic mode: 1 while this node holds the leader key.", nil, nil)
	descFenceIn       = prometheus.NewDesc("tandem_fence_deadline_seconds", "Automatic mode, on the holder: seconds before it must fence itself unless a renewal (or a failsafe promise) succeeds.", nil, nil)
	descFailsafe      = prometheus.NewDesc("tandem_failsafe_active", "Automatic mode: 1 while this primary is kept by its secondary's failsafe promise (etcd does not renew its lease).", nil, nil)
	descEligible      = prometheus.NewDesc("tandem_automatic_failover_eligible", "Automatic mode, on the secondary: 1 when it would fail over by itself if the leader key went vacant.", nil, nil)
	descFencedByLease = prometheus.NewDesc("tandem_fenced", "Automatic mode: 1 while this primary has fenced itself and waits for the quorum.", nil, nil)
	descAge           = prometheus.NewDesc("tandem_metrics_age_seconds", "Seconds since tandemd last read the values that come from PostgreSQL (it reads them once a second).", nil, nil)
)

// Describe lists the metrics for Prometheus.
func (n *Node) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRole, descTerm, descPGUp, descVIP, descPeer, descPeerSilent, descSync, descLagBytes, descLagSeconds, descStreaming, descRetained, descOps, descLastDuration, descAge,
		descQuorumUp, descQuorumMember, descLeaderHeld, descFenceIn, descFailsafe, descEligible, descFencedByLease} {
		ch <- d
	}
}

// Collect answers a scrape from memory: the node's state, the cluster IP
// owner's status, and the snapshot the collector last took of PostgreSQL.
func (n *Node) Collect(ch chan<- prometheus.Metric) {
	s := n.State()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	for _, r := range []state.Role{state.RoleNone, state.RolePrimary, state.RoleSecondary, state.RoleStandalone} {
		gauge(descRole, b2f(s.Role == r), string(r))
	}
	gauge(descTerm, float64(s.Term))
	gauge(descVIP, b2f(n.vip.Status().Held))
	ago := n.heardAgo()
	gauge(descPeer, b2f(ago >= 0 && ago < 3*time.Second))
	if ago < 0 {
		gauge(descPeerSilent, -1)
	} else {
		gauge(descPeerSilent, ago.Seconds())
	}
	n.metricsMu.Lock()
	m := n.pgMetrics
	n.metricsMu.Unlock()
	gauge(descPGUp, b2f(m.up))
	if !m.at.IsZero() {
		gauge(descAge, time.Since(m.at).Seconds())
	}
	if m.record != nil {
		gauge(descSync, b2f(m.record.Synchronized))
	}
	// Replication as read in the role the node still has: right after a
	// role change, nothing until the next reading.
	if r := m.repl; r != nil && m.role == s.Role {
		gauge(descLagBytes, float64(r.LagBytes))
		gauge(descLagSeconds, r.LagSeconds)
		gauge(descStreaming, b2f(r.State == "streaming"))
		if s.Role == state.RolePrimary {
			gauge(descRetained, float64(r.RetainedBytes))
		}
	}
	if automatic(s) {
		if q := n.quorumInfo(); q != nil {
			gauge(descQuorumUp, b2f(q.Reachable))
			for _, m := range q.Members {
				gauge(descQuorumMember, b2f(m.Healthy), m.Name)
			}
			gauge(descFailsafe, b2f(q.Failsafe))
			if s.Role == state.RoleSecondary {
				gauge(descEligible, b2f(q.Eligible))
			}
		}
		l := n.leadership()
		gauge(descLeaderHeld, b2f(l != nil && l.Held()))
		if l != nil {
			gauge(descFenceIn, time.Until(l.Deadline()).Seconds())
		}
		n.q.mu.Lock()
		fenced := n.q.fenced
		n.q.mu.Unlock()
		gauge(descFencedByLease, b2f(fenced))
	}
	n.ops.mu.Lock()
	for k, c := range n.ops.count {
		ch <- prometheus.MustNewConstMetric(descOps, prometheus.CounterValue, c, k[0], k[1])
	}
	for op, secs := range n.ops.last {
		gauge(descLastDuration, secs, op)
	}
	n.ops.mu.Unlock()
}
