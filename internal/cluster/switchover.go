package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tandem-ha/tandem/internal/api"
	"github.com/tandem-ha/tandem/internal/clusterip"
	"github.com/tandem-ha/tandem/internal/quorum"
	"github.com/tandem-ha/tandem/internal/state"
)

// Operation kinds of a planned change of primary.
const (
	OpSwitchover state.OpKind = "switchover" // on the old primary
	OpPromote    state.OpKind = "promote"    // on the new primary (switchover and failover)
)

// Steps of a switchover on the old primary, and of a promotion.
const (
	StepDemote      state.Step = "demote"       // services stopped, cluster IP dropped, PostgreSQL shutting down
	StepPromotePeer state.Step = "promote-peer" // the peer was asked to promote
	// StepFollow (rejoin.go) doubles as the switchover's last step: the
	// peer promoted, this node restarts as its standby.
	StepPromote state.Step = "promote" // pg_promote asked; the term not yet saved
)

// A switchover interrupted on the old primary is settled by asking the
// peer how it ended: promoted → follow it (a rejoin); not promoted → stay
// primary; no answer → stay stopped and keep asking, because two
// primaries are worse than none for a while.
var switchoverRecovery = stepTable{
	StepDemote:      {how: "ask the peer whether it promoted: follow it, or carry on as primary", atBoot: (*Node).resolveSwitchover},
	StepPromotePeer: {how: "ask the peer whether it promoted: follow it, or carry on as primary", atBoot: (*Node).resolveSwitchover},
	StepFollow:      {how: "ask the peer whether it promoted: follow it, or carry on as primary", atBoot: (*Node).resolveSwitchover},
}

// A promotion interrupted on the new primary: PostgreSQL's own state says
// whether it happened.
var promoteRecovery = stepTable{
	StepPromote: {how: "standby.signal gone → the promotion happened: primary at the new term; else stay secondary", atBoot: (*Node).resolvePromote},
}

// Event kinds of role changes.
const (
	EventSwitchoverStarted  = "switchover_started"
	EventSwitchoverFinished = "switchover_finished"
	EventSwitchoverFailed   = "switchover_failed"
)

// steps times an operation's steps for its result, the log and the
// runner (status shows the steps of an operation in flight).
type steps struct {
	run  *runner
	last time.Time
	list []api.Step
}

func (n *Node) newSteps() *steps { return &steps{run: n.run, last: time.Now()} }

func (s *steps) mark(name string) {
	now := time.Now()
	took := now.Sub(s.last)
	s.list = append(s.list, api.Step{Name: name, MS: float64(took.Microseconds()) / 1000})
	s.last = now
	s.run.mark(name, took)
}

// Switchover hands the primary role to the secondary with nothing lost:
//
//  1. check that the secondary answers, streams and has caught up;
//  2. stop the role-bound services, drop the cluster IP, CHECKPOINT (so the
//     shutdown checkpoint is short), fast shutdown, read the shutdown
//     checkpoint's LSN;
//  3. ask the secondary to promote once it has replayed that checkpoint —
//     it bumps the term, takes the cluster IP and starts the services;
//  4. restart here as a standby of the new primary, through our slot there.
//
// A failure before the secondary promoted restarts this node as primary.
// When the outcome is unknown (the secondary stopped answering mid-way),
// this node answers its caller and stays down, settling it as soon as the
// secondary answers, rather than risk two primaries. The operation runs on
// the node's lifetime: a console that goes away changes nothing.
func (n *Node) Switchover(ctx context.Context, req api.SwitchoverRequest) (api.SwitchoverResult, error) {
	return runOp(n, ctx, OpSwitchover, byConsole, func(ctx context.Context, reply func(api.SwitchoverResult, error)) (api.SwitchoverResult, error) {
		return n.switchover(ctx, req, reply)
	})
}

func (n *Node) switchover(ctx context.Context, req api.SwitchoverRequest, reply func(api.SwitchoverResult, error)) (api.SwitchoverResult, error) {
	start := time.Now()
	st := n.newSteps()
	s := n.State()
	if s.Role != state.RolePrimary || s.Cluster == nil || s.Cluster.Peer == nil {
		return api.SwitchoverResult{}, conflict("%s is not the primary of a cluster (role %s); send the switchover to the primary", n.cfg.Name, s.Role)
	}
	if err := n.noPendingJournal(s); err != nil {
		return api.SwitchoverResult{}, err
	}
	peer := memberOf(s.Cluster.Peer)
	p := n.peer(peer)

	// 1. Checks; nothing changes if one fails. The operation runs on the
	// node's lifetime, so every call to the peer carries its own bound.
	hb, err := n.askPeer(ctx, peer, 5*time.Second)
	if err != nil {
		return api.SwitchoverResult{}, unavailable("the secondary %s does not answer (%v); nothing was changed", peer.Name, err)
	}
	if err := n.peerCompatible(peer.Name, hb); err != nil {
		return api.SwitchoverResult{}, err
	}
	if state.Role(hb.Role) != state.RoleSecondary || hb.Term != s.Term || !hb.InRecovery || hb.Postgres != "running" || hb.Operation != "" {
		return api.SwitchoverResult{}, conflict("the secondary %s is not ready (role %s, term %d, PostgreSQL %s, in recovery %v, operation %q); nothing was changed", peer.Name, hb.Role, hb.Term, hb.Postgres, hb.InRecovery, hb.Operation)
	}
	var r replStats
	if err := n.withConn(ctx, func(c *pgx.Conn) error {
		var err error
		r, err = n.primaryStats(ctx, c, peer.Name)
		return err
	}); err != nil {
		return api.SwitchoverResult{}, err
	}
	if !req.AllowDataLoss {
		if r.State == "disconnected" {
			return api.SwitchoverResult{}, conflict("the secondary %s is not streaming; nothing was changed. Wait for it, or pass --allow-data-loss to lose what it has not received", peer.Name)
		}
		if r.LagBytes > api.MaxSwitchoverLag {
			return api.SwitchoverResult{}, conflict("the secondary %s is %d bytes behind; nothing was changed. Wait for it to catch up, or pass --allow-data-loss to lose what it has not replayed", peer.Name, r.LagBytes)
		}
	}
	st.mark("checks")
	newTerm := s.Term + 1
	n.log.Info("switchover", "op", OpSwitchover, "from", n.cfg.Name, "to", peer.Name, "term", newTerm)
	n.event(ctx, EventSwitchoverStarted, n.cfg.Name, fmt.Sprintf("switchover from %s to %s started (term %d → %d)", n.cfg.Name, peer.Name, s.Term, newTerm))

	// 2. Demote: from here on this node accepts no writes.
	if err := n.journal(OpSwitchover, StepDemote, newTerm); err != nil {
		return api.SwitchoverResult{}, err
	}
	n.stopServices(ctx, s.Term)
	st.mark("services stopped")
	// The secondary makes ready for its promotion (the slot this node will
	// follow it through) while this node checkpoints and shuts down.
	n.run.goAttach(func(ctx context.Context) {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if err := p.PreparePromotion(pctx, newTerm); err != nil {
			n.log.Debug("the secondary did not prepare its promotion; it does so when promoted", "err", err)
		}
	})
	// The cluster IP: while nobody holds it, what a client sends to it is
	// lost, and the client's TCP waits for its retransmission (200 ms at
	// least) or its connection timeout; a stopped PostgreSQL on a host
	// that still holds it refuses at once, and the client tries again. So
	// a peer that takes the handover (protocol 2) is promoted while this
	// node keeps the address, which is dropped only then and taken by the
	// new primary at once: nobody holds it for a few milliseconds. An
	// older peer takes it itself when promoted: it is dropped first.
	hand := hb.Protocol >= 2
	var relay *clusterip.Relay
	if hand {
		relay = n.openRelay()
		defer n.closeRelay(relay)
	}
	if !hand {
		if err := n.vip.Release(ctx); err != nil {
			return n.switchoverRollback(ctx, s, fmt.Errorf("while releasing the cluster IP: %w", err))
		}
		st.mark("cluster IP released")
	}
	// CHECKPOINT first (so the shutdown checkpoint is short), fast
	// shutdown, and the control file must say "shut down".
	lsn, err := n.pg.ShutdownForSwitchover(ctx)
	if err != nil {
		return n.switchoverRollback(ctx, s, fmt.Errorf("while shutting PostgreSQL down: %w", err))
	}
	if req.AllowDataLoss && r.State == "disconnected" {
		lsn = "" // nothing will arrive; do not wait for it
	}
	st.mark("checkpoint and shutdown")
	if automatic(s) {
		// Automatic mode: the key goes to the secondary with the handover
		// record, so its watch takes the vacancy for what it is.
		l := n.leadership()
		if l == nil {
			return n.switchoverRollback(ctx, s, errors.New("this node does not hold the leader key"))
		}
		hctx, cancel := context.WithTimeout(ctx, quorumCall)
		err := l.HandOver(hctx, n.cfg.Name, peer.Name, newTerm)
		cancel()
		if err != nil {
			return n.switchoverRollback(ctx, s, fmt.Errorf("while handing the leader key over: %w", err))
		}
		st.mark("leader key handed over")
	}

	// 3. The secondary promotes once it has replayed our shutdown checkpoint.
	if err := n.journal(OpSwitchover, StepPromotePeer, newTerm); err != nil {
		return n.switchoverRollback(ctx, s, err)
	}
	// The peer waits up to 10 s for the replay, then promotes (bounded at
	// 30 s): past that, its answer is not coming and peerOutcome asks.
	pctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	pr, err := p.Promote(pctx, api.PromoteRequest{Term: newTerm, LSN: lsn, HandClusterIP: hand})
	cancel()
	if err != nil {
		promoted, known := n.peerOutcome(ctx, p, newTerm)
		if hand && (promoted || !known) {
			// The peer may be primary: this node must not hold the address
			// its fallback will probe for and take.
			if rerr := n.vip.Release(ctx); rerr != nil {
				n.log.Error("could not drop the cluster IP", "err", rerr)
			}
		}
		switch {
		case !known:
			unknown := unavailable("the secondary %s stopped answering during its promotion (%v). %s stays stopped so there can be no two primaries; it resolves this by itself when %s answers again", peer.Name, err, n.cfg.Name, peer.Name)
			reply(api.SwitchoverResult{}, unknown)
			n.settleSwitchover(ctx)
			return api.SwitchoverResult{}, unknown
		case !promoted:
			return n.switchoverRollback(ctx, s, fmt.Errorf("the secondary did not promote: %w", err))
		}
	}
	st.mark("peer promoted")
	if hand {
		n.handClusterIP(ctx, p, newTerm, st, relay)
	}

	// 4. Follow the new primary.
	err = n.journalWith(OpSwitchover, StepFollow, newTerm, func(s *state.State) { s.Role, s.Term = state.RoleSecondary, newTerm })
	if err != nil {
		return api.SwitchoverResult{}, err
	}
	if err := n.followAsStandby(ctx, peer); err != nil {
		n.log.Error("could not restart as a standby; rejoining", "err", err)
		failed := fmt.Errorf("the switchover happened (%s is primary at term %d) but %s could not restart as its standby (it keeps trying, as a rejoin): %w", peer.Name, newTerm, n.cfg.Name, err)
		if jerr := n.journal(OpRejoin, StepFollow, newTerm); jerr != nil {
			return api.SwitchoverResult{}, errors.Join(failed, jerr)
		}
		reply(api.SwitchoverResult{}, failed)
		n.run.rename(OpRejoin)
		return api.SwitchoverResult{}, n.rejoinLoop(ctx)
	}
	st.mark("restarted as standby")
	if err := n.forgetOperation(); err != nil {
		return api.SwitchoverResult{}, err
	}
	n.run.goAttach(func(ctx context.Context) { n.afterDemotion(ctx, peer, newTerm) })
	took := time.Since(start).Round(time.Millisecond)
	n.event(ctx, EventSwitchoverFinished, n.cfg.Name, fmt.Sprintf("switchover from %s to %s finished in %s (term %d)", n.cfg.Name, peer.Name, took, newTerm))
	n.log.Info("switchover finished", "op", OpSwitchover, "took", took, "term", newTerm)
	return api.SwitchoverResult{From: n.cfg.Name, To: peer.Name, Term: newTerm, ShutdownLSN: lsn, Took: took.String(), Steps: append(st.list, pr.Steps...)}, nil
}

// handClusterIP drops the cluster IP and has the new primary of term take
// it at once. Should the call fail, the new primary takes it by itself
// after its wait (awaitClusterIP).
func (n *Node) handClusterIP(ctx context.Context, p Peer, term int64, st *steps, relay *clusterip.Relay) {
	relay.Hold()
	if err := n.vip.Release(ctx); err != nil {
		// Not handed over while this node may still hold it: the new
		// primary's fallback probes, finds it here and says so.
		n.log.Error("could not drop the cluster IP after the promotion; the new primary takes it only once nobody answers for it", "err", err)
		return
	}
	st.mark("cluster IP released")
	hctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := p.TakeClusterIP(hctx, term); err != nil {
		n.log.Warn("the new primary did not take the cluster IP when asked; it takes it by itself shortly", "err", err)
		return
	}
	st.mark("cluster IP handed over")
}

// relayFor is how long the old primary of a switchover keeps relaying
// what still reaches it for the cluster IP (clusterip.Relay): the window
// itself lasts milliseconds, but a client that missed the new primary's
// first announcement keeps sending here until the next one.
const relayFor = time.Second

// relayOpener is the cluster IP owner's relay (clusterip.Manager); the
// DNS endpoint and the tests' fakes have none.
type relayOpener interface {
	OpenRelay() (*clusterip.Relay, error)
}

// openRelay opens the relay for a switchover's handover while this node
// still holds the cluster IP; nil (no relay: the handover's window loses
// what arrives in it, as without one) if it cannot.
func (n *Node) openRelay() *clusterip.Relay {
	o, ok := n.vip.(relayOpener)
	if !ok {
		return nil
	}
	r, err := o.OpenRelay()
	if err != nil {
		n.log.Debug("no relay for the cluster IP's handover", "err", err)
		return nil
	}
	return r
}

// closeRelay closes r relayFor from now, off the switchover's path.
func (n *Node) closeRelay(r *clusterip.Relay) {
	if r == nil {
		return
	}
	time.AfterFunc(relayFor, func() {
		r.Close()
		s := r.Stats()
		if s.Relayed > 0 || s.Dropped > 0 {
			n.log.Info("relayed what reached this node for the cluster IP after the handover", "frames", s.Relayed, "dropped", s.Dropped, "to", r.To().String())
			return
		}
		n.log.Debug("the cluster IP's handover relay closed; nothing reached it", "announced_by", r.To().String())
	})
}

// noPendingJournal refuses an operation while the journal names one that a
// restart left to settle.
func (n *Node) noPendingJournal(s state.State) error {
	if s.Operation != nil {
		return conflict("%s is still settling an interrupted %s (step %s); wait for it to finish", n.cfg.Name, s.Operation.Kind, s.Operation.Step)
	}
	return nil
}

// afterDemotion drops the slot this node kept as primary (it would only
// hold WAL here now) and runs the role-change hook.
func (n *Node) afterDemotion(ctx context.Context, peer *api.Member, newTerm int64) {
	if err := n.dropSlot(ctx, peer.Slot); err != nil {
		n.log.Warn("could not drop the old slot", "slot", peer.Slot, "err", err)
	}
	n.runHook(ctx, string(state.RolePrimary), string(state.RoleSecondary), newTerm)
}

// switchoverRollback restarts this node as the primary it was.
func (n *Node) switchoverRollback(ctx context.Context, was state.State, cause error) (api.SwitchoverResult, error) {
	n.log.Error("switchover failed before the secondary promoted; this node stays primary", "err", cause)
	// The rollback must finish even when shutdown cancelled the operation:
	// it is what keeps the cluster with a primary.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if err := n.resumeAsPrimary(rctx, was); err != nil {
		return api.SwitchoverResult{}, fmt.Errorf("%v; and the rollback failed too: %w", cause, err)
	}
	n.event(rctx, EventSwitchoverFailed, n.cfg.Name, fmt.Sprintf("switchover failed and was rolled back; %s stays primary: %v", n.cfg.Name, cause))
	return api.SwitchoverResult{}, &api.Error{Status: http.StatusConflict, Code: api.CodeConflict, Message: "switchover rolled back, " + n.cfg.Name + " is still primary: " + cause.Error()}
}

// resumeAsPrimary starts PostgreSQL read-write again with the cluster IP
// and services, in the role and term it had.
func (n *Node) resumeAsPrimary(ctx context.Context, was state.State) error {
	if automatic(was) && n.leadership() == nil {
		// The key was handed over already: take it back first.
		l, err := n.takeKeyFor(ctx, was, was.Term, 5*time.Second)
		if err != nil {
			n.run.goAttach(n.regain)
			return fmt.Errorf("%w; this node stays closed and waits for the quorum", err)
		}
		n.holdLeadership(l)
	}
	if err := n.pg.StartPrimary(ctx, n.primarySettingsFor(was, was.Cluster.Replication != ModeAsync), false); err != nil {
		return err
	}
	if err := n.set(func(s *state.State) { s.Role, s.Term, s.Operation = was.Role, was.Term, nil }); err != nil {
		return err
	}
	if err := n.vip.Acquire(ctx); err != nil {
		n.log.Error("could not take the cluster IP back", "err", err)
	}
	n.startServices(ctx, was.Term)
	return nil
}

// peerOutcome asks the peer, for up to 15 s, whether it promoted to term.
func (n *Node) peerOutcome(ctx context.Context, p Peer, term int64) (promoted, known bool) {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		hctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		hb, err := p.Heartbeat(hctx)
		cancel()
		if err == nil {
			switch {
			case state.Role(hb.Role) == state.RolePrimary && hb.Term >= term:
				return true, true
			case hb.Operation == "":
				return false, true
			}
		}
		if !n.run.wait(ctx, 300*time.Millisecond) {
			break
		}
	}
	return false, false
}

// Promote is the secondary's side of a switchover: wait until the old
// primary's shutdown checkpoint is replayed, then promote. It runs on the
// node's lifetime: the old primary going away mid-call does not stop it.
func (n *Node) Promote(ctx context.Context, req api.PromoteRequest) (api.PromoteResult, error) {
	return runOp(n, ctx, OpPromote, byPeer, func(ctx context.Context, _ func(api.PromoteResult, error)) (api.PromoteResult, error) {
		s := n.State()
		if s.Role != state.RoleSecondary {
			return api.PromoteResult{}, conflict("%s is not a secondary (role %s)", n.cfg.Name, s.Role)
		}
		if err := n.noPendingJournal(s); err != nil {
			return api.PromoteResult{}, err
		}
		if req.Term != s.Term+1 {
			return api.PromoteResult{}, conflict("promotion to term %d asked, but %s is at term %d", req.Term, n.cfg.Name, s.Term)
		}
		st := n.newSteps()
		if req.HandClusterIP {
			// The old primary hands the cluster IP over after the
			// promotion: look at the interfaces now, while the replay
			// runs, so that taking it adds it at once.
			n.setVIPAddress()
			n.run.goAttach(func(ctx context.Context) {
				pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				defer cancel()
				if err := n.vip.Prepare(pctx); err != nil {
					n.log.Debug("could not prepare the cluster IP's handover; it is taken the longer way", "err", err)
				}
			})
		}
		// The slot for the old primary: made by PreparePromotion while the
		// old primary shut down, or now, while the replay runs (after the
		// replay it cost some 20 ms of the write gap).
		slot := n.takePrep(ctx, req.Term, s.Cluster.Peer.Name)
		if slot == nil {
			ch := make(chan error, 1)
			go func() { ch <- n.makePeerSlot(ctx, s.Cluster.Peer.Name) }()
			slot = ch
		}
		if req.LSN != "" {
			if err := n.waitReplayPast(ctx, req.LSN, 10*time.Second); err != nil {
				if <-slot == nil {
					n.dropPeerSlot(ctx, s.Cluster.Peer.Name)
				}
				return api.PromoteResult{}, err
			}
		}
		st.mark("shutdown checkpoint replayed")
		var lead *quorum.Leadership
		if automatic(s) {
			l, err := n.takeKey(ctx, s, req.Term, 5*time.Second, false)
			if err != nil {
				if <-slot == nil {
					n.dropPeerSlot(ctx, s.Cluster.Peer.Name)
				}
				return api.PromoteResult{}, err
			}
			lead = l
			n.holdLeadership(l)
			st.mark("leader key taken")
		}
		if err := n.becomePrimary(ctx, req.Term, req.HandClusterIP, st, slot); err != nil {
			if lead != nil {
				_ = lead.Resign(context.WithoutCancel(ctx))
			}
			return api.PromoteResult{}, err
		}
		n.run.goAttach(func(ctx context.Context) { n.afterPromotion(ctx, req.Term, "switchover") })
		n.hurryMonitor()
		return api.PromoteResult{Term: req.Term, Steps: st.list}, nil
	})
}

// waitReplayPast waits until replay has gone past lsn (the start of the
// shutdown checkpoint record: past it means the record itself is replayed).
func (n *Node) waitReplayPast(ctx context.Context, lsn string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	return n.withConn(ctx, func(c *pgx.Conn) error {
		for {
			var done bool
			if err := c.QueryRow(ctx, `SELECT coalesce(pg_last_wal_replay_lsn() > $1::pg_lsn, false)`, lsn).Scan(&done); err != nil {
				return fmt.Errorf("while checking replay: %w", err)
			}
			if done {
				return nil
			}
			if time.Now().After(deadline) {
				return conflict("%s did not replay the old primary's shutdown checkpoint (%s) within %s; not promoting", n.cfg.Name, lsn, limit)
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
}

// becomePrimary promotes this standby: the slot for the peer first (so the
// old primary can follow at once), pg_promote, the term made durable, then
// the cluster IP. The record, events, services and hook follow in
// afterPromotion, off the write path.
//
// The cluster IP is taken without a probe: a failover's checks, or a
// switchover's old primary, established that nobody else holds it. With
// handed, the old primary of a switchover still holds it and hands it
// over after this returns (TakeClusterIP); if it does not within
// clusterIPHandoffWait, this node takes it by itself, probing first.
//
// slot, when not nil, delivers the outcome of a makePeerSlot begun
// earlier (a switchover's secondary makes the slot while it waits for the
// replay); nil makes the slot here.
func (n *Node) becomePrimary(ctx context.Context, term int64, handed bool, st *steps, slot <-chan error) error {
	s := n.State()
	peer := s.Cluster.Peer
	if err := n.journal(OpPromote, StepPromote, term); err != nil {
		if slot != nil {
			<-slot
		}
		return err
	}
	var err error
	if slot != nil {
		err = <-slot
	} else {
		err = n.makePeerSlot(ctx, peer.Name)
	}
	if err == nil {
		st.mark("slot made")
		err = n.pg.Promote(ctx)
		// An error after PostgreSQL began the promotion (a timeout while
		// waiting) does not undo it: what PostgreSQL is decides.
		if ps := n.pg.Status(ctx); err != nil && ps.State == "running" && !ps.InRecovery {
			n.log.Warn("the promotion reported an error, but PostgreSQL is read-write: carrying on as primary", "err", err)
			err = nil
		}
	}
	if err != nil {
		_ = n.forgetOperation()
		return err
	}
	st.mark("promoted")
	// In strict mode commits wait for the peer from the first one, so its
	// synchronous_standby_names is in place before anyone can write through
	// the cluster IP. In sync mode the new primary starts unsynchronized
	// (the monitor restores synchronous commit as soon as the old primary
	// streams), and in sync and async modes the primary's settings differ
	// from the standby's only in what a primary ignores (primary_conninfo,
	// primary_slot_name): they are set here for the next reload or start,
	// and afterPromotion reloads them a little later. Reloading here cost
	// some 20 ms of every switchover's write gap (a connection to confirm
	// the role, the postmaster re-reading its files), and at once after
	// the handover it slowed the clients' first connections instead.
	settings := primarySettings(n.cfg.MaxSlotWALKeep, peer.Name, s.Cluster.Replication == ModeStrict)
	if s.Cluster.Replication == ModeStrict {
		if err := n.pg.StartPrimary(ctx, settings, false); err != nil {
			n.log.Error("could not reload settings after promotion", "err", err)
		}
		st.mark("settings reloaded")
	} else {
		n.pg.SetSettings(settings)
	}
	if err := n.set(func(s *state.State) { s.Role, s.Term, s.Operation = state.RolePrimary, term, nil }); err != nil {
		return err
	}
	st.mark("term saved")
	n.setVIPAddress()
	if handed {
		n.awaitClusterIP(term)
		return nil
	}
	if err := n.vip.AcquireTrusted(ctx); err != nil {
		n.log.Error("promoted, but the cluster IP could not be taken", "err", err)
		n.event(ctx, EventClusterIPConflict, n.cfg.Name, err.Error())
	}
	st.mark("cluster IP taken")
	return nil
}

// clusterIPHandoffWait is how long a switchover's new primary waits for
// the old one to hand the cluster IP over before it takes it by itself.
const clusterIPHandoffWait = 3 * time.Second

// awaitClusterIP arms the fallback of a handed-over cluster IP: unless
// TakeClusterIP comes for term within clusterIPHandoffWait (the old
// primary died between the promotion and the handover), the address is
// taken with a probe, so that an old primary that still holds it is found
// rather than duplicated.
func (n *Node) awaitClusterIP(term int64) {
	handed := make(chan struct{})
	n.handoffMu.Lock()
	n.handoff, n.handoffTerm = handed, term
	n.handoffMu.Unlock()
	n.run.goAttach(func(ctx context.Context) {
		select {
		case <-handed:
			return
		case <-ctx.Done():
			return
		case <-time.After(clusterIPHandoffWait):
		}
		n.handoffMu.Lock()
		still := n.handoff == handed
		n.handoff = nil
		n.handoffMu.Unlock()
		if !still {
			return
		}
		if s := n.State(); s.Role != state.RolePrimary || s.Term != term {
			return
		}
		n.log.Warn("the old primary did not hand the cluster IP over; taking it, after a probe", "term", term, "waited", clusterIPHandoffWait)
		if err := n.vip.Acquire(ctx); err != nil {
			n.log.Error("could not take the cluster IP", "err", err)
			n.event(ctx, EventClusterIPConflict, n.cfg.Name, err.Error())
		}
	})
}

// TakeClusterIP is the new primary's side of a switchover's handover: the
// old primary has dropped the cluster IP, so it is taken now, without a
// probe, and announced.
func (n *Node) TakeClusterIP(ctx context.Context, req api.ClusterIPHandoff) error {
	s := n.State()
	if s.Role != state.RolePrimary || s.Term != req.Term {
		return conflict("%s is %s at term %d, not the primary of term %d: it does not take the cluster IP", n.cfg.Name, s.Role, s.Term, req.Term)
	}
	n.handoffMu.Lock()
	if n.handoff != nil && n.handoffTerm == req.Term {
		close(n.handoff)
		n.handoff = nil
	}
	n.handoffMu.Unlock()
	if err := n.vip.AcquireTrusted(ctx); err != nil {
		n.log.Error("promoted, but the cluster IP could not be taken", "err", err)
		n.event(ctx, EventClusterIPConflict, n.cfg.Name, err.Error())
		return err
	}
	return nil
}

// promotionPrep is a slot made ahead of a switchover's promotion to term.
type promotionPrep struct {
	term int64
	done chan struct{} // closed when err is set
	err  error
}

// promotionPrepFor is how long a prepared slot waits for its promotion:
// past it (the switchover rolled back, or the old primary died before
// asking), it is dropped, since on a standby it would keep WAL.
const promotionPrepFor = 30 * time.Second

// PreparePromotion is the secondary's side of a switchover's first step:
// the old primary of term-1 has stopped its services and is shutting
// down, so the slot it will follow this node through is made now, off
// the write gap (Promote then finds it ready). It returns at once.
func (n *Node) PreparePromotion(ctx context.Context, req api.PromotionPrepare) error {
	s := n.State()
	if s.Role != state.RoleSecondary || s.Cluster == nil || s.Cluster.Peer == nil {
		return conflict("%s is not a secondary (role %s): nothing to prepare", n.cfg.Name, s.Role)
	}
	if req.Term != s.Term+1 {
		return conflict("promotion to term %d announced, but %s is at term %d", req.Term, n.cfg.Name, s.Term)
	}
	n.prepMu.Lock()
	if n.prep != nil && n.prep.term == req.Term {
		n.prepMu.Unlock()
		return nil
	}
	p := &promotionPrep{term: req.Term, done: make(chan struct{})}
	n.prep = p
	n.prepMu.Unlock()
	peer := s.Cluster.Peer.Name
	n.run.goAttach(func(ctx context.Context) {
		p.err = n.makePeerSlot(ctx, peer)
		close(p.done)
		if !n.run.wait(ctx, promotionPrepFor) {
			return
		}
		// Dropped under prepMu: a new announcement for the same term made
		// meanwhile waits, so its slot is made after this drop, not before.
		n.prepMu.Lock()
		defer n.prepMu.Unlock()
		if n.prep != p {
			return // taken by its promotion, or replaced
		}
		n.prep = nil
		if p.err == nil && n.State().Role == state.RoleSecondary {
			n.log.Info("a switchover announced did not promote this node; dropping the slot made for it", "term", p.term)
			n.dropPeerSlot(ctx, peer)
		}
	})
	return nil
}

// takePrep hands Promote the outcome of the slot PreparePromotion began
// for term (made again if that failed), nil if none was begun.
func (n *Node) takePrep(ctx context.Context, term int64, peer string) <-chan error {
	n.prepMu.Lock()
	p := n.prep
	if p == nil || p.term != term {
		n.prepMu.Unlock()
		return nil
	}
	n.prep = nil // Promote owns it now: not dropped as unused
	n.prepMu.Unlock()
	ch := make(chan error, 1)
	go func() {
		<-p.done
		if p.err != nil {
			n.log.Debug("the slot prepared for the promotion was not made; making it now", "err", p.err)
			ch <- n.makePeerSlot(ctx, peer)
			return
		}
		ch <- nil
	}()
	return ch
}

// makePeerSlot makes the slot the peer will stream from once it follows
// this node (a slot an earlier run left, not in use, is made anew).
func (n *Node) makePeerSlot(ctx context.Context, peer string) error {
	return n.withConn(ctx, func(c *pgx.Conn) error {
		slot := slotName(peer)
		if _, err := c.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1 AND NOT active`, slot); err != nil {
			return fmt.Errorf("while clearing the old slot %s: %w", slot, err)
		}
		if _, err := c.Exec(ctx, `SELECT pg_create_physical_replication_slot($1, true)`, slot); err != nil {
			return fmt.Errorf("while creating slot %s for %s: %w", slot, peer, err)
		}
		return nil
	})
}

// dropPeerSlot removes the peer's slot when a promotion it was made for
// does not happen: on a standby it would keep WAL from where it was made.
func (n *Node) dropPeerSlot(ctx context.Context, peer string) {
	err := n.withConn(ctx, func(c *pgx.Conn) error {
		_, err := c.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1 AND NOT active`, slotName(peer))
		return err
	})
	if err != nil {
		n.log.Warn("could not drop the slot made for a promotion that did not happen", "slot", slotName(peer), "err", err)
	}
}

// afterPromotion writes the record, starts the services and runs the hook.
func (n *Node) afterPromotion(ctx context.Context, term int64, why string) {
	// A checkpoint puts the new timeline into the control file, which
	// pg_rewind on the old primary reads.
	_ = n.withConn(ctx, func(c *pgx.Conn) error {
		_, err := c.Exec(ctx, "CHECKPOINT")
		return err
	})
	err := n.withConn(ctx, func(c *pgx.Conn) error {
		return pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
			if err := localCommit(ctx, tx); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `UPDATE tandem.cluster SET term = $1, primary_node = $2, synchronized = false, updated_at = now() WHERE id = 1`, term, n.cfg.Name)
			return err
		})
	})
	if err != nil {
		n.log.Error("could not update the cluster record after promotion", "err", err)
	}
	n.syncFlagReset.Store(true)
	n.startServices(ctx, term)
	n.runHook(ctx, string(state.RoleSecondary), string(state.RolePrimary), term)
	n.log.Info("primary", "term", term, "why", why)
	// The settings becomePrimary set, written and re-read once the
	// clients' reconnections are past (a reload writes whatever is set by
	// then: the monitor may have turned synchronous commit on already).
	if n.run.wait(ctx, settingsReloadDelay) {
		if err := n.pg.Reload(ctx); err != nil {
			n.log.Warn("could not reload PostgreSQL's settings after the promotion", "err", err)
		}
	}
}

// settingsReloadDelay is how long after a promotion the new primary's
// settings are reloaded (becomePrimary).
const settingsReloadDelay = time.Second

// followAsStandby restarts PostgreSQL as a standby of primary.
func (n *Node) followAsStandby(ctx context.Context, primary *api.Member) error {
	pw, err := n.readReplPassword()
	if err != nil {
		return err
	}
	return n.pg.StartStandby(ctx, standbySettings(n.cfg.MaxSlotWALKeep, *primary, n.cfg.Name, pw, slotName(n.cfg.Name)))
}

// setVIPAddress tells the cluster IP owner which address belongs to this
// cluster (a node learns it at assembly, after it started).
func (n *Node) setVIPAddress() {
	s := n.State()
	if s.Cluster == nil {
		return
	}
	if p, err := netip.ParsePrefix(s.Cluster.ClusterIP); err == nil {
		n.vip.SetAddress(p)
	}
}

// settleSwitchover finishes a switchover whose outcome was unknown when it
// answered its caller: once the peer answers, follow it or resume as
// primary. It runs inside the switchover operation, holding the exclusion.
func (n *Node) settleSwitchover(ctx context.Context) {
	n.resolveSwitchover(ctx)
	s := n.State()
	switch {
	case s.Operation != nil && s.Operation.Kind == OpRejoin:
		n.run.rename(OpRejoin)
		if err := n.rejoinLoop(ctx); err != nil {
			n.log.Error("rejoin after the switchover did not finish", "err", err)
		}
	case s.Role == state.RolePrimary && s.Operation == nil:
		if err := n.resumeAsPrimary(ctx, s); err != nil {
			n.log.Error("could not resume as primary", "err", err)
			return
		}
		n.event(ctx, EventSwitchoverFailed, n.cfg.Name, fmt.Sprintf("switchover did not happen: the peer answered again without having promoted; %s is primary again (term %d)", n.cfg.Name, s.Term))
	}
}

// resolveSwitchover settles a switchover interrupted on the old primary:
// if the peer promoted, follow it (the journal becomes a rejoin); if it
// did not, stay primary; if it cannot be asked, wait (two primaries are
// worse than none).
func (n *Node) resolveSwitchover(ctx context.Context) {
	s := n.State()
	peer := memberOf(s.Cluster.Peer)
	for {
		hb, err := n.askPeer(ctx, peer, 2*time.Second)
		if err == nil && hb.Operation == "" {
			if state.Role(hb.Role) == state.RolePrimary && hb.Term >= s.Operation.Term {
				n.log.Info("the interrupted switchover had promoted the peer; following it", "term", hb.Term)
				if err := n.journalWith(OpRejoin, StepFollow, hb.Term, func(s *state.State) {
					s.Role, s.Term, s.Operation = state.RoleSecondary, hb.Term, nil
				}); err != nil {
					n.log.Error("could not save the new role", "err", err)
				}
				return
			}
			n.log.Info("the interrupted switchover had not promoted the peer; staying primary")
			if err := n.set(func(s *state.State) { s.Role, s.Operation = state.RolePrimary, nil }); err != nil {
				n.log.Error("could not save the role", "err", err)
			}
			return
		}
		n.log.Warn("waiting for the peer to learn how the interrupted switchover ended", "err", err)
		if !n.run.wait(ctx, time.Second) {
			return
		}
	}
}

// resolvePromote settles a promotion a crash interrupted on the new
// primary: PostgreSQL's own state says whether it happened.
func (n *Node) resolvePromote(_ context.Context) {
	s := n.State()
	if _, err := n.pg.ReadDataFile("standby.signal"); errors.Is(err, os.ErrNotExist) {
		n.log.Info("the interrupted promotion had completed; this node is primary", "term", s.Operation.Term)
		if err := n.set(func(s *state.State) { s.Role, s.Term, s.Operation = state.RolePrimary, s.Operation.Term, nil }); err != nil {
			n.log.Error("could not save the role", "err", err)
		}
		return
	}
	n.log.Info("the interrupted promotion had not happened; staying secondary")
	if err := n.forgetOperation(); err != nil {
		n.log.Error("could not close the journal", "err", err)
	}
}
