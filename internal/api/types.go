// Package api is the node API: HTTPS + JSON on each node. This file holds
// the wire types, shared with the console, so both sides agree on field
// names; it imports nothing platform-specific, because the console builds
// for Windows and macOS too.
package api

import (
	"time"

	"github.com/tandem-ha/tandem/internal/dnscheck"
)

// NodeInfo answers GET /v1/node.
type NodeInfo struct {
	Name           string `json:"name"`
	IP             string `json:"ip"`
	APIPort        int    `json:"api_port"`
	TandemdVersion string `json:"tandemd_version"`
	// Protocol is the node API protocol this tandemd speaks
	// (version.Protocol; 0 from a build before it was reported).
	Protocol int `json:"protocol,omitempty"`
	// TandemdPID and TandemdStarted name the running tandemd process: a
	// reload keeps the PID (it re-executes in place) and changes the start.
	TandemdPID     int       `json:"tandemd_pid,omitempty"`
	TandemdStarted time.Time `json:"tandemd_started"`
	Fingerprint    string    `json:"fingerprint"`
	// NextFingerprint is the certificate a rotation has prepared and not
	// yet put in force (POST /v1/cert/prepare); the peer accepts both.
	NextFingerprint string `json:"next_fingerprint,omitempty"`
	// Maintenance is the cluster's maintenance mode as this node knows
	// it (absent: never switched on); On: tandemd takes no automatic action.
	Maintenance *MaintenanceInfo `json:"maintenance,omitempty"`
	// Role is none (no cluster), primary, secondary or standalone (a former
	// primary after disassembly, still holding the cluster IP).
	Role     string    `json:"role"`
	Term     int64     `json:"term"`
	Cluster  string    `json:"cluster,omitempty"`
	Op       string    `json:"operation,omitempty"` // journaled operation in flight, kind:step
	Progress *Progress `json:"progress,omitempty"`  // of a long operation (clone, rewind)
	// Running is the operation in flight, with its steps so far; Last is the
	// last one that finished on this node since tandemd started.
	Running  *OperationInfo `json:"operation_running,omitempty"`
	Last     *OperationInfo `json:"operation_last,omitempty"`
	Postgres PostgresInfo   `json:"postgres"`
	// Failover is the cluster's failover mode: manual or automatic
	// (empty outside a cluster).
	Failover string `json:"failover,omitempty"`
	// QuorumMember is this node's own etcd member as it would join a
	// quorum (address and certificate); the console builds the quorum
	// from the nodes' and the witness's at assembly.
	QuorumMember *QuorumMember `json:"quorum_member,omitempty"`
	// Quorum is this node's view of the cluster's quorum (automatic mode).
	Quorum *QuorumInfo `json:"quorum,omitempty"`
	// Upgrade is the last `tandem upgrade` this tandemd ran (nil: none).
	Upgrade *UpgradeInfo `json:"upgrade,omitempty"`
}

// QuorumMember is one of the three members of an embedded quorum: node a,
// node b or the witness.
type QuorumMember struct {
	Name       string `json:"name"`
	PeerAddr   string `json:"peer_addr"`   // host:port, member to member
	ClientAddr string `json:"client_addr"` // host:port, tandemd to member
	// CertPEM is the member's certificate (its node certificate): the
	// members trust exactly the three certificates of the quorum.
	CertPEM     string `json:"cert_pem"`
	Fingerprint string `json:"fingerprint"`
}

// QuorumSpec is how a cluster's quorum is made, in one of two shapes:
//
//   - embedded: the etcd cluster token (members of another cluster refuse
//     these), the key prefix and the three members (the nodes' and the
//     witness's);
//   - external: Etcd, the client URLs of an etcd cluster the site runs,
//     and the key prefix that is this cluster's alone there; each node
//     reaches it with the TLS files of its own config (quorum.etcd.*), so
//     no key or certificate travels in the spec.
type QuorumSpec struct {
	Token   string         `json:"token,omitempty"`
	Prefix  string         `json:"prefix"`
	Members []QuorumMember `json:"members,omitempty"`
	Etcd    []string       `json:"etcd,omitempty"`
}

// External says whether the quorum is an etcd cluster the site runs
// (rather than members embedded in tandemd and the witness).
func (q QuorumSpec) External() bool { return len(q.Etcd) > 0 }

// QuorumInfo is a node's view of the quorum, for status.
type QuorumInfo struct {
	// Reachable: this node's etcd client gets answers (a majority of the
	// members is up and sees each other).
	Reachable bool                 `json:"reachable"`
	Members   []QuorumMemberStatus `json:"members"`
	// External: the quorum is an etcd cluster the site runs (Members are
	// its endpoints), under Prefix; otherwise the members embedded in
	// tandemd and the witness.
	External bool   `json:"external,omitempty"`
	Prefix   string `json:"prefix,omitempty"`
	// Holder of the leader key ("" vacant) and, on the holder, the time
	// left before it must fence itself unless a renewal succeeds.
	Holder     string `json:"holder,omitempty"`
	FenceInMS  int64  `json:"fence_in_ms,omitempty"`
	SyncRecord string `json:"sync_record,omitempty"` // the node the sync record names
	// Eligible says whether this secondary would promote by itself if the
	// leader key went vacant now, and Why not.
	Eligible bool   `json:"eligible"`
	Why      string `json:"why,omitempty"`
	Error    string `json:"error,omitempty"`
	// Failsafe: this primary's lease renewals fail and it is kept primary
	// by its secondary's promise not to take over.
	Failsafe bool `json:"failsafe,omitempty"`
	// Watchdog is this node's watchdog (nil with watchdog.mode off).
	Watchdog *WatchdogInfo `json:"watchdog,omitempty"`
}

// WatchdogInfo is a node's watchdog as status shows it: armed on a
// primary that holds the leader lease, and if not armed where it should
// be, why.
type WatchdogInfo struct {
	Mode      string `json:"mode"` // automatic or required
	Device    string `json:"device"`
	Armed     bool   `json:"armed"`
	Identity  string `json:"identity,omitempty"`   // the driver's name
	TimeoutMS int64  `json:"timeout_ms,omitempty"` // while armed
	// Error: why it is not armed (it could not be opened, or mode
	// required refused the primary role without it).
	Error string `json:"error,omitempty"`
}

// QuorumMemberStatus is one member's health as this node sees it.
type QuorumMemberStatus struct {
	Name       string `json:"name"`
	Healthy    bool   `json:"healthy"`
	EtcdLeader bool   `json:"etcd_leader,omitempty"`
	Error      string `json:"error,omitempty"`
}

// WitnessInfo is GET /v1/witness: the witness, its member and the cluster
// it serves.
type WitnessInfo struct {
	Name           string       `json:"name"`
	IP             string       `json:"ip"`
	TandemdVersion string       `json:"tandemd_version"`
	Fingerprint    string       `json:"fingerprint"`
	Member         QuorumMember `json:"member"`
	Cluster        string       `json:"cluster,omitempty"`
	// State of the member: none (no cluster), starting, running, failed.
	State string `json:"state"`
	Error string `json:"error,omitempty"`
}

// WitnessJoin is POST /v1/witness/join, sent by the console at assembly.
type WitnessJoin struct {
	Cluster string     `json:"cluster"`
	Quorum  QuorumSpec `json:"quorum"`
}

// PostgresInfo is the supervised PostgreSQL instance as tandemd sees it.
type PostgresInfo struct {
	// State is stopped, starting, running, stopping, crashed, no_data or failed.
	State      string `json:"state"`
	PID        int    `json:"pid,omitempty"`
	Port       int    `json:"port"`
	InRecovery bool   `json:"in_recovery"`
	LSN        string `json:"lsn,omitempty"`
	Version    string `json:"version,omitempty"`
	VersionNum int    `json:"version_num,omitempty"`
	Restarts   int    `json:"restarts"`
	Error      string `json:"error,omitempty"`
}

// Health answers GET /health.
type Health struct {
	Status   string `json:"status"` // "ok" or "unavailable"
	Postgres string `json:"postgres"`
}

// ErrorBody is the envelope of every error: {"error":{"code":…,"message":…}}.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail names what went wrong; Code is stable, Message is for people.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Member is one node as the cluster record knows it.
type Member struct {
	Name        string `json:"name"`
	IP          string `json:"ip"`
	APIPort     int    `json:"api_port"`
	PGPort      int    `json:"pg_port"`
	Fingerprint string `json:"fingerprint"`
	// NextFingerprint is accepted as well while the node rotates its
	// certificate (only in a node's view of its peer, never in the record).
	NextFingerprint string `json:"next_fingerprint,omitempty"`
	Slot            string `json:"slot,omitempty"` // the slot the primary keeps for this node
}

// Record is the cluster's own record (schema tandem, replicated).
type Record struct {
	Name      string `json:"name"`
	State     string `json:"state"` // assembled or standalone
	Term      int64  `json:"term"`
	Primary   string `json:"primary"`
	ClusterIP string `json:"cluster_ip"`
	DNSName   string `json:"dns_name"`
	// Endpoint: "vip" or "dns". The table keeps no column for it: a
	// cluster without a cluster IP is one whose endpoint is its DNS name.
	Endpoint     string    `json:"endpoint"`
	Replication  string    `json:"replication"` // async, sync or strict
	Synchronized bool      `json:"synchronized"`
	Members      []Member  `json:"members"`
	UpdatedAt    time.Time `json:"updated_at"`
}

// Event is one line of the cluster's history.
type Event struct {
	ID      int64     `json:"id"`
	At      time.Time `json:"at"`
	Kind    string    `json:"kind"`
	Node    string    `json:"node,omitempty"`
	Term    int64     `json:"term"`
	Message string    `json:"message"`
}

// AssembleRequest is POST /v1/cluster/assemble, sent to the future primary.
type AssembleRequest struct {
	Name        string `json:"name"`
	ClusterIP   string `json:"cluster_ip"` // IP/prefix
	DNSName     string `json:"dns_name"`
	Replication string `json:"replication"` // async, sync (default) or strict
	// Secondary is how the primary reaches the future secondary: its API
	// address, its admin token (the secondary operator's consent to having
	// its database replaced) and the certificate fingerprint the console
	// pinned for it.
	Secondary     PeerRef `json:"secondary"`
	SkipPreflight bool    `json:"skip_preflight,omitempty"`
	// Failover is manual (default) or automatic; automatic needs Quorum.
	Failover string      `json:"failover,omitempty"`
	Quorum   *QuorumSpec `json:"quorum,omitempty"`
	// Endpoint is how clients find the primary: "vip" (default; the
	// cluster IP) or "dns" (the DNS name points at the primary's node IP;
	// no cluster IP).
	Endpoint string `json:"endpoint,omitempty"`
}

// PeerRef points at another node's API.
type PeerRef struct {
	Address     string `json:"address"`
	Token       string `json:"token"`
	Fingerprint string `json:"fingerprint"`
}

// JoinRequest is POST /v1/cluster/join, sent by the primary to the
// secondary with the secondary's admin token.
type JoinRequest struct {
	Name                string      `json:"name"`
	ClusterIP           string      `json:"cluster_ip"`
	DNSName             string      `json:"dns_name"`
	Replication         string      `json:"replication"`
	Term                int64       `json:"term"`
	Primary             Member      `json:"primary"`
	Secondary           Member      `json:"secondary"`
	ReplicationUser     string      `json:"replication_user"`
	ReplicationPassword string      `json:"replication_password"`
	Failover            string      `json:"failover,omitempty"`
	Quorum              *QuorumSpec `json:"quorum,omitempty"`
	Endpoint            string      `json:"endpoint,omitempty"` // as in AssembleRequest
}

// JoinResult is the secondary's answer once it streams.
type JoinResult struct {
	Node       NodeInfo `json:"node"`
	CloneTook  string   `json:"clone_took"`
	OldDataDir string   `json:"old_data_dir,omitempty"`
}

// AssembleResult is the primary's answer once the secondary streams.
type AssembleResult struct {
	Record Record `json:"record"`
	Took   string `json:"took"`
}

// DisassembleRequest is POST /v1/cluster/disassemble on the primary.
type DisassembleRequest struct {
	// Force disassembles the primary side even when the secondary cannot
	// be reached (it is then told nothing and must be cleaned by hand or
	// by `tandem disassemble --force` against it).
	Force bool `json:"force,omitempty"`
}

// DisassembleResult says what happened on each side.
type DisassembleResult struct {
	Primary   string `json:"primary"`
	Secondary string `json:"secondary"`
}

// ReplicationInfo is replication as one node sees it.
type ReplicationInfo struct {
	// On the primary, about the secondary:
	State         string  `json:"state"` // streaming, catching_up, disconnected
	SyncState     string  `json:"sync_state,omitempty"`
	SentLSN       string  `json:"sent_lsn,omitempty"`
	ReplayLSN     string  `json:"replay_lsn,omitempty"`
	LagBytes      int64   `json:"lag_bytes"`
	LagSeconds    float64 `json:"lag_seconds"`
	Slot          string  `json:"slot,omitempty"`
	SlotWALStatus string  `json:"slot_wal_status,omitempty"` // reserved, extended, unreserved, lost
	RetainedBytes int64   `json:"wal_retained_bytes"`
	// On the secondary, about the primary:
	ReceiverStatus string `json:"receiver_status,omitempty"`
	ReceivedLSN    string `json:"received_lsn,omitempty"`
	LastMessage    string `json:"last_message,omitempty"` // RFC 3339
}

// ClusterIPInfo says whether this node holds the cluster IP.
type ClusterIPInfo struct {
	Address   string `json:"address,omitempty"`
	Interface string `json:"interface,omitempty"`
	Held      bool   `json:"held"`
	Conflict  string `json:"conflict,omitempty"`
	Error     string `json:"error,omitempty"`
}

// DNSEndpointInfo is the cluster DNS name as one node sees it.
type DNSEndpointInfo struct {
	Name   string `json:"name"`
	Server string `json:"server"` // the zone's primary server, host:port
	TTL    int    `json:"ttl_seconds"`
	// Pointing: this node is primary and points the name at itself;
	// Served: the server answers with this node's address.
	Pointing bool `json:"pointing"`
	Served   bool `json:"served"`
	// StaleSince: an update is due and has not landed since then.
	StaleSince *time.Time `json:"stale_since,omitempty"`
	Error      string     `json:"error,omitempty"` // the last attempt's
	// Authority is what the server answers now (A and AAAA, asked
	// without recursion), AuthorityTTL their TTL; AuthorityError when it
	// did not answer.
	Authority      []string `json:"authority"`
	AuthorityTTL   int      `json:"authority_ttl_seconds,omitempty"`
	AuthorityError string   `json:"authority_error,omitempty"`
	// Unconfigured: this node has no dns_update settings.
	Unconfigured bool `json:"unconfigured,omitempty"`
}

// ClusterView answers GET /v1/cluster: the cluster as this node sees it.
type ClusterView struct {
	Node        NodeInfo         `json:"node"`
	Record      *Record          `json:"record,omitempty"`
	Replication *ReplicationInfo `json:"replication,omitempty"`
	ClusterIP   ClusterIPInfo    `json:"cluster_ip"`
	// DNS: in a cluster whose endpoint is its DNS name, the name as this
	// node points it and as the zone's primary server answers it now.
	DNS         *DNSEndpointInfo `json:"dns,omitempty"`
	Peer        *Member          `json:"peer,omitempty"`
	PeerContact *PeerContact     `json:"peer_contact,omitempty"`
}

// PreflightRequest is POST /v1/preflight: run the network checks from this
// node's point of view, about itself and Peer.
type PreflightRequest struct {
	Peer      Member `json:"peer"` // name, ip, api_port, pg_port
	ClusterIP string `json:"cluster_ip"`
	DNSName   string `json:"dns_name"`
	DNSServer string `json:"dns_server,omitempty"` // ip or ip:port; empty = the node's resolver
	// Endpoint "dns": no cluster IP; the node checks instead that it can
	// update the DNS name (its dns_update settings, the server, the key).
	Endpoint string `json:"endpoint,omitempty"`
}

// PreflightResult is one node's checks.
type PreflightResult struct {
	Node     string            `json:"node"`
	Checks   []dnscheck.Result `json:"checks"`
	Problems int               `json:"problems"`
}

// EventList answers GET /v1/events.
type EventList struct {
	Events []Event `json:"events"`
}

// Heartbeat answers the peer's GET /v1/peer/heartbeat.
type Heartbeat struct {
	Name          string `json:"name"`
	Role          string `json:"role"`
	Term          int64  `json:"term"`
	Postgres      string `json:"postgres"`
	InRecovery    bool   `json:"in_recovery"`
	SlotWALStatus string `json:"slot_wal_status,omitempty"` // the slot kept for the caller, on a primary
	Operation     string `json:"operation,omitempty"`       // operation in flight, kind:step
	// On a primary, for the secondary's record of this contact: the
	// primary's own cluster record says synchronized, and its WAL is
	// flushed up to FlushLSN. (The secondary's replicated copy of the
	// record is no witness: it lags exactly when the secondary does.)
	Synchronized bool   `json:"synchronized,omitempty"`
	FlushLSN     string `json:"flush_lsn,omitempty"`
	// Maintenance is the maintenance mode as this node knows it, so the
	// peer adopts a later change it missed (maintenance.go in cluster).
	Maintenance *MaintenanceInfo `json:"maintenance,omitempty"`
	// Version and Protocol of the tandemd answering, so that an operation
	// can refuse an incompatible peer before it changes anything.
	Version  string `json:"version,omitempty"`
	Protocol int    `json:"protocol,omitempty"`
}

// PeerEvent is POST /v1/peer/event: the secondary asks the primary to
// record an event, since only the primary writes the record.
type PeerEvent struct {
	Kind    string `json:"kind"`
	Message string `json:"message"`
}

// SwitchoverRequest is POST /v1/cluster/switchover, sent to the primary.
type SwitchoverRequest struct {
	// AllowDataLoss lets the switchover go ahead when the secondary is not
	// caught up: what it has not received is lost.
	AllowDataLoss bool `json:"allow_data_loss,omitempty"`
}

// Step is one timed step of an operation.
type Step struct {
	Name string  `json:"name"`
	MS   float64 `json:"ms"`
}

// SwitchoverResult says what moved.
type SwitchoverResult struct {
	From        string `json:"from"`
	To          string `json:"to"`
	Term        int64  `json:"term"`
	ShutdownLSN string `json:"shutdown_lsn"`
	Took        string `json:"took"`
	Steps       []Step `json:"steps"`
}

// PromoteRequest is the old primary's POST /v1/peer/promote during a
// switchover: promote once the shutdown checkpoint at LSN is replayed.
type PromoteRequest struct {
	Term int64  `json:"term"` // the new term
	LSN  string `json:"lsn"`  // shutdown checkpoint of the old primary; empty = do not wait
	// HandClusterIP: the caller still holds the cluster IP and hands it
	// over once this answer has come (POST /v1/peer/cluster-ip); the new
	// primary takes it by itself, probing first, if that does not come
	// within a few seconds. Protocol 2 and later.
	HandClusterIP bool `json:"hand_cluster_ip,omitempty"`
}

// ClusterIPHandoff is POST /v1/peer/cluster-ip: the old primary of a
// switchover has dropped the cluster IP, and the new primary of Term
// takes it now, without a probe.
type ClusterIPHandoff struct {
	Term int64 `json:"term"`
}

// PromotionPrepare is POST /v1/peer/prepare-promotion: the old primary of
// a switchover has begun, and the secondary makes ready what its
// promotion to Term will need (the old primary's slot) while the old one
// shuts down. A hint: a peer without the route (404) is promoted all the
// same, the longer way.
type PromotionPrepare struct {
	Term int64 `json:"term"`
}

// PromoteResult is the new primary's answer.
type PromoteResult struct {
	Term  int64  `json:"term"`
	Steps []Step `json:"steps"`
}

// FailoverRequest is POST /v1/cluster/failover, sent to the secondary.
type FailoverRequest struct {
	// Force skips the secondary's own check that the primary is silent.
	// The cluster IP probe still runs.
	Force bool `json:"force,omitempty"`
}

// FailoverResult says what happened.
type FailoverResult struct {
	Primary string `json:"primary"`
	Term    int64  `json:"term"`
	Took    string `json:"took"`
	Steps   []Step `json:"steps"`
}

// PeerContact is how the secondary last heard from the primary, for the
// console's failover decision.
type PeerContact struct {
	// LastHeard is the last successful exchange with the peer's API
	// (RFC 3339, empty when never); SilentSeconds is its age.
	LastHeard     string  `json:"last_heard,omitempty"`
	SilentSeconds float64 `json:"silent_seconds"`
	// Synchronized says whether, at the last contact, the record said the
	// cluster was synchronized.
	Synchronized bool `json:"synchronized_at_last_contact"`
}

// Progress is how far a long operation has come.
type Progress struct {
	Phase      string    `json:"phase"`                 // e.g. "clone", "rewind", "catch-up"
	DoneBytes  int64     `json:"done_bytes"`            // copied so far
	TotalBytes int64     `json:"total_bytes,omitempty"` // expected; 0 when unknown
	Since      time.Time `json:"since"`
}

// OperationInfo is one operation as the node's runner sees it: who started
// it, the journaled step it reached, its timed steps, and its outcome.
type OperationInfo struct {
	ID         string     `json:"id"`
	Kind       string     `json:"kind"`
	By         string     `json:"by"`             // console, peer or node (boot, monitor, rejoin)
	Step       string     `json:"step,omitempty"` // last journaled step
	Steps      []Step     `json:"steps,omitempty"`
	StartedAt  time.Time  `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	Outcome    string     `json:"outcome"` // running, succeeded or failed
	Error      string     `json:"error,omitempty"`
}

// Outcomes of an operation.
const (
	OutcomeRunning   = "running"
	OutcomeSucceeded = "succeeded"
	OutcomeFailed    = "failed"
)

// CertPrepareResult answers POST /v1/cert/prepare: the node made (or
// found already made) its next certificate, and its peer, if it has one,
// now accepts both.
type CertPrepareResult struct {
	Node            string `json:"node"`
	Fingerprint     string `json:"fingerprint"`      // in force
	NextFingerprint string `json:"next_fingerprint"` // prepared
	Peer            string `json:"peer,omitempty"`   // the peer that pins both; empty without one
}

// CertSwitchRequest is POST /v1/cert/switch: put in force the prepared
// certificate, named so that a switch never puts in force one the caller
// has not learned.
type CertSwitchRequest struct {
	Fingerprint string `json:"fingerprint"`
}

// CertSwitchResult answers POST /v1/cert/switch.
type CertSwitchResult struct {
	Node        string `json:"node"`
	Old         string `json:"old_fingerprint"`
	Fingerprint string `json:"fingerprint"` // now in force
	Peer        string `json:"peer,omitempty"`
	// PeerConfirmed: the peer saw the new certificate and dropped the old
	// one. When false it still accepts both and drops the old one the next
	// time this node calls it (its heartbeat, within seconds).
	PeerConfirmed bool `json:"peer_confirmed"`
	// RecordUpdated: the cluster record's member row names the new
	// certificate.
	RecordUpdated bool     `json:"record_updated"`
	Notes         []string `json:"notes,omitempty"`
}

// PeerCertRequest is POST /v1/peer/cert, from a node to its peer about its
// own certificate. Sent over the certificate the peer pins, it announces
// the next one (the peer accepts both); sent over that next certificate,
// it confirms the switch (the peer drops the old one).
type PeerCertRequest struct {
	Fingerprint string `json:"fingerprint"`
}

// PeerCertResult is what the peer pins for the caller afterwards.
type PeerCertResult struct {
	Pinned string `json:"pinned"`
	Next   string `json:"next,omitempty"`
}

// FailsafeRequest is POST /v1/peer/failsafe: the primary, whose lease
// renewals fail (etcd does not answer it), asks its secondary to promise
// not to take the leader key for a while.
type FailsafeRequest struct {
	Term int64 `json:"term"`
}

// FailsafeResult is the secondary's promise: it takes no leader key and
// does not promote by itself for WindowMS milliseconds from when it
// answered.
type FailsafeResult struct {
	WindowMS int64 `json:"window_ms"`
}

// FailoverModeRequest is POST /v1/cluster/failover-mode on the primary
// (and, from the primary, POST /v1/peer/failover-mode on the secondary):
// the cluster's failover mode changed while it runs. Automatic needs the
// quorum (the witness joined it first); manual retires it.
type FailoverModeRequest struct {
	Failover string      `json:"failover"`
	Quorum   *QuorumSpec `json:"quorum,omitempty"`
	Term     int64       `json:"term,omitempty"` // peer call: the primary's term
}

// FailoverModeResult says what each node did.
type FailoverModeResult struct {
	Failover  string `json:"failover"`
	Primary   string `json:"primary"`
	Secondary string `json:"secondary"`
}

// MaxSwitchoverLag is how far behind a streaming secondary may be for a
// switchover without allowing data loss: the node refuses beyond it, and
// the console and the web console check it first to say so before
// anything is sent.
const MaxSwitchoverLag = 16 << 20
