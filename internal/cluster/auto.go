package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tandem-ha/tandem/internal/api"
	"github.com/tandem-ha/tandem/internal/quorum"
	"github.com/tandem-ha/tandem/internal/quorumspec"
	"github.com/tandem-ha/tandem/internal/state"
)

// Automatic failover (docs/quorum.md). In automatic mode only the holder
// of the leader key may be primary:
//
//   - the primary holds the key under a lease and renews it; when it has
//     not renewed by its deadline (which ends before the lease can expire
//     anywhere) it fences itself: PostgreSQL gets an immediate shutdown and
//     stays down, the cluster IP goes, the services stop. It then waits for
//     the quorum: the key back (nobody replaced it) or a newer primary to
//     rejoin;
//   - the secondary watches the key; when it goes vacant and this node is
//     eligible (named by the sync record in sync and strict mode, within
//     quorum.max_lag in async), it takes the key, records itself primary
//     of the next term, and promotes;
//   - a switchover hands the key over (the handover record tells the
//     secondary the vacancy is planned); a manual failover is refused while
//     the primary holds the key, and --force revokes its lease first.

// byQuorum: an operation started by the quorum (an automatic failover).
const byQuorum = "quorum"

// OpRegain is a fenced primary waiting for the quorum: to hold the key
// again, or to learn of a newer primary and rejoin it.
const OpRegain state.OpKind = "regain"

// Events of automatic mode.
const (
	EventLeaseLost             = "lease_lost"
	EventAutoFailoverStarted   = "automatic_failover_started"
	EventAutoFailoverFinished  = "automatic_failover_finished"
	EventAutoFailoverBlocked   = "automatic_failover_blocked"
	EventPrimaryRegained       = "primary_regained"
	EventLeaseRetaken          = "lease_retaken"
	handoverWait               = 15 * time.Second // a switchover's promote arrives well within this
	quorumCall                 = 3 * time.Second  // bound on one call to the quorum
	watchRetry                 = 500 * time.Millisecond
	automaticFailoverPromoteBy = 30 * time.Second
)

// quorumState is this node's part of the quorum: its member, its client
// and, on the primary, its leadership.
type quorumState struct {
	mu        sync.Mutex
	token     string // of the spec the member and client were made for
	cli       *clientv3.Client
	stopKeep  context.CancelFunc
	keepDone  chan struct{}
	member    *quorum.Member
	memberSt  string
	memberErr string
	lead      *quorum.Leadership
	// What the secondary's watch last concluded.
	eligible bool
	why      string
	info     *api.QuorumInfo // for status (auto_info.go)
	// Failsafe (auto_failsafe.go): on a secondary, the promise given to
	// the primary and whether it is taking the key; on the primary,
	// whether a promise keeps it now.
	promiseUntil time.Time
	campaigning  bool
	failsafe     bool
	// fenced: this primary fenced itself and waits for the quorum.
	fenced      bool
	fenceReason string
	fencedAt    time.Time
}

// automatic says whether s is a cluster in automatic failover mode.
func automatic(s state.State) bool {
	return s.Cluster != nil && s.Cluster.Failover == FailoverAutomatic && s.Cluster.Quorum != nil
}

// startQuorum starts this node's etcd member (kept running in the
// background: it joins its quorum once a second member is up) and the
// client tandemd uses, once per quorum.
func (n *Node) startQuorum(spec api.QuorumSpec) error {
	n.q.mu.Lock()
	defer n.q.mu.Unlock()
	if n.q.cli != nil && n.q.token == quorumID(spec) {
		return nil
	}
	if spec.External() {
		// No member here: this node is a client of the site's etcd.
		cli, err := n.newExternalClient(spec)
		if err != nil {
			return err
		}
		n.q.token, n.q.cli, n.q.stopKeep, n.q.keepDone = quorumID(spec), cli, nil, nil
		n.q.member, n.q.memberSt, n.q.memberErr = nil, "external", ""
		n.log.Info("quorum client started (external etcd)", "endpoints", strings.Join(spec.Etcd, ","), "prefix", spec.Prefix)
		return nil
	}
	if len(n.cfg.CertPEM) == 0 || n.cfg.QuorumDir == "" {
		return errors.New("this tandemd has no quorum member configured (internal error: certificate or quorum dir missing)")
	}
	mc, err := quorumspec.MemberConfig(spec, n.cfg.Name, n.cfg.QuorumDir, n.cfg.CertPEM, n.cfg.KeyPEM)
	if err != nil {
		return err
	}
	mc.Log = n.log.With("component", "quorum")
	// The client talks to this node's own member only: it forwards to the
	// etcd leader, and it fails exactly when this node is cut off from
	// the majority — which is when the primary must fence. A client
	// spread over the three members would send a share of the renewals to
	// a member that is gone and miss the deadline for it.
	ccfg := n.quorumClientConfig(state.State{Cluster: &state.Membership{Quorum: &spec}})
	ccfg.Endpoints = []string{"https://" + n.cfg.QuorumSelf.ClientAddr}
	cli, err := quorum.NewClient(ccfg)
	if err != nil {
		return err
	}
	// The member lives until closeQuorum, after PostgreSQL has stopped at
	// shutdown: not on the node's lifetime, which ends before that.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	n.q.token, n.q.cli, n.q.stopKeep, n.q.keepDone = quorumID(spec), cli, cancel, done
	go func() {
		defer close(done)
		quorum.Keep(ctx, mc, mc.Log, func(m *quorum.Member, st string, err error) {
			n.q.mu.Lock()
			defer n.q.mu.Unlock()
			n.q.member, n.q.memberSt, n.q.memberErr = m, st, ""
			if err != nil {
				n.q.memberErr = err.Error()
			}
		})
	}()
	n.log.Info("quorum member starting", "members", len(spec.Members), "prefix", spec.Prefix)
	return nil
}

// quorumID tells one quorum from another: the embedded quorum's token, or
// an external etcd's endpoints and prefix.
func quorumID(q api.QuorumSpec) string {
	if q.External() {
		return "etcd " + strings.Join(q.Etcd, ",") + " " + q.Prefix
	}
	return q.Token
}

// closeQuorum ends this node's part of the quorum: the leadership (resigned
// when resign: PostgreSQL is down by then, so the secondary may take over
// at once), the client and the member; wipe removes the member's data (the
// node left its cluster).
func (n *Node) closeQuorum(resign, wipe bool) {
	n.q.mu.Lock()
	lead, cli, stop, done := n.q.lead, n.q.cli, n.q.stopKeep, n.q.keepDone
	n.q.lead, n.q.cli, n.q.stopKeep, n.q.keepDone, n.q.token = nil, nil, nil, nil, ""
	n.q.mu.Unlock()
	if lead != nil {
		if resign {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			if err := lead.Resign(ctx); err != nil {
				n.log.Warn("could not resign the leader key; it expires by itself", "err", err)
			}
			cancel()
		} else {
			lead.Close()
		}
	}
	n.watchdogLeft(wipe) // after the lease is given up (watchdog.go)
	if cli != nil {
		cli.Close()
	}
	if stop != nil {
		stop()
		<-done
	}
	if wipe && n.cfg.QuorumDir != "" {
		if err := os.RemoveAll(n.cfg.QuorumDir); err != nil {
			n.log.Warn("could not remove the quorum data", "err", err)
		}
	}
}

// CloseQuorum is tandemd's last step at shutdown, after PostgreSQL has
// stopped: a primary resigns the leader key so the secondary takes over at
// once instead of after the lease runs out.
func (n *Node) CloseQuorum() { n.closeQuorum(true, false) }

func (n *Node) quorumClient() *clientv3.Client {
	n.q.mu.Lock()
	defer n.q.mu.Unlock()
	return n.q.cli
}

func (n *Node) leadership() *quorum.Leadership {
	n.q.mu.Lock()
	defer n.q.mu.Unlock()
	return n.q.lead
}

// holdLeadership makes l this node's tenure: the lease is remembered in
// the state file (a restarted tandemd takes it back) and watched (its loss
// fences this node).
func (n *Node) holdLeadership(l *quorum.Leadership) {
	n.q.mu.Lock()
	old := n.q.lead
	n.q.lead, n.q.fenced, n.q.fenceReason = l, false, ""
	n.q.mu.Unlock()
	if old != nil && old != l {
		old.Close()
	}
	if err := n.set(func(s *state.State) { s.Lease = int64(l.LeaseID()) }); err != nil {
		n.log.Error("could not remember the leader lease", "err", err)
	}
	n.run.goAttach(func(ctx context.Context) { n.watchLease(ctx, l) })
	renew := n.cfg.Lease.RenewEvery
	if renew <= 0 {
		renew = quorum.DefaultLeaseConfig.RenewEvery
	}
	n.run.goAttach(func(ctx context.Context) { n.keepByFailsafe(ctx, l, renew) })
}

// watchLease fences this primary when its tenure ends by itself.
func (n *Node) watchLease(ctx context.Context, l *quorum.Leadership) {
	if !n.untilLost(ctx, l) {
		return
	}
	reason := l.LostReason()
	n.q.mu.Lock()
	current := n.q.lead == l
	if current {
		n.q.lead = nil
	}
	n.q.mu.Unlock()
	if !current || quorum.Intentional(reason) {
		return
	}
	s := n.State()
	if ps := n.pg.Status(ctx); s.Role != state.RolePrimary && ps.State == "running" && ps.InRecovery {
		return // a standby (a promotion that had not begun): it writes nothing
	}
	n.selfFence(ctx, reason)
	if s.Role == state.RolePrimary {
		n.regain(ctx)
		return
	}
	// A secondary whose promotion was under way: its promotion fails on
	// the fence; it goes back to following its primary.
	for !n.inline(OpRejoin, func(ctx context.Context) error { return n.followAsStandby(ctx, memberOf(n.State().Cluster.Peer)) }) {
		if !n.run.wait(ctx, watchRetry) {
			return
		}
	}
}

// untilLost waits until l is lost (true), or the node stops (false).
// Shutting down, it keeps watching while an operation in flight finishes
// (Stop's grace), then gives up, so that a stop or a reload need not wait
// for the node's context: the daemon then stops PostgreSQL and resigns, or
// lets go of both for the reload.
func (n *Node) untilLost(ctx context.Context, l *quorum.Leadership) bool {
	select {
	case <-ctx.Done():
		return false
	case <-l.Lost():
		return true
	case <-n.run.stopping:
	}
	for n.run.held() {
		select {
		case <-ctx.Done():
			return false
		case <-l.Lost():
			return true
		case <-time.After(50 * time.Millisecond):
		}
	}
	return false
}

// selfFence stops this primary accepting writes at once, without waiting
// for the operation in flight: PostgreSQL first (an immediate shutdown),
// then the cluster IP, then the services. The role stays primary in the
// state file: the quorum decides, when it answers, whether this node takes
// the key back or rejoins a newer primary.
func (n *Node) selfFence(ctx context.Context, reason string) {
	start := time.Now()
	n.log.Error("FENCE: the leader lease was not renewed in time; this node stops accepting writes", "reason", reason)
	n.q.mu.Lock()
	n.q.fenced, n.q.fenceReason, n.q.fencedAt = true, reason, start
	n.q.mu.Unlock()
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := n.pg.Fence(fctx); err != nil {
		n.log.Error("FENCE: could not stop PostgreSQL", "err", err)
	} else {
		n.watchdogFenced() // PostgreSQL is down: the watchdog may stop (watchdog.go)
	}
	if err := n.vip.Release(fctx); err != nil {
		n.log.Error("FENCE: could not drop the cluster IP", "err", err)
	}
	s := n.State()
	n.stopServices(fctx, s.Term)
	if err := n.set(func(s *state.State) { s.Lease = 0 }); err != nil {
		n.log.Error("could not forget the lost lease", "err", err)
	}
	n.log.Warn("fenced", "took", time.Since(start).Round(time.Millisecond))
	n.event(fctx, EventLeaseLost, n.cfg.Name, fmt.Sprintf("%s lost the leader lease (%s) and fenced itself in %s: PostgreSQL stopped, cluster IP dropped; it waits for the quorum", n.cfg.Name, reason, time.Since(start).Round(time.Millisecond)))
}

// regain runs, as an operation, the wait of a fenced primary for the
// quorum's word (autoPrimary), retrying while another operation holds the
// exclusion.
func (n *Node) regain(ctx context.Context) {
	for {
		ran := n.inline(OpRegain, func(ctx context.Context) error {
			if s := n.State(); s.Role != state.RolePrimary || !automatic(s) {
				return nil
			}
			if rejoin := n.autoPrimary(ctx); rejoin {
				n.run.rename(OpRejoin)
				return n.rejoinLoop(ctx)
			}
			return nil
		})
		if ran || !n.run.wait(ctx, watchRetry) {
			return
		}
	}
}

// autoPrimary is a primary's decision in automatic mode, at boot and
// after a fence: it may open for writes only holding the leader key. It
// takes back the tenure it had (a quick restart of tandemd), or campaigns
// once the key is vacant; when the quorum names a newer primary it fences
// and reports rejoin. It waits as long as the quorum does not answer.
func (n *Node) autoPrimary(ctx context.Context) (rejoin bool) {
	logged := false
	first := true
	for {
		s := n.State()
		held, newer, why, err := n.tryHoldPrimary(ctx, s)
		switch {
		case held:
			return false
		case newer > 0:
			n.fence(ctx, newer, why)
			return true
		}
		if first && n.leaseHandedOver() {
			// A reload: the lease the old process renewed last is good
			// until its deadline (guardHandedLease fences then), and the
			// quorum member and client of this process may still be
			// starting. Try again rather than fence now.
			if !n.run.wait(ctx, 100*time.Millisecond) {
				return false
			}
			continue
		}
		if first && n.pg.PostmasterRunning() && !n.pg.Fenced() {
			// A postmaster left running (by a tandemd that crashed or
			// restarted) was writable all along; without the key it must
			// stop now, since the secondary may be promoting.
			n.log.Warn("PostgreSQL runs but this node cannot take its tenure back yet; fencing it until the quorum answers", "why", why, "err", err)
			fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			if ferr := n.pg.Fence(fctx); ferr != nil {
				n.log.Error("FENCE: could not stop PostgreSQL", "err", ferr)
			}
			cancel()
			_ = n.vip.Release(ctx)
		}
		first = false
		if !logged {
			n.log.Warn("primary in automatic mode: not open for writes until it holds the leader key", "why", why, "err", err)
			logged = true
		}
		if !n.run.wait(ctx, watchRetry) {
			return false
		}
	}
}

// tryHoldPrimary is one attempt of autoPrimary.
func (n *Node) tryHoldPrimary(ctx context.Context, s state.State) (held bool, newer int64, why string, err error) {
	cli := n.quorumClient()
	if cli == nil {
		return false, 0, "no quorum client", errors.New("the quorum is not started")
	}
	if err := n.watchdogPrecheck(); err != nil {
		return false, 0, "watchdog.mode is required and the watchdog cannot be armed", err
	}
	prefix := s.Cluster.Quorum.Prefix
	qctx, cancel := context.WithTimeout(ctx, quorumCall)
	defer cancel()
	if rec, ok, err := quorum.ReadPrimary(qctx, cli, prefix); err != nil {
		return false, 0, "the quorum does not answer", err
	} else if ok && rec.Node != n.cfg.Name && rec.Term > s.Term {
		return false, rec.Term, fmt.Sprintf("the quorum names %s primary at term %d", rec.Node, rec.Term), nil
	}
	if s.Lease != 0 {
		l, ok, err := quorum.Resume(qctx, cli, prefix, n.cfg.Name, clientv3.LeaseID(s.Lease), n.cfg.Lease, n.log.With("component", "quorum"))
		if err == nil && ok {
			// The watchdog before PostgreSQL opens (watchdog.go).
			if err := n.armWatchdog(l); err != nil {
				_ = l.Resign(context.WithoutCancel(qctx))
				return false, 0, "the watchdog cannot be armed", err
			}
			n.openHolding(ctx, l, s)
			return true, 0, "", nil
		}
		if err == nil {
			_ = n.set(func(s *state.State) { s.Lease = 0 })
		}
	}
	h, taken, err := quorum.CurrentHolder(qctx, cli, prefix)
	if err != nil {
		return false, 0, "the quorum does not answer", err
	}
	if taken {
		return false, 0, fmt.Sprintf("the leader key is held by %s", h.Name), nil
	}
	l, err := quorum.Campaign(qctx, cli, prefix, n.cfg.Name, n.cfg.Lease, n.log.With("component", "quorum"))
	if err != nil {
		return false, 0, "could not take the vacant leader key", err
	}
	// Holding the key, the primary record cannot change under us.
	rec, ok, err := quorum.ReadPrimary(qctx, cli, prefix)
	if err != nil {
		_ = l.Resign(context.WithoutCancel(qctx))
		return false, 0, "the quorum does not answer", err
	}
	if ok && rec.Node != n.cfg.Name && rec.Term > s.Term {
		_ = l.Resign(context.WithoutCancel(qctx))
		return false, rec.Term, fmt.Sprintf("the quorum names %s primary at term %d", rec.Node, rec.Term), nil
	}
	if !ok || rec.Node != n.cfg.Name || rec.Term != s.Term {
		if err := l.WritePrimary(qctx, n.cfg.Name, s.Term); err != nil {
			_ = l.Resign(context.WithoutCancel(qctx))
			return false, 0, "could not record this node as primary", err
		}
	}
	// The watchdog before PostgreSQL opens (watchdog.go).
	if err := n.armWatchdog(l); err != nil {
		_ = l.Resign(context.WithoutCancel(qctx))
		return false, 0, "the watchdog cannot be armed", err
	}
	n.openHolding(ctx, l, s)
	return true, 0, "", nil
}

// openHolding opens this primary for writes under tenure l.
func (n *Node) openHolding(ctx context.Context, l *quorum.Leadership, s state.State) {
	n.q.mu.Lock()
	wasFenced, since := n.q.fenced, n.q.fencedAt
	n.q.mu.Unlock()
	n.holdLeadership(l)
	n.pg.Unfence()
	n.openAsPrimary(ctx, s)
	if wasFenced {
		n.event(ctx, EventPrimaryRegained, n.cfg.Name, fmt.Sprintf("%s holds the leader key again after %s fenced, and is open for writes (term %d)", n.cfg.Name, time.Since(since).Round(time.Millisecond), s.Term))
	}
}

// takeKeyFor is a secondary's campaign before it promotes (automatic
// failover, a switchover, a forced failover): it takes the vacant key and
// records itself primary of term before PostgreSQL opens, so a former
// primary that comes back learns it was replaced.
func (n *Node) takeKeyFor(ctx context.Context, s state.State, term int64, wait time.Duration) (*quorum.Leadership, error) {
	return n.takeKey(ctx, s, term, wait, true)
}

// takeKey is takeKeyFor; honour false does not wait out a failsafe
// promise (the switchover the primary asked for).
func (n *Node) takeKey(ctx context.Context, s state.State, term int64, wait time.Duration, honour bool) (*quorum.Leadership, error) {
	cli := n.quorumClient()
	if cli == nil {
		return nil, unavailable("the quorum is not started on %s", n.cfg.Name)
	}
	// watchdog.mode required without a usable device: the key is not
	// even taken (watchdog.go).
	if err := n.watchdogPrecheck(); err != nil {
		return nil, unavailable("%v", err)
	}
	prefix := s.Cluster.Quorum.Prefix
	cctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	if err := n.beginCampaign(cctx, honour); err != nil {
		return nil, unavailable("%s promised its primary not to take the leader key (failsafe), and the promise is still renewed: the primary is alive", n.cfg.Name)
	}
	defer n.endCampaign()
	var l *quorum.Leadership
	for {
		var err error
		// A quorum still forming (members starting) fails the campaign at
		// once; it is tried again until wait passes.
		l, err = quorum.CampaignAsPrimary(cctx, cli, prefix, n.cfg.Name, term, n.cfg.Lease, n.log.With("component", "quorum"))
		if err == nil {
			break
		}
		if cctx.Err() != nil || !n.run.wait(cctx, 100*time.Millisecond) {
			return nil, unavailable("%s could not take the leader key within %s: %v", n.cfg.Name, wait, err)
		}
	}
	// Every caller opens PostgreSQL for writes next: the watchdog first.
	if err := n.armWatchdog(l); err != nil {
		_ = l.Resign(context.WithoutCancel(ctx))
		return nil, unavailable("%v", err)
	}
	// The handover record (a switchover's) has served; it goes off the
	// write path.
	n.run.goAttach(func(ctx context.Context) {
		cctx, cancel := context.WithTimeout(ctx, quorumCall)
		defer cancel()
		_ = l.ClearHandover(cctx)
	})
	return l, nil
}
