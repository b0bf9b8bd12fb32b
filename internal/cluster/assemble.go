package cluster

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tandem-ha/tandem/internal/api"
	"github.com/tandem-ha/tandem/internal/fsutil"
	"github.com/tandem-ha/tandem/internal/postgres"
	"github.com/tandem-ha/tandem/internal/quorumspec"
	"github.com/tandem-ha/tandem/internal/state"
	"github.com/tandem-ha/tandem/internal/valid"
)

// Operation kinds of assembly.
const (
	OpAssemble state.OpKind = "assemble" // on the primary
	OpJoin     state.OpKind = "join"     // on the secondary
)

// Steps of an assembly on the primary, and of a join.
const (
	StepReplicationRole state.Step = "replication-role"
	StepPGConfig        state.Step = "pg-config"
	StepRecord          state.Step = "record"
	StepJoin            state.Step = "join"
	// StepClone (rejoin.go) is also the join's one step.
)

// An assembly interrupted on the primary is finished when the secondary
// had joined, and undone otherwise; a join interrupted on the secondary
// gets its old data back and holds no cluster again.
var assembleRecovery = stepTable{
	StepReplicationRole: {how: "undo the primary's side (role, slot, pg_hba, record)", afterStart: (*Node).recoverAssemble},
	StepPGConfig:        {how: "undo the primary's side (role, slot, pg_hba, record)", afterStart: (*Node).recoverAssemble},
	StepRecord:          {how: "undo the primary's side (role, slot, pg_hba, record)", afterStart: (*Node).recoverAssemble},
	StepJoin:            {how: "the secondary joined → finish; otherwise undo the primary's side", afterStart: (*Node).recoverAssemble},
}

var joinRecovery = stepTable{
	StepClone: {how: "put back the data the clone moved aside; the node holds no cluster", beforeStart: func(n *Node, _ state.State) error {
		if err := n.restoreAside(); err != nil {
			return err
		}
		return n.set(func(s *state.State) { s.Role, s.Term, s.Cluster, s.Operation = state.RoleNone, 0, nil, nil })
	}},
}

// Replication modes.
const (
	ModeAsync  = "async"
	ModeSync   = "sync"
	ModeStrict = "strict"
)

// ValidateSpec checks the cluster-wide settings of an assembly and fills
// defaults; every problem is listed.
func ValidateSpec(req *api.AssembleRequest) error {
	var p []string
	p = append(p, endpointProblems(&req.Endpoint, req.ClusterIP)...)
	if req.DNSName == "" || len(req.DNSName) > 253 || !valid.Name(req.DNSName, true) {
		p = append(p, fmt.Sprintf("DNS name %q is not a valid host name, such as db.example.net", req.DNSName))
	}
	req.DNSName = strings.TrimSuffix(strings.ToLower(req.DNSName), ".")
	switch req.Replication {
	case "":
		req.Replication = ModeSync
	case ModeAsync, ModeSync, ModeStrict:
	default:
		p = append(p, fmt.Sprintf("replication mode %q must be async, sync or strict", req.Replication))
	}
	if req.Name == "" {
		req.Name = req.DNSName
	}
	if req.Name != "" && !valid.ClusterName(req.Name) {
		p = append(p, fmt.Sprintf("cluster name %q must be letters, digits, '.', '_' and '-', starting with a letter or digit, at most 253 characters", req.Name))
	}
	if req.Secondary.Address == "" {
		p = append(p, "the secondary's API address is missing")
	}
	if req.Secondary.Token == "" {
		p = append(p, "the secondary's admin token is missing: it is that node's consent to having its database replaced")
	}
	if !strings.HasPrefix(req.Secondary.Fingerprint, "sha256:") {
		p = append(p, "the secondary's certificate fingerprint is missing (sha256:…)")
	}
	p = append(p, failoverProblems(req.Failover, req.Quorum)...)
	if req.Failover == "" {
		req.Failover = FailoverManual
	}
	if len(p) > 0 {
		return badRequest("%s", strings.Join(p, "; "))
	}
	return nil
}

// endpointProblems checks the endpoint mode against the cluster IP, and
// fills the default (vip).
func endpointProblems(mode *string, clusterIP string) []string {
	switch *mode {
	case "", EndpointVIP:
		*mode = EndpointVIP
		if _, err := netip.ParsePrefix(clusterIP); err != nil {
			return []string{fmt.Sprintf("cluster IP %q must be an address with its prefix length, such as 10.0.0.10/24", clusterIP)}
		}
	case EndpointDNS:
		if clusterIP != "" {
			return []string{fmt.Sprintf("endpoint dns has no cluster IP, but cluster IP %s was given: drop --cluster-ip, or use --endpoint vip (nodes in one subnet)", clusterIP)}
		}
	default:
		return []string{fmt.Sprintf("endpoint %q must be vip (a cluster IP, nodes in one subnet) or dns (the DNS name points at the primary, nodes in different subnets)", *mode)}
	}
	return nil
}

// membershipEndpoint is the state file's spelling of an endpoint mode: ""
// for the cluster IP, as in a state from before the mode existed.
func membershipEndpoint(mode string) string {
	if mode == EndpointDNS {
		return EndpointDNS
	}
	return ""
}

// canPointName refuses, before anything changes, a DNS-endpoint cluster
// on a node that could not point the name at itself when it becomes
// primary.
func (n *Node) canPointName(mode, name string) error {
	if mode != EndpointDNS {
		return nil
	}
	if n.cfg.DNSUpdater == nil {
		return badRequest("%s: %v", n.cfg.Name, errNoDNSUpdate)
	}
	if err := n.cfg.DNSUpdater.InZone(name); err != nil {
		return badRequest("%s: the cluster DNS name cannot be updated: %v", n.cfg.Name, err)
	}
	return nil
}

// failoverProblems checks the failover mode and, in automatic mode, that a
// quorum comes with it (its members are checked against the nodes later).
func failoverProblems(mode string, q *api.QuorumSpec) []string {
	switch mode {
	case "", FailoverManual:
		if q != nil {
			return []string{"a quorum was given, but the failover mode is manual: pass --failover automatic, or no witness"}
		}
	case FailoverAutomatic:
		if q == nil {
			return []string{"automatic failover needs a quorum: give a witness (--witness HOST) or an external etcd (--etcd URL,...)"}
		}
	default:
		return []string{fmt.Sprintf("failover mode %q must be manual or automatic", mode)}
	}
	return nil
}

// checkQuorumMembers checks, at assembly and join, that the quorum names
// both nodes as they are (their fingerprints) and this node at the
// address its own member listens on.
//
// With an external etcd there are no members to check: the node checks
// that it can use that etcd, and the primary also that the prefix is free
// (checkExternalEtcd).
func (n *Node) checkQuorumMembers(ctx context.Context, q api.QuorumSpec, primary, secondary api.Member) error {
	if err := quorumspec.Check(q, n.cfg.Name); err != nil {
		return badRequest("the quorum is refused: %v", err)
	}
	if q.External() {
		return n.checkExternalEtcd(ctx, q, primary.Name == n.cfg.Name)
	}
	byName := map[string]api.QuorumMember{}
	for _, m := range q.Members {
		byName[m.Name] = m
	}
	// Each member's entry is what that machine gave the console over its
	// pinned API connection; this node can vouch for its own.
	for _, node := range []api.Member{primary, secondary} {
		if _, ok := byName[node.Name]; !ok {
			return badRequest("the quorum does not name node %s as a member", node.Name)
		}
	}
	self := byName[n.cfg.Name]
	if self.PeerAddr != n.cfg.QuorumSelf.PeerAddr || self.ClientAddr != n.cfg.QuorumSelf.ClientAddr {
		return badRequest("the quorum places %s's member at %s/%s, but it listens on %s/%s (quorum.* in its config)", n.cfg.Name, self.PeerAddr, self.ClientAddr, n.cfg.QuorumSelf.PeerAddr, n.cfg.QuorumSelf.ClientAddr)
	}
	if self.Fingerprint != n.cfg.QuorumSelf.Fingerprint {
		return badRequest("the quorum gives %s's member certificate %s, but its member certificate is %s: ask GET /v1/node again", n.cfg.Name, self.Fingerprint, n.cfg.QuorumSelf.Fingerprint)
	}
	return nil
}

// Assemble makes this node the primary of a new cluster, with the node at
// req.Secondary cloned from it as its hot standby. Nothing changes on
// either node until every check has passed; a failure after that rolls
// this node back to how it was, and the secondary rolls itself back.
func (n *Node) Assemble(ctx context.Context, req api.AssembleRequest) (api.AssembleResult, error) {
	if err := ValidateSpec(&req); err != nil {
		return api.AssembleResult{}, err
	}
	return runOp(n, ctx, OpAssemble, byConsole, func(ctx context.Context, _ func(api.AssembleResult, error)) (api.AssembleResult, error) {
		return n.assemble(ctx, req)
	})
}

func (n *Node) assemble(ctx context.Context, req api.AssembleRequest) (res api.AssembleResult, err error) {
	start := time.Now()
	// 1. Preconditions on this node.
	before := n.State()
	if before.Role != state.RoleNone && before.Role != state.RoleStandalone {
		return api.AssembleResult{}, conflict("%s already belongs to cluster %q as %s: disassemble it first", n.cfg.Name, before.Cluster.Name, before.Role)
	}
	if err := n.noPendingJournal(before); err != nil {
		return api.AssembleResult{}, err
	}
	ps := n.pg.Status(ctx)
	if ps.State != "running" {
		return api.AssembleResult{}, unavailable("PostgreSQL on %s is %s; the primary's PostgreSQL must run", n.cfg.Name, ps.State)
	}
	if ps.InRecovery {
		return api.AssembleResult{}, conflict("PostgreSQL on %s is in recovery (a standby); the primary must be read-write", n.cfg.Name)
	}

	// 2. The secondary, reached with its own admin token: its consent.
	sec := newPeerClient(req.Secondary.Address, req.Secondary.Fingerprint, req.Secondary.Token, n.certificate())
	defer sec.close()
	var info api.NodeInfo
	if err := sec.do(ctx, http.MethodGet, "/v1/node", nil, &info); err != nil {
		var ae *api.Error
		if errors.As(err, &ae) && ae.Status == http.StatusUnauthorized {
			return api.AssembleResult{}, badRequest("the secondary refused its admin token: pass the token from the secondary's state dir (admin-token)")
		}
		return api.AssembleResult{}, err
	}
	switch {
	case state.Role(info.Role) != state.RoleNone:
		return api.AssembleResult{}, conflict("the secondary %s already holds a cluster (%q, role %s): disassemble it there first", info.Name, info.Cluster, info.Role)
	case !valid.Label(info.Name, true):
		return api.AssembleResult{}, badRequest("the secondary calls itself %q: a node name is lowercase letters, digits and '-', at most 63 characters", info.Name)
	case checkNodeIP(info.IP) != nil:
		return api.AssembleResult{}, badRequest("the secondary's IP %v", checkNodeIP(info.IP))
	case info.Name == n.cfg.Name:
		return api.AssembleResult{}, badRequest("both nodes are named %q: give each node its own node.name", info.Name)
	case info.IP == n.cfg.IP:
		return api.AssembleResult{}, badRequest("both nodes have node IP %s: each node needs its own", info.IP)
	case info.Fingerprint != req.Secondary.Fingerprint:
		return api.AssembleResult{}, badRequest("the secondary reports certificate %s but presented %s", info.Fingerprint, req.Secondary.Fingerprint)
	case info.Postgres.VersionNum == 0:
		return api.AssembleResult{}, unavailable("PostgreSQL on the secondary %s is %s, so its version cannot be checked: let it start first", info.Name, info.Postgres.State)
	case info.Postgres.VersionNum/10000 != ps.VersionNum/10000:
		return api.AssembleResult{}, conflict("PostgreSQL major versions differ: %s on %s, %s on %s; install the same major version on both", ps.Version, n.cfg.Name, info.Postgres.Version, info.Name)
	}
	if err := n.canPointName(req.Endpoint, req.DNSName); err != nil {
		return api.AssembleResult{}, err
	}
	secondary := api.Member{Name: info.Name, IP: info.IP, APIPort: info.APIPort, PGPort: info.Postgres.Port, Fingerprint: info.Fingerprint, Slot: slotName(info.Name)}
	if req.Failover == FailoverAutomatic {
		if err := n.checkQuorumMembers(ctx, *req.Quorum, n.self(""), secondary); err != nil {
			return api.AssembleResult{}, err
		}
	}
	if !req.SkipPreflight {
		if err := n.preflightBoth(ctx, req, secondary, sec); err != nil {
			return api.AssembleResult{}, err
		}
	}
	n.log.Info("assembling", "op", OpAssemble, "secondary", secondary.Name, "cluster_ip", req.ClusterIP, "replication", req.Replication)

	// 3. From here on this node changes; undo everything on failure.
	undo := &undoList{}
	fail := func(err error) (api.AssembleResult, error) {
		n.log.Error("assembly failed; rolling back", "op", OpAssemble, "err", err)
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		undo.run(rctx, n)
		if serr := n.set(func(s *state.State) { *s = before.Clone() }); serr != nil {
			n.log.Error("could not restore the state file", "err", serr)
		}
		return api.AssembleResult{}, err
	}
	if err := n.journal(OpAssemble, StepReplicationRole, 0); err != nil {
		return api.AssembleResult{}, err
	}
	password := randomPassword()
	if err := fsutil.WriteFileAtomic(filepath.Join(n.cfg.StateDir, replPasswordFile), []byte(password+"\n"), 0o600); err != nil {
		return fail(err)
	}
	err = n.withConn(ctx, func(c *pgx.Conn) error {
		if err := createReplicationRole(ctx, c, password); err != nil {
			return err
		}
		undo.add("drop the replication role", func(ctx context.Context) error {
			return n.withConn(ctx, func(c *pgx.Conn) error {
				_, err := c.Exec(ctx, dropRoleSQL)
				return err
			})
		})
		if _, err := c.Exec(ctx, `SELECT pg_create_physical_replication_slot($1, true) WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)`, secondary.Slot); err != nil {
			return fmt.Errorf("while creating replication slot %s: %w", secondary.Slot, err)
		}
		undo.add("drop the slot", func(ctx context.Context) error { return n.dropSlot(ctx, secondary.Slot) })
		return nil
	})
	if err != nil {
		return fail(err)
	}

	if err := n.journal(OpAssemble, StepPGConfig, 0); err != nil {
		return fail(err)
	}
	undo.add("restore pg_hba.conf and settings", func(ctx context.Context) error {
		if err := n.setHBA(nil); err != nil {
			return err
		}
		return n.pg.StartPrimary(ctx, baseSettings(n.cfg.MaxSlotWALKeep), false)
	})
	if err := n.setHBA([]string{n.cfg.IP, secondary.IP}); err != nil {
		return fail(err)
	}
	// Synchronous replication is switched on only once the secondary
	// streams: before that, every commit (the record's too) would wait.
	if err := n.pg.StartPrimary(ctx, primarySettings(n.cfg.MaxSlotWALKeep, secondary.Name, false), false); err != nil {
		return fail(err)
	}

	if err := n.journal(OpAssemble, StepRecord, 0); err != nil {
		return fail(err)
	}
	rec := api.Record{
		Name: req.Name, State: "assembled", Term: 1, Primary: n.cfg.Name,
		ClusterIP: req.ClusterIP, DNSName: req.DNSName, Replication: req.Replication,
		Members: []api.Member{n.self(""), secondary},
	}
	var oldRec *api.Record
	_ = n.withConn(ctx, func(c *pgx.Conn) error {
		if r, err := ReadRecord(ctx, c); err == nil {
			oldRec = &r
		}
		return nil
	})
	undo.add("restore the cluster record", func(ctx context.Context) error {
		return n.withConn(ctx, func(c *pgx.Conn) error {
			if oldRec != nil {
				return WriteRecord(ctx, c, *oldRec)
			}
			_, err := c.Exec(ctx, `DROP SCHEMA IF EXISTS tandem CASCADE`)
			return err
		})
	})
	if err := n.withConn(ctx, func(c *pgx.Conn) error { return WriteRecord(ctx, c, rec) }); err != nil {
		return fail(err)
	}

	err = n.set(func(s *state.State) {
		s.Role, s.Term = state.RolePrimary, 1
		s.Cluster = &state.Membership{Name: req.Name, ClusterIP: req.ClusterIP, DNSName: req.DNSName, Replication: req.Replication,
			Peer:     &state.Peer{Name: secondary.Name, IP: secondary.IP, APIPort: secondary.APIPort, PGPort: secondary.PGPort, Fingerprint: secondary.Fingerprint},
			Failover: req.Failover, Quorum: req.Quorum, Endpoint: membershipEndpoint(req.Endpoint)}
	})
	if err == nil {
		err = n.journal(OpAssemble, StepJoin, 0)
	}
	if err != nil {
		return fail(err)
	}
	if req.Failover == FailoverAutomatic {
		// The quorum before the cluster IP: this primary holds the leader
		// key (and is recorded primary of term 1) before it serves as one.
		undo.add("leave the quorum", func(context.Context) error { n.closeQuorum(true, true); return nil })
		if err := n.startQuorum(*req.Quorum); err != nil {
			return fail(err)
		}
		now := n.State()
		l, err := n.takeKeyFor(ctx, now, 1, 30*time.Second)
		if err != nil {
			return fail(fmt.Errorf("the quorum did not form (is the witness up and given this cluster, or the external etcd up?): %w", err))
		}
		n.holdLeadership(l)
	}
	undo.add("give up the cluster IP", func(ctx context.Context) error {
		if before.Role == state.RoleStandalone {
			return nil
		}
		return n.vip.Release(ctx)
	})
	// In dns mode this starts pointing the name here, in the background
	// (endpoint.go): the dns_updated event says when it is served.
	if prefix, err := netip.ParsePrefix(req.ClusterIP); err == nil {
		n.vip.SetAddress(prefix)
	}
	if err := n.vip.Acquire(ctx); err != nil {
		n.event(ctx, EventClusterIPConflict, n.cfg.Name, err.Error())
		return fail(conflict("the cluster IP %s cannot be taken: %v", req.ClusterIP, err))
	}

	// 4. The secondary clones from us through the slot and streams.
	var jr api.JoinResult
	err = sec.do(ctx, http.MethodPost, "/v1/cluster/join", api.JoinRequest{
		Name: req.Name, ClusterIP: req.ClusterIP, DNSName: req.DNSName, Replication: req.Replication, Term: 1,
		Primary: n.self(""), Secondary: secondary,
		ReplicationUser: ReplicationUser, ReplicationPassword: password,
		Failover: req.Failover, Quorum: req.Quorum, Endpoint: membershipEndpoint(req.Endpoint),
	}, &jr)
	if err != nil {
		return fail(fmt.Errorf("the secondary could not join: %w", err))
	}

	// 5. Done: synchronous replication on when asked for, event, journal closed.
	if req.Replication != ModeAsync {
		if err := n.pg.StartPrimary(ctx, primarySettings(n.cfg.MaxSlotWALKeep, secondary.Name, true), false); err != nil {
			n.log.Error("could not switch synchronous replication on; the monitor will retry", "err", err)
		}
	}
	took := time.Since(start).Round(time.Millisecond)
	where := "cluster IP " + req.ClusterIP
	if req.Endpoint == EndpointDNS {
		where = "endpoint: the DNS name " + req.DNSName
	}
	n.event(ctx, EventAssembled, n.cfg.Name, fmt.Sprintf("cluster %s assembled: primary %s, secondary %s, replication %s, %s (%s; the secondary's clone took %s)",
		req.Name, n.cfg.Name, secondary.Name, req.Replication, where, took, jr.CloneTook))
	if err := n.forgetOperation(); err != nil {
		return api.AssembleResult{}, err
	}
	n.log.Info("assembled", "op", OpAssemble, "took", took)
	if before.Role != state.RoleStandalone {
		n.runHook(ctx, string(before.Role), string(state.RolePrimary), 1)
		n.startServices(ctx, 1)
	}
	var out api.Record
	_ = n.withConn(ctx, func(c *pgx.Conn) error {
		var err error
		out, err = ReadRecord(ctx, c)
		return err
	})
	return api.AssembleResult{Record: out, Took: took.String()}, nil
}

// Join makes this node the hot standby of the primary that asks: its own
// data is moved aside, a fresh copy is cloned through the slot, and the old
// data is deleted only once the copy streams. Called by the primary with
// this node's admin token, presenting its node certificate: the one the
// request names as the primary's, which this node then pins.
func (n *Node) Join(ctx context.Context, req api.JoinRequest) (api.JoinResult, error) {
	if err := validateJoin(req, n.cfg.Name); err != nil {
		return api.JoinResult{}, err
	}
	if got := api.ClientFingerprint(ctx); got != req.Primary.Fingerprint {
		if got == "" {
			got = "no client certificate"
		}
		return api.JoinResult{}, api.Errorf(http.StatusForbidden, api.CodeForbidden,
			"the join request names the primary's certificate %s, but its caller presented %s: only the primary itself may ask a node to join it", req.Primary.Fingerprint, got)
	}
	return runOp(n, ctx, OpJoin, byPeer, func(ctx context.Context, _ func(api.JoinResult, error)) (api.JoinResult, error) {
		return n.join(ctx, req)
	})
}

func (n *Node) join(ctx context.Context, req api.JoinRequest) (api.JoinResult, error) {
	before := n.State()
	if before.Role != state.RoleNone {
		return api.JoinResult{}, conflict("%s already belongs to cluster %q as %s", n.cfg.Name, before.Cluster.Name, before.Role)
	}
	if err := n.noPendingJournal(before); err != nil {
		return api.JoinResult{}, err
	}
	if req.Failover == FailoverAutomatic {
		if err := n.checkQuorumMembers(ctx, *req.Quorum, req.Primary, req.Secondary); err != nil {
			return api.JoinResult{}, err
		}
	}
	if err := n.canPointName(req.Endpoint, req.DNSName); err != nil {
		return api.JoinResult{}, err
	}
	n.log.Info("joining", "op", OpJoin, "primary", req.Primary.Name, "cluster", req.Name, "failover", req.Failover)
	restore := func() {
		if err := n.set(func(s *state.State) { *s = before.Clone() }); err != nil {
			n.log.Error("could not restore the state file", "err", err)
		}
	}
	err := n.set(func(s *state.State) {
		s.Cluster = &state.Membership{Name: req.Name, ClusterIP: req.ClusterIP, DNSName: req.DNSName, Replication: req.Replication,
			Peer:     &state.Peer{Name: req.Primary.Name, IP: req.Primary.IP, APIPort: req.Primary.APIPort, PGPort: req.Primary.PGPort, Fingerprint: req.Primary.Fingerprint},
			Failover: req.Failover, Quorum: req.Quorum, Endpoint: membershipEndpoint(req.Endpoint)}
	})
	if err == nil {
		err = n.journal(OpJoin, StepClone, 0)
	}
	if err != nil {
		restore()
		return api.JoinResult{}, err
	}
	if err := fsutil.WriteFileAtomic(filepath.Join(n.cfg.StateDir, replPasswordFile), []byte(req.ReplicationPassword+"\n"), 0o600); err != nil {
		restore()
		return api.JoinResult{}, err
	}
	took, aside, err := n.cloneFrom(ctx, req.Primary, req.Secondary.Slot, req.ReplicationPassword, func(ctx context.Context) error {
		return n.pg.StartPrimary(ctx, baseSettings(n.cfg.MaxSlotWALKeep), false)
	})
	if err != nil {
		restore()
		return api.JoinResult{}, err
	}
	if err := n.set(func(s *state.State) { s.Role, s.Term, s.Operation = state.RoleSecondary, req.Term, nil }); err != nil {
		return api.JoinResult{}, err
	}
	if req.Failover == FailoverAutomatic {
		// The third member: from now on the quorum survives any one of
		// the three machines.
		if err := n.startQuorum(*req.Quorum); err != nil {
			n.log.Error("could not start the quorum member; automatic failover to this node is not possible until it runs", "err", err)
		}
	}
	n.markHeard()
	n.setVIPAddress()
	n.runHook(ctx, string(state.RoleNone), string(state.RoleSecondary), req.Term)
	n.log.Info("joined; streaming from the primary", "op", OpJoin, "primary", req.Primary.Name, "clone_took", took)
	return api.JoinResult{Node: n.Node(ctx), CloneTook: took.Round(time.Millisecond).String(), OldDataDir: aside}, nil
}

// cloneFrom replaces this node's data with a copy of the primary's, taken
// through slot, and starts it as a streaming standby. The supervisor moves
// the old data aside first; it is deleted only once the copy streams. On
// failure the old data is put back and restart (when not nil) starts it
// again as it was. It returns the old data's path, already removed, for
// the record.
func (n *Node) cloneFrom(ctx context.Context, primary api.Member, slot, password string, restart func(context.Context) error) (time.Duration, string, error) {
	start := time.Now()
	src := postgres.Source{Host: primary.IP, Port: primary.PGPort, User: ReplicationUser, Password: password}
	report, stop := n.progressOf("clone")
	aside, err := n.pg.Clone(ctx, src, slot, report)
	stop()
	// The old data must go back and start even when shutdown cancelled
	// the operation: it is this node's database.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	fail := func(cause error) (time.Duration, string, error) {
		n.log.Error("clone failed; the old data is back", "err", cause, "old_data_dir", aside)
		if restart != nil {
			if err := restart(rctx); err != nil {
				n.log.Error("could not restart PostgreSQL on the old data", "err", err)
			}
		}
		return 0, "", cause
	}
	if err != nil {
		return fail(fmt.Errorf("while cloning from %s: %w", primary.Name, err))
	}
	undo := func(cause error) (time.Duration, string, error) {
		if err := n.pg.RestoreAside(rctx, aside); err != nil {
			n.log.Error("could not put the old data back", "old_data_dir", aside, "err", err)
		}
		return fail(cause)
	}
	if err := n.pg.StartStandby(ctx, standbySettings(n.cfg.MaxSlotWALKeep, primary, n.cfg.Name, password, slot)); err != nil {
		return undo(fmt.Errorf("while starting the clone: %w", err))
	}
	if err := n.waitStreaming(ctx, 60*time.Second); err != nil {
		return undo(err)
	}
	// Before the journal closes: a copy left aside would be taken for an
	// interrupted clone at the next start.
	if err := n.pg.DiscardAside(ctx, aside); err != nil {
		n.log.Warn("could not remove the old data", "old_data_dir", aside, "err", err)
	}
	return time.Since(start), aside, nil
}

// waitStreaming waits until the WAL receiver streams from the primary
// (after a clone, a rejoin, a restart in place).
func (n *Node) waitStreaming(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	last := "none"
	for time.Now().Before(deadline) {
		status, err := n.receiverStatus(ctx)
		if err == nil {
			last = status
		}
		if err == nil && status == "streaming" {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("PostgreSQL on %s did not start streaming from the primary within %s (WAL receiver: %s)", n.cfg.Name, limit, last)
}

// receiverStatus is the WAL receiver's status ("streaming", …), "none"
// when there is none.
func (n *Node) receiverStatus(ctx context.Context) (string, error) {
	var status string
	err := n.withConn(ctx, func(c *pgx.Conn) error {
		return c.QueryRow(ctx, `SELECT coalesce((SELECT status FROM pg_stat_wal_receiver), 'none')`).Scan(&status)
	})
	return status, err
}

// validateJoin checks a join request where it enters: every field ends
// up in the state file, tandem.conf (primary_conninfo, primary_slot_name,
// synchronous_standby_names once this node is primary), the password file
// or a PostgreSQL tool's arguments, so each must be of its own narrow
// kind; a refusal names the field.
func validateJoin(r api.JoinRequest, self string) error {
	var p []string
	if r.Secondary.Name != self {
		p = append(p, fmt.Sprintf("the join request is for node %q, but this is %q", r.Secondary.Name, self))
	}
	if !valid.Label(r.Primary.Name, true) {
		p = append(p, fmt.Sprintf("the primary's name %q must be lowercase letters, digits and '-', at most 63 characters", r.Primary.Name))
	} else if r.Primary.Name == self {
		p = append(p, fmt.Sprintf("the primary is named %q, like this node", r.Primary.Name))
	}
	if err := checkNodeIP(r.Primary.IP); err != nil {
		p = append(p, "the primary's IP "+err.Error())
	}
	if err := checkNodeIP(r.Secondary.IP); err != nil {
		p = append(p, "the secondary's IP "+err.Error())
	}
	if r.Primary.PGPort < 1 || r.Primary.PGPort > 65535 || r.Primary.APIPort < 1 || r.Primary.APIPort > 65535 {
		p = append(p, "the primary's ports are invalid")
	}
	if !fingerprintRE.MatchString(r.Primary.Fingerprint) {
		p = append(p, fmt.Sprintf("the primary's certificate fingerprint %q must be sha256: and 64 lowercase hex digits", r.Primary.Fingerprint))
	}
	if !valid.ClusterName(r.Name) {
		p = append(p, fmt.Sprintf("the cluster name %q must be letters, digits, '.', '_' and '-', starting with a letter or digit, at most 253 characters", r.Name))
	}
	endpoint := r.Endpoint
	p = append(p, endpointProblems(&endpoint, r.ClusterIP)...)
	if len(r.DNSName) > 253 || !valid.Name(r.DNSName, true) {
		p = append(p, fmt.Sprintf("the DNS name %q is not a valid host name", r.DNSName))
	}
	p = append(p, failoverProblems(r.Failover, r.Quorum)...)
	switch r.Replication {
	case ModeAsync, ModeSync, ModeStrict:
	default:
		p = append(p, fmt.Sprintf("the replication mode %q must be async, sync or strict", r.Replication))
	}
	if r.Term < 1 {
		p = append(p, "the term must be at least 1")
	}
	if r.ReplicationUser != ReplicationUser {
		p = append(p, fmt.Sprintf("the replication user %q must be %s", r.ReplicationUser, ReplicationUser))
	}
	if err := checkReplicationPassword(r.ReplicationPassword); err != nil {
		p = append(p, err.Error())
	}
	if !slotRE.MatchString(r.Secondary.Slot) {
		p = append(p, fmt.Sprintf("the slot name %q must be 1 to 63 lowercase letters, digits and '_'", r.Secondary.Slot))
	}
	if len(p) > 0 {
		return badRequest("%s", strings.Join(p, "; "))
	}
	return nil
}

// createReplicationRole creates or updates the replication role. Its
// password goes to PostgreSQL only as a SCRAM verifier computed here (as
// psql's \password does), so the statement, which PostgreSQL may log
// (log_statement, a failed statement's error line), holds no password.
func createReplicationRole(ctx context.Context, c *pgx.Conn, password string) error {
	verifier, err := postgres.SCRAMVerifier(password)
	if err != nil {
		return fmt.Errorf("while preparing the replication role's password: %w", err)
	}
	if _, err := c.Exec(ctx, roleSQL(verifier)); err != nil {
		return fmt.Errorf("while creating the replication role: %w", err)
	}
	return nil
}

// roleSQL creates or updates the replication role with a password given
// as a SCRAM verifier (base64 and '$:', quoted anyway).
func roleSQL(verifier string) string {
	lit := "'" + strings.ReplaceAll(verifier, "'", "''") + "'"
	return `DO $$BEGIN
IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '` + ReplicationUser + `') THEN
	ALTER ROLE ` + ReplicationUser + ` WITH REPLICATION LOGIN PASSWORD ` + lit + `;
ELSE
	CREATE ROLE ` + ReplicationUser + ` WITH REPLICATION LOGIN PASSWORD ` + lit + `;
END IF;
END$$;
-- pg_rewind reads the source's files through these functions; granting
-- them spares a rejoin the superuser's password.
GRANT EXECUTE ON FUNCTION pg_catalog.pg_ls_dir(text, boolean, boolean) TO ` + ReplicationUser + `;
GRANT EXECUTE ON FUNCTION pg_catalog.pg_stat_file(text, boolean) TO ` + ReplicationUser + `;
GRANT EXECUTE ON FUNCTION pg_catalog.pg_read_binary_file(text) TO ` + ReplicationUser + `;
GRANT EXECUTE ON FUNCTION pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean) TO ` + ReplicationUser + `;
-- A rejoining node makes a just-promoted primary CHECKPOINT before
-- pg_rewind: until then its control file still names the old timeline.
DO $$BEGIN
IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pg_checkpoint') THEN
	GRANT pg_checkpoint TO ` + ReplicationUser + `;
END IF;
END$$`
}

// dropRoleSQL removes the replication role. DROP ROLE alone refuses while
// the role holds the privileges roleSQL granted it (pg_rewind's functions),
// so DROP OWNED BY revokes them first.
const dropRoleSQL = `DO $$BEGIN
IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '` + ReplicationUser + `') THEN
	DROP OWNED BY ` + ReplicationUser + `;
	DROP ROLE ` + ReplicationUser + `;
END IF;
END$$`

func (n *Node) dropSlot(ctx context.Context, slot string) error {
	return n.withConn(ctx, func(c *pgx.Conn) error {
		_, err := c.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1 AND NOT active`, slot)
		return err
	})
}

// setHBA lets the replication role in from exactly ips, both nodes' IPs
// so that either can be primary (the caller reloads). The secondary's
// copy comes with its clone.
func (n *Node) setHBA(ips []string) error {
	if err := n.pg.SetReplicationPeers(ips); err != nil {
		return fmt.Errorf("while writing pg_hba.conf: %w", err)
	}
	return nil
}

const passwordAlphabet = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"

func randomPassword() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = passwordAlphabet[int(b[i])%len(passwordAlphabet)]
	}
	return string(b)
}

// undoList runs compensations in reverse order, logging failures.
type undoList struct {
	steps []undoStep
}

type undoStep struct {
	what string
	fn   func(context.Context) error
}

func (u *undoList) add(what string, fn func(context.Context) error) {
	u.steps = append(u.steps, undoStep{what, fn})
}

func (u *undoList) run(ctx context.Context, n *Node) {
	for i := len(u.steps) - 1; i >= 0; i-- {
		if err := u.steps[i].fn(ctx); err != nil {
			n.log.Error("rollback step failed", "step", u.steps[i].what, "err", err)
		}
	}
}

// recoverAssemble settles an assembly a restart interrupted on the
// primary: did the secondary finish joining? Then only the last steps are
// missing; otherwise undo the primary's side.
func (n *Node) recoverAssemble(ctx context.Context) {
	s := n.State()
	if s.Cluster != nil && s.Cluster.Peer != nil {
		hb, err := n.askPeer(ctx, memberOf(s.Cluster.Peer), 2*time.Second)
		if err == nil && state.Role(hb.Role) == state.RoleSecondary {
			n.log.Info("the secondary had joined; finishing the assembly")
			n.event(ctx, EventAssembled, n.cfg.Name, "cluster "+s.Cluster.Name+" assembled (finished after a tandemd restart)")
			if err := n.forgetOperation(); err != nil {
				n.log.Error("could not close the journal", "err", err)
			}
			return
		}
	}
	n.log.Warn("rolling back an assembly interrupted by a restart")
	if s.Cluster != nil && s.Cluster.Peer != nil {
		if err := n.dropPrimarySide(ctx, slotName(s.Cluster.Peer.Name)); err != nil {
			n.log.Error("rollback incomplete", "err", err)
		}
	}
	_ = n.withConn(ctx, func(c *pgx.Conn) error {
		_, err := c.Exec(ctx, `DROP SCHEMA IF EXISTS tandem CASCADE`)
		return err
	})
	_ = n.vip.Release(ctx)
	if err := n.set(func(s *state.State) { s.Role, s.Term, s.Cluster, s.Operation = state.RoleNone, 0, nil, nil }); err != nil {
		n.log.Error("could not save the state", "err", err)
	}
}
