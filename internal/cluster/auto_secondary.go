package cluster

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tandem-ha/tandem/internal/quorum"
	"github.com/tandem-ha/tandem/internal/state"
)

// runAutoWatch is the secondary's half of automatic failover: it watches
// the leader key and, when the key goes vacant and this node is eligible,
// fails over by itself. It idles on a primary and in manual mode.
func (n *Node) runAutoWatch(ctx context.Context) {
	ctx, stop := n.run.whileRunning(ctx)
	defer stop()
	blockedNoted := false
	for {
		s := n.State()
		cli := n.quorumClient()
		if !automatic(s) || s.Role != state.RoleSecondary || s.Operation != nil || cli == nil {
			blockedNoted = false
			if !n.run.wait(ctx, watchRetry) {
				return
			}
			continue
		}
		prefix := s.Cluster.Quorum.Prefix
		eligible, why := n.autoEligible(ctx, s)
		n.setEligibility(eligible, why)
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := quorum.WaitVacant(wctx, cli, prefix)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			continue // still held (the wait timed out), or the quorum does not answer
		}
		// Vacant. A switchover hands the key over to us: its promotion
		// comes through the peer API, not from here.
		qctx, qcancel := context.WithTimeout(ctx, quorumCall)
		h, planned, _ := quorum.ReadHandover(qctx, cli, prefix)
		qcancel()
		if planned && h.To == n.cfg.Name && h.Term == s.Term+1 && time.Since(h.At) < handoverWait {
			if !n.run.wait(ctx, 50*time.Millisecond) {
				return
			}
			continue
		}
		// Eligibility again, now: it may have changed while we waited.
		if eligible, why = n.autoEligible(ctx, s); !eligible {
			n.setEligibility(false, why)
			if !blockedNoted {
				blockedNoted = true
				n.noteAutoBlocked(ctx, s, why)
			}
			if !n.run.wait(ctx, watchRetry) {
				return
			}
			continue
		}
		blockedNoted = false
		n.inlineBy(OpFailover, byQuorum, func(ctx context.Context) error { return n.autoFailover(ctx) })
	}
}

func (n *Node) setEligibility(ok bool, why string) {
	n.q.mu.Lock()
	n.q.eligible, n.q.why = ok, why
	n.q.mu.Unlock()
}

// autoEligible says whether this secondary may promote by itself now, and
// if not why: it runs as a standby, follows the newest primary the quorum
// knows, and holds every acknowledged commit (sync, strict: the sync record
// names it) or all but quorum.max_lag of the primary's WAL at the last
// contact (async).
func (n *Node) autoEligible(ctx context.Context, s state.State) (bool, string) {
	if m := maintenanceOf(s); m != nil {
		return false, describeMaintenance(m) + ": no automatic failover"
	}
	if why := n.watchdogBlocks(); why != "" {
		return false, why
	}
	ps := n.pg.Status(ctx)
	if ps.State != "running" || !ps.InRecovery {
		return false, fmt.Sprintf("PostgreSQL here is %s (in recovery %v), not a running standby", ps.State, ps.InRecovery)
	}
	cli := n.quorumClient()
	if cli == nil {
		return false, "the quorum is not started here"
	}
	prefix := s.Cluster.Quorum.Prefix
	qctx, cancel := context.WithTimeout(ctx, quorumCall)
	defer cancel()
	rec, ok, err := quorum.ReadPrimary(qctx, cli, prefix)
	if err != nil {
		return false, "the quorum does not answer: " + err.Error()
	}
	if ok && rec.Node != n.cfg.Name && rec.Term > s.Term {
		return false, fmt.Sprintf("the quorum names %s primary at term %d, newer than this node's %d", rec.Node, rec.Term, s.Term)
	}
	if s.Cluster.Replication == ModeAsync {
		n.peerMu.Lock()
		pc, known := n.contact, n.contactKnown
		n.peerMu.Unlock()
		if !known {
			return false, "no contact with the primary since tandemd started here, so how much WAL this node lacks is unknown"
		}
		var lag int64
		err := n.withConn(qctx, func(c *pgx.Conn) error {
			return c.QueryRow(qctx, `SELECT coalesce(pg_wal_lsn_diff($1::pg_lsn, pg_last_wal_receive_lsn()), 0)::bigint`, pc.flushLSN).Scan(&lag)
		})
		if err != nil {
			return false, "cannot read this node's WAL position: " + err.Error()
		}
		if lag > n.cfg.MaxLag {
			return false, fmt.Sprintf("at the last contact this node lacked %d bytes of the primary's WAL, more than quorum.max_lag (%d)", lag, n.cfg.MaxLag)
		}
		return true, ""
	}
	sr, ok, err := quorum.ReadSync(qctx, cli, prefix)
	switch {
	case err != nil:
		return false, "the quorum does not answer: " + err.Error()
	case !ok || sr.Sync == "":
		return false, "the sync record names no synchronous standby: the primary may have acknowledged commits this node lacks"
	case sr.Sync != n.cfg.Name:
		return false, fmt.Sprintf("the sync record names %s, not this node", sr.Sync)
	}
	return true, ""
}

// autoFailover promotes this secondary because the primary's leader key
// went vacant: the key is taken and this node recorded primary of the next
// term first, then PostgreSQL is promoted and the cluster IP taken. The
// old primary fenced itself before its lease could expire.
func (n *Node) autoFailover(ctx context.Context) error {
	start := time.Now()
	s := n.State()
	if !automatic(s) || s.Role != state.RoleSecondary || s.Operation != nil {
		return nil // an operation changed things meanwhile
	}
	newTerm := s.Term + 1
	peer := s.Cluster.Peer.Name
	st := n.newSteps()
	l, err := n.takeKeyFor(ctx, s, newTerm, 2*time.Second)
	if err != nil {
		return err // the old primary took its key back first, or the quorum is gone
	}
	st.mark("leader key taken")
	n.holdLeadership(l)
	n.log.Warn("automatic failover", "op", OpFailover, "from", peer, "term", newTerm)
	if err := n.becomePrimary(ctx, newTerm, false, st, nil); err != nil {
		_ = l.Resign(context.WithoutCancel(ctx))
		n.event(ctx, EventFailoverFailed, n.cfg.Name, fmt.Sprintf("automatic failover to %s failed, it stays secondary at term %d (it tries again while the key is vacant): %v", n.cfg.Name, s.Term, err))
		return err
	}
	took := time.Since(start).Round(time.Millisecond)
	n.run.goAttach(func(ctx context.Context) {
		n.event(ctx, EventAutoFailoverStarted, n.cfg.Name, fmt.Sprintf("automatic failover from %s to %s (term %d → %d): the leader key of %s went vacant", peer, n.cfg.Name, s.Term, newTerm, peer))
		n.afterPromotion(ctx, newTerm, "automatic failover")
		n.event(ctx, EventAutoFailoverFinished, n.cfg.Name, fmt.Sprintf("automatic failover finished in %s after the key went vacant: %s is primary at term %d; degraded until %s rejoins", took, n.cfg.Name, newTerm, peer))
	})
	return nil
}
