package quorum

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrNotLeader: the leader key is not (or no longer) this holder's.
var ErrNotLeader = errors.New("not the holder of the leader key")

// LeaderKey is the key under prefix whose holder may be primary.
func LeaderKey(prefix string) string { return prefix + "/leader" }

// Leadership is this node's hold on the leader key. It renews the lease
// itself (KeepAliveOnce, one at a time) so that each renewal's send time is
// known: the fence deadline is measured from it.
type Leadership struct {
	cli    *clientv3.Client
	prefix string
	name   string
	cfg    LeaseConfig
	clock  Clock
	log    *slog.Logger

	// lease and rev change only when a tenure kept by failsafe takes the
	// vacant key back (retake); idMu guards them.
	idMu  sync.Mutex
	lease clientv3.LeaseID
	rev   int64 // create revision of the leader key we put
	dl    deadlineTracker

	lostOnce sync.Once
	lost     chan struct{}
	reason   string // why lost; written before lost closes

	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
}

// Campaign waits until the leader key is vacant (absent: never taken,
// resigned, or its lease expired or was revoked), then takes it for name
// under a new lease, and keeps renewing it until Resign or Close, or until
// the deadline passes without a successful renewal (Lost). It returns
// when the key is held, or with ctx's error.
func Campaign(ctx context.Context, cli *clientv3.Client, prefix, name string, cfg LeaseConfig, log *slog.Logger) (*Leadership, error) {
	return campaign(ctx, cli, prefix, name, cfg, realClock{}, log)
}

// CampaignAsPrimary is Campaign that also records name primary of term in
// the same transaction as it takes the key: one write fewer on the way to
// a promotion.
func CampaignAsPrimary(ctx context.Context, cli *clientv3.Client, prefix, name string, term int64, cfg LeaseConfig, log *slog.Logger) (*Leadership, error) {
	b, err := json.Marshal(PrimaryRecord{Node: name, Term: term, At: time.Now().UTC()})
	if err != nil {
		return nil, err
	}
	return campaign(ctx, cli, prefix, name, cfg, realClock{}, log, clientv3.OpPut(PrimaryKey(prefix), string(b)))
}

func campaign(ctx context.Context, cli *clientv3.Client, prefix, name string, cfg LeaseConfig, clock Clock, log *slog.Logger, with ...clientv3.Op) (*Leadership, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.withDefaults()
	key := LeaderKey(prefix)
	for {
		if err := WaitVacant(ctx, cli, prefix); err != nil {
			return nil, err
		}
		sent := clock.Now()
		g, err := cli.Grant(ctx, int64(cfg.TTL/time.Second))
		if err != nil {
			return nil, fmt.Errorf("while granting the leader lease: %w", err)
		}
		tr, err := cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
			Then(append([]clientv3.Op{clientv3.OpPut(key, name, clientv3.WithLease(g.ID))}, with...)...).
			Commit()
		if err != nil {
			revokeQuietly(cli, g.ID)
			return nil, fmt.Errorf("while taking the leader key: %w", err)
		}
		if !tr.Succeeded {
			// Someone else took it between our look and our put.
			revokeQuietly(cli, g.ID)
			continue
		}
		l := newLeadership(cli, prefix, name, cfg, clock, log, g.ID, tr.Header.Revision, sent, time.Duration(g.TTL)*time.Second)
		l.log.Info("leader key taken", "node", name, "revision", l.Revision(), "deadline_in", time.Until(l.Deadline()).Round(time.Millisecond))
		return l, nil
	}
}

func newLeadership(cli *clientv3.Client, prefix, name string, cfg LeaseConfig, clock Clock, log *slog.Logger, lease clientv3.LeaseID, rev int64, sent time.Time, ttl time.Duration) *Leadership {
	l := &Leadership{
		cli: cli, prefix: prefix, name: name, cfg: cfg, clock: clock,
		log:   log.With("lease", fmt.Sprintf("%x", int64(lease))),
		lease: lease, rev: rev,
		dl:   deadlineTracker{cfg: cfg},
		lost: make(chan struct{}), stop: make(chan struct{}),
	}
	l.dl.renewed(sent, ttl)
	l.wg.Add(2)
	go l.renewLoop()
	go l.watchDeadline()
	return l
}

// Resume takes back the tenure this node held before tandemd restarted:
// when lease is still alive and the leader key is still name's under it,
// renewals go on under the same lease and revision, so a quick restart of
// tandemd on the primary costs no fence and no election. ok is false when
// the tenure is over (the lease expired, or the key is someone else's).
func Resume(ctx context.Context, cli *clientv3.Client, prefix, name string, lease clientv3.LeaseID, cfg LeaseConfig, log *slog.Logger) (l *Leadership, ok bool, err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.withDefaults()
	clock := realClock{}
	sent := clock.Now()
	resp, err := cli.KeepAliveOnce(ctx, lease)
	switch {
	case errors.Is(err, rpctypes.ErrLeaseNotFound) || (err == nil && resp.TTL <= 0):
		return nil, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("while renewing the lease held before the restart: %w", err)
	}
	r, err := cli.Get(ctx, LeaderKey(prefix))
	if err != nil {
		return nil, false, fmt.Errorf("while reading the leader key: %w", err)
	}
	if len(r.Kvs) == 0 || clientv3.LeaseID(r.Kvs[0].Lease) != lease {
		// The saved lease holds no key (the key went and someone else
		// may hold it now): it is only a leftover.
		revokeQuietly(cli, lease)
		return nil, false, nil
	}
	if string(r.Kvs[0].Value) != name {
		return nil, false, nil
	}
	l = newLeadership(cli, prefix, name, cfg, clock, log, lease, r.Kvs[0].CreateRevision, sent, time.Duration(resp.TTL)*time.Second)
	l.log.Info("leader key kept across a restart", "node", name, "revision", l.Revision(), "deadline_in", time.Until(l.Deadline()).Round(time.Millisecond))
	return l, true, nil
}

func revokeQuietly(cli *clientv3.Client, id clientv3.LeaseID) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, _ = cli.Revoke(ctx, id)
}

func (l *Leadership) renewLoop() {
	defer l.wg.Done()
	for {
		select {
		case <-l.stop:
			return
		case <-l.lost:
			return
		case <-l.clock.After(l.cfg.RenewEvery):
		}
		sent := l.clock.Now()
		left := l.Deadline().Sub(sent)
		if left <= 0 {
			return // watchDeadline reports it
		}
		// No answer is worth waiting for past the deadline, nor longer than
		// one renewal interval: a renewal stuck on a dead connection must
		// not eat the whole budget the next attempts need.
		ctx, cancel := context.WithTimeout(context.Background(), min(left, l.cfg.RenewEvery))
		go func() {
			select {
			case <-l.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		resp, err := l.cli.KeepAliveOnce(ctx, l.LeaseID())
		cancel()
		switch {
		case err == nil && resp.TTL > 0:
			l.dl.renewed(sent, time.Duration(resp.TTL)*time.Second)
		case errors.Is(err, rpctypes.ErrLeaseNotFound) || (err == nil && resp.TTL <= 0):
			// Expired or revoked (a forced failover): the key is gone.
			// Kept by failsafe, the key may be taken back (retake).
			if l.dl.keptByPromise() && l.retakeWhileKept() {
				continue
			}
			l.lose("the lease is gone (expired or revoked)")
			return
		default:
			select {
			case <-l.stop:
				return
			default:
			}
			l.log.Warn("leader lease renewal failed", "err", err, "deadline_in", l.Deadline().Sub(l.clock.Now()).Round(time.Millisecond))
		}
	}
}

// retakeWhileKept tries retake until it succeeds (true), or it fails for
// good (the key or the record is someone else's) or the deadline passes
// (false). This node's member may learn that the lease expired (it applied
// the etcd leader's revocation) before it can reach that leader again: a
// one-way cut lets entries in but no answers out, so reads and writes
// through the leader time out for a while after the renewal said "lease
// not found". Meanwhile the promises keep the deadline, and so the tenure.
func (l *Leadership) retakeWhileKept() bool {
	granted := map[clientv3.LeaseID]time.Time{}
	for attempt := 1; ; attempt++ {
		err := l.retake(granted)
		switch {
		case err == nil:
			return true
		case errors.Is(err, ErrNotLeader):
			l.log.Warn("the lease expired while failsafe kept this tenure, and the key cannot be taken back", "err", err)
			return false
		case !l.Held():
			l.log.Warn("the lease expired while failsafe kept this tenure; the deadline passed before the key could be taken back", "err", err)
			return false
		}
		if attempt == 1 || attempt%10 == 0 {
			l.log.Warn("the lease expired while failsafe kept this tenure; taking the key back as soon as etcd answers", "attempt", attempt, "err", err, "deadline_in", l.Deadline().Sub(l.clock.Now()).Round(time.Millisecond))
		}
		select {
		case <-l.stop:
			return false
		case <-l.lost:
			return false
		case <-l.clock.After(100 * time.Millisecond):
		}
	}
}

// retake takes the leader key back under a new lease, for a tenure that
// failsafe kept while its lease expired: the primary's renewals could not
// reach the etcd leader (a cut between it and the witness, say) but its
// secondary kept promising not to take the key, so the primary stayed the
// only writer, and the key has been vacant since the lease ran out.
// Fencing then would end a healthy tenure for nothing and hand the pair a
// failover the fault never called for. The key is taken back only if it is
// still vacant and the primary record still names this node unchanged, in
// one transaction: if the secondary took the key (its promise ran out), or
// took it and promoted, the transaction fails and the caller fences as
// before. It must finish before the deadline the promise set; it returns
// ErrNotLeader when the key cannot be taken back. granted holds the leases
// earlier attempts granted, with when they were asked for: a transaction
// whose answer was lost may have put the key under one of them, and the
// next attempt then finds the key this node's and adopts it.
func (l *Leadership) retake(granted map[clientv3.LeaseID]time.Time) error {
	now := l.clock.Now()
	left := l.Deadline().Sub(now)
	if left <= 0 {
		return fmt.Errorf("the fence deadline has passed: %w", ErrNotLeader)
	}
	// One attempt is bounded by a second as well: the caller tries again
	// while the promises hold the deadline.
	ctx, cancel := context.WithTimeout(context.Background(), min(left, time.Second))
	defer cancel()
	go func() {
		select {
		case <-l.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	r, err := l.cli.Get(ctx, PrimaryKey(l.prefix))
	if err != nil {
		return fmt.Errorf("while reading the primary record: %w", err)
	}
	var rec PrimaryRecord
	if len(r.Kvs) == 0 {
		return fmt.Errorf("no primary record: %w", ErrNotLeader)
	}
	if err := json.Unmarshal(r.Kvs[0].Value, &rec); err != nil {
		return fmt.Errorf("while reading the primary record: %w", err)
	}
	if rec.Node != l.name {
		return fmt.Errorf("the primary record names %s at term %d: %w", rec.Node, rec.Term, ErrNotLeader)
	}
	sent := l.clock.Now()
	g, err := l.cli.Grant(ctx, int64(l.cfg.TTL/time.Second))
	if err != nil {
		return fmt.Errorf("while granting a new leader lease: %w", err)
	}
	granted[g.ID] = sent
	key := LeaderKey(l.prefix)
	tr, err := l.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0),
			clientv3.Compare(clientv3.ModRevision(PrimaryKey(l.prefix)), "=", r.Kvs[0].ModRevision)).
		Then(clientv3.OpPut(key, l.name, clientv3.WithLease(g.ID))).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		// Perhaps committed: the lease is kept for the next attempt to
		// adopt; if not, it holds nothing and expires by itself.
		return fmt.Errorf("while taking the leader key back: %w", err)
	}
	lease, rev := g.ID, tr.Header.Revision
	if !tr.Succeeded {
		kvs := tr.Responses[0].GetResponseRange().GetKvs()
		var mine bool
		if len(kvs) == 1 && string(kvs[0].Value) == l.name {
			sent, mine = granted[clientv3.LeaseID(kvs[0].Lease)]
		}
		revokeQuietly(l.cli, g.ID)
		if !mine {
			return fmt.Errorf("the leader key was taken, or the primary record changed: %w", ErrNotLeader)
		}
		// An earlier attempt's transaction did put it: that tenure is ours.
		lease, rev = clientv3.LeaseID(kvs[0].Lease), kvs[0].CreateRevision
	}
	l.idMu.Lock()
	old := l.lease
	l.lease, l.rev = lease, rev
	l.idMu.Unlock()
	l.dl.renewed(sent, l.cfg.TTL)
	if !l.Held() {
		// The deadline passed while the transaction ran: the caller
		// fences; the key must not outlive this belief.
		revokeQuietly(l.cli, lease)
		return fmt.Errorf("the fence deadline passed while the key was taken back: %w", ErrNotLeader)
	}
	l.log.Warn("the leader lease had expired while failsafe kept this tenure; the vacant key is taken back under a new lease",
		"node", l.name, "new_lease", fmt.Sprintf("%x", int64(lease)), "old_lease", fmt.Sprintf("%x", int64(old)), "revision", rev, "deadline_in", l.Deadline().Sub(l.clock.Now()).Round(time.Millisecond))
	return nil
}

// watchDeadline closes Lost at the deadline unless a renewal moved it on.
// The deadline only moves later, so sleeping until the one last seen and
// looking again is enough.
func (l *Leadership) watchDeadline() {
	defer l.wg.Done()
	for {
		d := l.Deadline().Sub(l.clock.Now())
		if d <= 0 {
			l.lose("no renewal succeeded before the fence deadline")
			return
		}
		select {
		case <-l.stop:
			return
		case <-l.lost:
			return
		case <-l.clock.After(d):
		}
	}
}

func (l *Leadership) lose(reason string) {
	l.lostOnce.Do(func() {
		l.reason = reason
		close(l.lost)
		l.log.Warn("leader key lost", "node", l.name, "reason", reason)
	})
}

// Deadline is the moment after which this node must be fenced unless a
// renewal succeeds first (see FenceDeadline).
func (l *Leadership) Deadline() time.Time { return l.dl.deadline() }

// Expiry is the earliest moment, on this clock, at which the lease can
// expire at the etcd leader: the last successful renewal's send time plus
// TTL × (1 − drift), the fence deadline plus the fence margin. It only
// moves on with successful renewals, so what is timed from it (the
// watchdog's feeding) is tied to them.
func (l *Leadership) Expiry() time.Time { return l.Deadline().Add(l.cfg.FenceMargin) }

// Config is the lease configuration in force (defaults filled in).
func (l *Leadership) Config() LeaseConfig { return l.cfg }

// Lost is closed when this node no longer holds the key: at the deadline
// without a successful renewal, when etcd says the lease is gone, or after
// Resign. The caller fences (it must not act as primary after this).
func (l *Leadership) Lost() <-chan struct{} { return l.lost }

// LostReason says why Lost closed ("" while held).
func (l *Leadership) LostReason() string {
	select {
	case <-l.lost:
		return l.reason
	default:
		return ""
	}
}

// Held says whether this node may act as primary now: Lost has not closed
// and the deadline has not passed.
func (l *Leadership) Held() bool {
	select {
	case <-l.lost:
		return false
	default:
		return !l.dl.passed(l.clock.Now())
	}
}

// LastRenewal is when the last successful lease renewal was sent.
func (l *Leadership) LastRenewal() time.Time { return l.dl.lastSent() }

// KeptBy moves the fence deadline as a lease renewal would, for a promise
// asked at sent: the only other node that could take the key has promised
// not to for window (failsafe, while etcd does not answer). The deadline is
// then sent + window × (1 − drift) − fence, like a renewal's. Lost is not
// held off once it has closed, nor when etcd says the lease is gone.
func (l *Leadership) KeptBy(sent time.Time, window time.Duration) {
	l.dl.extend(sent, window)
}

// Revision is the leader key's create revision: it names this tenure, and
// the sync record's writes are conditioned on it.
func (l *Leadership) Revision() int64 {
	l.idMu.Lock()
	defer l.idMu.Unlock()
	return l.rev
}

// LeaseID is the lease the key is held under (a forced failover revokes it).
// It changes when a tenure kept by failsafe takes the key back (retake).
func (l *Leadership) LeaseID() clientv3.LeaseID {
	l.idMu.Lock()
	defer l.idMu.Unlock()
	return l.lease
}

// Resign hands the key over: renewals stop, Lost closes, then the lease is
// revoked, which deletes the key at once so the other node may take it.
// The caller demotes before it resigns.
func (l *Leadership) Resign(ctx context.Context) error {
	l.halt()
	l.lose(ReasonResigned)
	if _, err := l.cli.Revoke(ctx, l.LeaseID()); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return fmt.Errorf("while revoking the leader lease (it expires by itself within %s): %w", l.cfg.TTL, err)
	}
	return nil
}

// Close stops renewing without revoking (the lease then expires by
// itself); Lost closes.
func (l *Leadership) Close() {
	l.halt()
	l.lose(ReasonClosed)
}

// Release stops renewing without revoking, for a tandemd that re-executes
// itself (a reload) and takes the tenure back with Resume in the new
// process. It renews once more first, so the new process has the most time
// the lease allows, and returns the fence deadline that renewal set (or
// the last one's, if it failed): the new process must have renewed by then
// or fence. Lost closes, as after Close.
func (l *Leadership) Release(ctx context.Context) time.Time {
	l.halt()
	sent := l.clock.Now()
	if left := l.Deadline().Sub(sent); left > 0 {
		rctx, cancel := context.WithTimeout(ctx, left)
		resp, err := l.cli.KeepAliveOnce(rctx, l.LeaseID())
		cancel()
		if err == nil && resp.TTL > 0 {
			l.dl.renewed(sent, time.Duration(resp.TTL)*time.Second)
		}
	}
	l.lose(ReasonClosed)
	return l.Deadline()
}

func (l *Leadership) halt() {
	l.stopOnce.Do(func() { close(l.stop) })
	l.wg.Wait()
}

// Holder is who holds the leader key, as etcd sees it.
type Holder struct {
	Name     string
	Lease    clientv3.LeaseID
	Revision int64 // create revision
}

// CurrentHolder reads the leader key (linearizably: through the etcd
// leader). ok is false when the key is vacant.
func CurrentHolder(ctx context.Context, cli *clientv3.Client, prefix string) (h Holder, ok bool, err error) {
	r, err := cli.Get(ctx, LeaderKey(prefix))
	if err != nil {
		return Holder{}, false, fmt.Errorf("while reading the leader key: %w", err)
	}
	if len(r.Kvs) == 0 {
		return Holder{}, false, nil
	}
	kv := r.Kvs[0]
	return Holder{Name: string(kv.Value), Lease: clientv3.LeaseID(kv.Lease), Revision: kv.CreateRevision}, true, nil
}

// WaitVacant returns once the leader key is absent: its holder resigned,
// or its lease expired or was revoked. This is the standby's wait before it
// may take the key.
func WaitVacant(ctx context.Context, cli *clientv3.Client, prefix string) error {
	key := LeaderKey(prefix)
	for {
		r, err := cli.Get(ctx, key)
		if err != nil {
			return fmt.Errorf("while reading the leader key: %w", err)
		}
		if len(r.Kvs) == 0 {
			return nil
		}
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := cli.Watch(wctx, key, clientv3.WithRev(r.Header.Revision+1))
		deleted := false
		for wr := range wch {
			if wr.Err() != nil {
				break // compacted or lost the leader: look again
			}
			for _, ev := range wr.Events {
				if ev.Type == mvccpb.DELETE {
					deleted = true
				}
			}
			if deleted {
				break
			}
		}
		cancel()
		if deleted {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("while waiting for the leader key to be vacant: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond): // no tight loop while etcd has no leader
		}
	}
}
