// Package state is the node's small durable record: who it is, the last
// term and role it knew, and the operation in flight. It is written
// atomically and fsynced so a crash or power loss leaves the old or the new
// record, never a torn one.
package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/tandem-ha/tandem/internal/api"
	"github.com/tandem-ha/tandem/internal/fsutil"
)

// FileName is the state file's name inside the state dir.
const FileName = "state.json"

// Role is what a node is in its cluster.
type Role string

// Roles a node can remember.
const (
	RoleNone      Role = "none" // not part of a cluster
	RolePrimary   Role = "primary"
	RoleSecondary Role = "secondary"
	// RoleStandalone is a former primary after disassembly: read-write, it
	// keeps the cluster IP, and has no peer.
	RoleStandalone Role = "standalone"
)

// OpKind names an operation (assemble, switchover, …); the kinds are
// declared in package cluster, beside the operations.
type OpKind string

// Step names a journaled step of an operation.
type Step string

// State is what survives restarts.
type State struct {
	Node      string      `json:"node"`
	Term      int64       `json:"term"`
	Role      Role        `json:"role"`
	Operation *Operation  `json:"operation,omitempty"`
	Cluster   *Membership `json:"cluster,omitempty"`
	// Lease is the leader lease this node held as primary in automatic
	// mode (0: none), so a restarted tandemd can take its tenure back
	// rather than fence and campaign again.
	Lease     int64     `json:"lease,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Membership is what a node must know about its cluster even when its
// PostgreSQL (which holds the record) is down: the peer and the cluster IP.
type Membership struct {
	Name        string `json:"name"`
	ClusterIP   string `json:"cluster_ip"` // IP/prefix
	DNSName     string `json:"dns_name"`
	Replication string `json:"replication"`
	Peer        *Peer  `json:"peer,omitempty"`
	// Failover is manual or automatic ("" is manual: a record from before
	// the mode existed).
	Failover string `json:"failover,omitempty"`
	// Endpoint is how clients find the primary: "dns" (the cluster DNS
	// name points at the primary's node IP; no cluster IP) or "" (the
	// cluster IP).
	Endpoint string `json:"endpoint,omitempty"`
	// Quorum is the etcd quorum of automatic mode.
	Quorum *api.QuorumSpec `json:"quorum,omitempty"`
	// Maintenance is the cluster's maintenance mode as this node last
	// knew it (nil: never switched on). Both nodes keep it, so each holds
	// it through a restart and while the other is down; the heartbeat
	// carries it so the two converge (the higher Gen wins).
	Maintenance *api.MaintenanceInfo `json:"maintenance,omitempty"`
}

// Peer is the other node.
type Peer struct {
	Name        string `json:"name"`
	IP          string `json:"ip"`
	APIPort     int    `json:"api_port"`
	PGPort      int    `json:"pg_port"`
	Fingerprint string `json:"fingerprint"`
	// NextFingerprint is accepted besides Fingerprint while the peer
	// rotates its certificate; it replaces Fingerprint as soon as the
	// peer presents it.
	NextFingerprint string `json:"next_fingerprint,omitempty"`
}

// Operation is a journaled operation in flight: its kind and the last step
// that completed, so a restarted tandemd can finish or roll it back.
type Operation struct {
	Kind      OpKind    `json:"kind"`
	Step      Step      `json:"step"`
	Term      int64     `json:"term,omitempty"` // the term the operation moves to
	StartedAt time.Time `json:"started_at"`
}

// Clone returns a deep copy: callers may change it without touching s.
func (s State) Clone() State {
	if s.Cluster != nil {
		c := *s.Cluster
		if c.Peer != nil {
			p := *c.Peer
			c.Peer = &p
		}
		if c.Quorum != nil {
			q := *c.Quorum
			q.Members = slices.Clone(q.Members)
			q.Etcd = slices.Clone(q.Etcd)
			c.Quorum = &q
		}
		if c.Maintenance != nil {
			m := *c.Maintenance
			c.Maintenance = &m
		}
		s.Cluster = &c
	}
	if s.Operation != nil {
		o := *s.Operation
		s.Operation = &o
	}
	return s
}

// Load reads the state file in dir. ok is false when there is none yet.
func Load(dir string) (s State, ok bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, FileName))
	if errors.Is(err, os.ErrNotExist) {
		return State{}, false, nil
	}
	if err != nil {
		return State{}, false, fmt.Errorf("while reading the state file: %w", err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return State{}, false, fmt.Errorf("the state file %s is damaged (%v): restore it from a backup; do not delete it on a node that was primary", filepath.Join(dir, FileName), err)
	}
	return s, true, nil
}

// Save writes s to dir durably.
func Save(dir string, s State) error {
	s.UpdatedAt = time.Now().UTC()
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(filepath.Join(dir, FileName), append(b, '\n'), 0o600)
}

// Open loads the state for node, creating it on first start. A state dir
// that belongs to another node is refused: pointing two configs at one
// state dir would merge two identities.
func Open(dir, node string) (State, error) {
	s, ok, err := Load(dir)
	if err != nil {
		return State{}, err
	}
	if ok {
		if s.Node != node {
			return State{}, fmt.Errorf("state dir %s belongs to node %q, but node.name is %q: fix node.name or point state_dir at this node's own directory", dir, s.Node, node)
		}
		return s, nil
	}
	now := time.Now().UTC()
	s = State{Node: node, Role: RoleNone, CreatedAt: now}
	if err := Save(dir, s); err != nil {
		return State{}, err
	}
	return s, nil
}
