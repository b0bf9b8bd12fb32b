package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/tandem-ha/tandem/internal/api"
	"github.com/tandem-ha/tandem/internal/postgres"
	"github.com/tandem-ha/tandem/internal/quorum"
	"github.com/tandem-ha/tandem/internal/watchdog"
)

// The watchdog of automatic mode (docs/quorum.md, "Watchdog"). A primary
// fences itself at its deadline, but only a running tandemd can: one that
// is frozen (SIGSTOP, a hung process) or killed leaves PostgreSQL writable
// while the secondary promotes once the lease is gone. So:
//
//   - arm: right after a node takes (or takes back) the leader key and
//     before PostgreSQL opens for writes under it (takeKeyFor, and
//     tryHoldPrimary before openHolding), the device is opened and its
//     timeout set (watchdog.TimeoutFor: 1 s with the default lease);
//   - feed: only while the lease is held, and only so far that, fed no
//     more, the device fires before the lease can expire at the etcd
//     leader: a feed at time t needs t ≤ Expiry − timeout − ResetMargin
//     (watchdog.FeedBy), and Expiry moves on only with successful
//     renewals. With the defaults the device fires 1.78–1.88 s after the
//     last successful renewal was sent, after the fence deadline (1.48 s),
//     before the earliest expiry (1.98 s);
//   - disarm (magic close) once the node stops being primary with
//     PostgreSQL closed: when the tenure ends (a switchover's handover, a
//     resign at shutdown or after a failed promotion) and PostgreSQL is
//     down or in recovery; after a fence has stopped PostgreSQL; when the
//     node leaves the quorum (disassembly). A tenure that ends with
//     PostgreSQL still writable and no fence that succeeds leaves the
//     device unfed: it resets the machine, which is the point.

// EventWatchdogUnavailable: watchdog.mode automatic could not arm the
// watchdog; this primary runs without it.
const EventWatchdogUnavailable = "watchdog_unavailable"

// feedEvery is the feeder's period: the device fires within feedEvery of
// the latest moment the rule allows.
const feedEvery = 100 * time.Millisecond

// WatchdogConfig is watchdog.* of tandemd's configuration.
type WatchdogConfig struct {
	Mode   string // off (also ""), automatic, required
	Device string
}

// watchdogState is the one owner of this node's watchdog device.
type watchdogState struct {
	mu      sync.Mutex
	dev     *watchdog.Device
	owner   *quorum.Leadership // the tenure it is fed for
	timeout time.Duration
	err     string // why it is not armed where it should be
	preErr  string // why watchdogPrecheck refuses (mode required)
	noted   string // the problem last reported as an event
}

func (n *Node) watchdogMode() string {
	if n.cfg.Watchdog.Mode == "" {
		return watchdog.ModeOff
	}
	return n.cfg.Watchdog.Mode
}

// watchdogTimeout is the device timeout for this node's lease.
func (n *Node) watchdogTimeout() (time.Duration, error) {
	c := n.cfg.Lease.WithDefaults()
	return watchdog.TimeoutFor(c.TTL, c.RenewEvery, c.DriftRate)
}

// watchdogPrecheck refuses, with watchdog.mode required, a campaign for
// the primary role that could not be armed: the device is missing or not
// writable, or the lease too short. It does not open the device (that
// arms it). With automatic and off it never refuses.
func (n *Node) watchdogPrecheck() error {
	if n.watchdogMode() != watchdog.ModeRequired {
		return nil
	}
	err := watchdog.Usable(n.cfg.Watchdog.Device)
	if err == nil {
		_, err = n.watchdogTimeout()
	}
	if err != nil {
		err = fmt.Errorf("watchdog.mode is required and the watchdog cannot be armed (%v): %s does not take the primary role", err, n.cfg.Name)
	}
	n.wd.mu.Lock()
	n.wd.preErr = ""
	if err != nil {
		n.wd.preErr = err.Error()
	}
	n.wd.mu.Unlock()
	return err
}

// armWatchdog arms the watchdog for tenure l and returns once it is fed
// for it. With watchdog.mode automatic a device that cannot be armed is
// reported (log, event) and nil returned; with required, the error: the
// caller gives the key up and does not open for writes.
func (n *Node) armWatchdog(l *quorum.Leadership) error {
	mode := n.watchdogMode()
	if mode == watchdog.ModeOff {
		return nil
	}
	fed, err := n.startFeeding(l)
	if err == nil {
		select {
		case <-fed:
		case <-l.Lost():
			err = fmt.Errorf("the leader lease ended before the watchdog was fed: %s", l.LostReason())
		}
	}
	if err == nil {
		n.wd.mu.Lock()
		n.wd.err, n.wd.noted = "", ""
		n.wd.mu.Unlock()
		return nil
	}
	n.wd.mu.Lock()
	n.wd.err = err.Error()
	report := n.wd.noted != n.wd.err
	n.wd.noted = n.wd.err
	n.wd.mu.Unlock()
	if mode == watchdog.ModeRequired {
		n.log.Error("WATCHDOG: watchdog.mode is required and the watchdog cannot be armed; this node does not open for writes", "device", n.cfg.Watchdog.Device, "err", err)
		return fmt.Errorf("watchdog.mode is required and the watchdog cannot be armed: %w", err)
	}
	n.log.Error("WATCHDOG UNAVAILABLE: this primary runs without a watchdog; a frozen tandemd here would leave PostgreSQL writable after the lease expires", "device", n.cfg.Watchdog.Device, "err", err)
	if report {
		msg := fmt.Sprintf("%s holds the leader key without a watchdog (%v): should its tandemd freeze, PostgreSQL there keeps accepting writes after the secondary takes over. Load a watchdog driver (`modprobe softdog`) or set watchdog.mode", n.cfg.Name, err)
		n.run.goAttach(func(ctx context.Context) { n.event(ctx, EventWatchdogUnavailable, n.cfg.Name, msg) })
	}
	return nil
}

// startFeeding opens the device if it is not open yet, sets its timeout
// and starts feeding it for l; fed closes at the first feed.
func (n *Node) startFeeding(l *quorum.Leadership) (fed chan struct{}, err error) {
	timeout, err := n.watchdogTimeout()
	if err != nil {
		return nil, err
	}
	n.wd.mu.Lock()
	defer n.wd.mu.Unlock()
	if n.wd.dev == nil {
		dev, err := watchdog.Open(n.cfg.Watchdog.Device)
		if err != nil {
			return nil, err
		}
		got, err := dev.SetTimeout(timeout)
		if err == nil && got > timeout {
			err = fmt.Errorf("the watchdog %s runs with a timeout of %s, longer than the %s the leader lease allows", dev.Path(), got, timeout)
		}
		if err != nil {
			// Opened, so armed: stop it again.
			if derr := dev.Disarm(); derr != nil {
				err = errors.Join(err, derr)
			}
			return nil, err
		}
		n.wd.dev, n.wd.timeout = dev, got
		n.log.Warn("watchdog armed", "device", dev.Path(), "identity", dev.Identity(), "timeout", got)
	}
	n.wd.owner = l
	fed = make(chan struct{})
	go n.feedWatchdog(l, n.wd.dev, n.wd.timeout, fed)
	return fed, nil
}

// feedWatchdog feeds dev for tenure l (see the rule at the top) until l
// ends or another tenure owns the device. It runs on no context of the
// node: at shutdown the lease is held, and the device fed, until the
// resign after PostgreSQL has stopped.
func (n *Node) feedWatchdog(l *quorum.Leadership, dev *watchdog.Device, timeout time.Duration, fed chan struct{}) {
	tick := time.NewTicker(feedEvery)
	defer tick.Stop()
	first, failing := true, false
	for {
		n.wd.mu.Lock()
		mine := n.wd.owner == l && n.wd.dev == dev
		n.wd.mu.Unlock()
		if !mine {
			return
		}
		select {
		case <-l.Lost():
			n.tenureEnded(l, dev)
			return
		default:
		}
		if !time.Now().After(watchdog.FeedBy(l.Expiry(), timeout)) {
			err := dev.Keepalive()
			switch {
			case errors.Is(err, watchdog.ErrClosed):
				return // disarmed meanwhile
			case err != nil && !failing:
				failing = true
				n.log.Error("WATCHDOG: could not feed the watchdog; it resets this machine unless a feed succeeds", "err", err)
			case err == nil && failing:
				failing = false
				n.log.Info("watchdog fed again")
			}
			if err == nil && first {
				first = false
				close(fed)
			}
		}
		select {
		case <-tick.C:
		case <-l.Lost():
		}
	}
}

// tenureEnded: tenure l is over and the feeding stops. With PostgreSQL
// closed (down, or a standby) the device is disarmed; otherwise it stays
// unfed, and the fence now under way disarms it once PostgreSQL is down
// (selfFence), or the machine resets.
func (n *Node) tenureEnded(l *quorum.Leadership, dev *watchdog.Device) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if n.pgClosed(ctx) {
		n.disarmWatchdogFor(l, "the leader lease ended ("+l.LostReason()+") with PostgreSQL closed")
		return
	}
	n.log.Warn("WATCHDOG: the leader lease ended while PostgreSQL may still accept writes; the watchdog is no longer fed and resets this machine unless PostgreSQL stops first", "reason", l.LostReason())
}

// pgClosed says whether PostgreSQL accepts no writes here: no postmaster,
// or one in recovery.
func (n *Node) pgClosed(ctx context.Context) bool {
	if !n.pg.PostmasterRunning() {
		return true
	}
	ps := n.pg.Status(ctx)
	return ps.State == postgres.StateRunning && ps.InRecovery
}

// disarmWatchdogFor disarms the device if tenure l (nil: any) still owns
// it.
func (n *Node) disarmWatchdogFor(l *quorum.Leadership, why string) {
	n.wd.mu.Lock()
	dev := n.wd.dev
	if dev == nil || (l != nil && n.wd.owner != l) {
		n.wd.mu.Unlock()
		return
	}
	n.wd.dev, n.wd.owner = nil, nil
	n.wd.mu.Unlock()
	if err := dev.Disarm(); err != nil {
		n.log.Error("WATCHDOG: could not disarm the watchdog", "why", why, "err", err)
		return
	}
	n.log.Info("watchdog disarmed", "why", why)
}

// watchdogFenced: a fence has stopped PostgreSQL, so the device is no
// longer needed (the node waits for the quorum, closed).
func (n *Node) watchdogFenced() { n.disarmWatchdogFor(nil, "fenced: PostgreSQL is down") }

// watchdogLeft: the node leaves the quorum. When it leaves automatic mode
// for good (wipe: disassembly, leave, an assembly undone) the device goes
// whatever PostgreSQL does, since no lease protects anything any more;
// at shutdown only once PostgreSQL is down.
func (n *Node) watchdogLeft(wipe bool) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if !wipe && !n.pgClosed(ctx) {
		n.wd.mu.Lock()
		armed := n.wd.dev != nil
		n.wd.mu.Unlock()
		if armed {
			n.log.Error("WATCHDOG: PostgreSQL still runs as the lease is given up; the watchdog stays armed and resets this machine")
		}
		return
	}
	n.disarmWatchdogFor(nil, "left the quorum")
}

// watchdogBlocks says why this node may not promote by itself (empty:
// nothing here prevents it): watchdog.mode required without a usable
// device.
func (n *Node) watchdogBlocks() string {
	if err := n.watchdogPrecheck(); err != nil {
		return err.Error()
	}
	return ""
}

// watchdogInfo is the watchdog for status (nil with mode off).
func (n *Node) watchdogInfo() *api.WatchdogInfo {
	mode := n.watchdogMode()
	if mode == watchdog.ModeOff {
		return nil
	}
	n.wd.mu.Lock()
	defer n.wd.mu.Unlock()
	wi := &api.WatchdogInfo{Mode: mode, Device: n.cfg.Watchdog.Device, Error: n.wd.err}
	if wi.Error == "" {
		wi.Error = n.wd.preErr
	}
	if n.wd.dev != nil {
		wi.Armed, wi.Identity, wi.TimeoutMS = true, n.wd.dev.Identity(), n.wd.timeout.Milliseconds()
	}
	return wi
}
