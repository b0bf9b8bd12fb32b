package quorum

import (
	"sync"
	"time"
)

// LeaseConfig sets the leader lease's timings. The zero value takes the
// defaults (DefaultLeaseConfig).
type LeaseConfig struct {
	// TTL of the lease, in whole seconds (etcd's unit). etcd grants at
	// least 1.5 × its election timeout (1.5 s here, rounded up to 2 s).
	TTL time.Duration
	// RenewEvery is the time between renewals sent.
	RenewEvery time.Duration
	// DriftRate bounds how much faster than the etcd leader's this node's
	// clock may run, as a fraction: 0.01 takes 1 % of the TTL off.
	DriftRate float64
	// FenceMargin is the time the fence itself may take (stop PostgreSQL
	// hard, drop the cluster IP): it must be finished before the lease can
	// expire, so it is taken off too.
	FenceMargin time.Duration
}

// DefaultLeaseConfig: TTL 2 s is the smallest lease etcd grants with its
// default election timeout, and it is what makes power-off → first write
// on the standby ≤ 3 s reachable: the standby sees the key go at most
// TTL + 0.5 s (etcd's expiry check runs every 500 ms) after the last renewal
// reached the etcd leader, then takes the key and promotes (~0.2 s). The
// primary renews every 400 ms (5 renewals a TTL), so one or two lost
// renewals are not a fence; its deadline is 2 s × 0.99 − 0.5 s = 1.48 s
// after the last successful renewal was sent.
var DefaultLeaseConfig = LeaseConfig{
	TTL:         2 * time.Second,
	RenewEvery:  400 * time.Millisecond,
	DriftRate:   0.01,
	FenceMargin: 500 * time.Millisecond,
}

// WithDefaults is c with its zero fields set as Campaign sets them.
func (c LeaseConfig) WithDefaults() LeaseConfig { return c.withDefaults() }

func (c LeaseConfig) withDefaults() LeaseConfig {
	d := DefaultLeaseConfig
	if c.TTL > 0 {
		d.TTL = c.TTL.Round(time.Second)
		if d.TTL < time.Second {
			d.TTL = time.Second
		}
		if c.RenewEvery == 0 {
			d.RenewEvery = d.TTL / 5
		}
	}
	if c.RenewEvery > 0 {
		d.RenewEvery = c.RenewEvery
	}
	if c.DriftRate > 0 {
		d.DriftRate = c.DriftRate
	}
	if c.FenceMargin > 0 {
		d.FenceMargin = c.FenceMargin
	}
	return d
}

// FenceDeadline is the moment after which a holder must be fenced: its last
// successful renewal was sent at sent, so etcd's leader received it later
// and the lease cannot expire anywhere before sent + ttl (real time). Take
// off drift × ttl for this clock running fast against the leader's, and
// the time the fence takes:
//
//	deadline = sent + ttl × (1 − drift) − fence
//
// e.g. sent 10:00:00.000, ttl 2 s, drift 0.01, fence 0.5 s → 10:00:01.480.
// A new etcd leader only extends leases, so a leader change never brings
// expiry earlier than this.
func FenceDeadline(sent time.Time, ttl time.Duration, drift float64, fence time.Duration) time.Time {
	return sent.Add(time.Duration(float64(ttl)*(1-drift)) - fence)
}

// Clock is the time source; tests give a fake one.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// deadlineTracker keeps the fence deadline from the renewals that
// succeeded. It only moves later: a renewal answered late (sent earlier
// than one already counted) does not bring it back.
type deadlineTracker struct {
	cfg LeaseConfig
	mu  sync.Mutex
	at  time.Time
	// sent is when the last successful lease renewal was sent (a peer's
	// promise moves at, not sent).
	sent time.Time
}

// renewed counts a renewal sent at sent whose answer granted ttl (the
// server's view; the smaller of it and the configured TTL counts).
func (d *deadlineTracker) renewed(sent time.Time, granted time.Duration) time.Time {
	ttl := min(d.cfg.TTL, granted)
	nd := FenceDeadline(sent, ttl, d.cfg.DriftRate, d.cfg.FenceMargin)
	d.mu.Lock()
	defer d.mu.Unlock()
	if sent.After(d.sent) {
		d.sent = sent
	}
	if nd.After(d.at) {
		d.at = nd
	}
	return d.at
}

// extend moves the deadline as a renewal sent at sent granting window
// would, without counting as a lease renewal.
func (d *deadlineTracker) extend(sent time.Time, window time.Duration) time.Time {
	nd := FenceDeadline(sent, window, d.cfg.DriftRate, d.cfg.FenceMargin)
	d.mu.Lock()
	defer d.mu.Unlock()
	if nd.After(d.at) {
		d.at = nd
	}
	return d.at
}

// keptByPromise says whether the deadline is further on than the last
// successful renewal alone would set it: a peer's promise (extend) holds it.
func (d *deadlineTracker) keptByPromise() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.at.After(FenceDeadline(d.sent, d.cfg.TTL, d.cfg.DriftRate, d.cfg.FenceMargin))
}

func (d *deadlineTracker) lastSent() time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.sent
}

func (d *deadlineTracker) deadline() time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.at
}

func (d *deadlineTracker) passed(now time.Time) bool {
	return !now.Before(d.deadline())
}
