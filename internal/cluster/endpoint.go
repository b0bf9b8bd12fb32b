package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tandem-ha/tandem/internal/api"
	"github.com/tandem-ha/tandem/internal/clusterip"
	"github.com/tandem-ha/tandem/internal/dnsupdate"
	"github.com/tandem-ha/tandem/internal/state"
)

// Endpoint modes: how clients find the primary.
const (
	// EndpointVIP: the cluster IP, which only the primary holds (both
	// nodes in one subnet). The default.
	EndpointVIP = "vip"
	// EndpointDNS: no cluster IP; the cluster DNS name is an A/AAAA
	// record that the primary points at its own node IP (nodes in
	// different subnets).
	EndpointDNS = "dns"
)

// Events of the DNS endpoint.
const (
	// EventDNSUpdated: the zone's primary server answers the cluster DNS
	// name with the new primary's address, and how long that took.
	EventDNSUpdated = "dns_updated"
	// EventDNSStale: an update did not land; the name still points at
	// the old primary (or nowhere) and is retried with backoff.
	EventDNSStale = "dns_stale"
)

// endpointOf is the endpoint mode of a membership ("" is a record from
// before the mode existed: the cluster IP).
func endpointOf(m *state.Membership) string {
	if m != nil && m.Endpoint == EndpointDNS {
		return EndpointDNS
	}
	return EndpointVIP
}

// endpoint is the one seam between the cluster logic and where clients
// find the primary. The logic takes and gives up "the endpoint" through
// VIP at the same points in both modes (assembly, switchover, failover,
// boot, fence, rejoin); this sends each request to the cluster IP's
// manager or to the DNS name, by the mode of the cluster this node is in
// (follow, called by every publish of the state).
type endpoint struct {
	ip     VIP
	dns    *dnsName // nil: this node has no dns_update settings
	useDNS atomic.Bool
}

func (e *endpoint) follow(m *state.Membership) {
	dnsMode := endpointOf(m) == EndpointDNS
	e.useDNS.Store(dnsMode)
	if dnsMode && e.dns != nil {
		e.dns.setName(m.DNSName)
	}
}

// errNoDNSUpdate is what a DNS-mode cluster gets from a node configured
// without dns_update.*.
var errNoDNSUpdate = errors.New("this node has no dns_update settings, so it cannot point the cluster DNS name at itself: set dns_update.server, zone, key_name and secret_file in its tandemd config (docs/config.md)")

func (e *endpoint) SetAddress(p netip.Prefix) { e.ip.SetAddress(p) }

func (e *endpoint) Acquire(ctx context.Context) error {
	if !e.useDNS.Load() {
		return e.ip.Acquire(ctx)
	}
	if e.dns == nil {
		return errNoDNSUpdate
	}
	e.dns.acquire()
	return nil
}

func (e *endpoint) AcquireTrusted(ctx context.Context) error {
	if !e.useDNS.Load() {
		return e.ip.AcquireTrusted(ctx)
	}
	return e.Acquire(ctx)
}

// Prepare readies the cluster IP's handover; the DNS name has none.
func (e *endpoint) Prepare(ctx context.Context) error {
	if !e.useDNS.Load() {
		return e.ip.Prepare(ctx)
	}
	return nil
}

// OpenRelay opens the cluster IP's handover relay; the DNS name has none.
func (e *endpoint) OpenRelay() (*clusterip.Relay, error) {
	o, ok := e.ip.(relayOpener)
	if e.useDNS.Load() || !ok {
		return nil, errors.New("no cluster IP to relay for")
	}
	return o.OpenRelay()
}

func (e *endpoint) Release(ctx context.Context) error {
	if !e.useDNS.Load() {
		return e.ip.Release(ctx)
	}
	if e.dns != nil {
		e.dns.release(ctx)
	}
	return nil
}

func (e *endpoint) Status() clusterip.Status {
	if !e.useDNS.Load() {
		return e.ip.Status()
	}
	if e.dns == nil {
		return clusterip.Status{LastError: errNoDNSUpdate.Error()}
	}
	return e.dns.status().ip()
}

// Probe looks for a host answering for an address in this node's subnet.
// A DNS-mode cluster has no shared address, so it has nothing to probe
// for its endpoint; the callers that probe the cluster IP skip it there.
func (e *endpoint) Probe(ctx context.Context, p netip.Prefix) (string, bool, error) {
	return e.ip.Probe(ctx, p)
}

// dnsStatus is the DNS endpoint's state, for status and metrics.
type dnsStatus struct {
	Name    string
	Desired bool          // this node is primary and points the name at itself
	Served  bool          // the zone's server answers the name with this node's address
	Stale   time.Time     // since when an update is due and has not landed (zero: none)
	Took    time.Duration // the last update's time until served
	Err     string        // the last attempt's failure
	TTL     time.Duration
	Server  string
}

func (s dnsStatus) ip() clusterip.Status {
	return clusterip.Status{Address: s.Name, Desired: s.Desired, Held: s.Served, LastError: s.Err}
}

// dnsName points the cluster DNS name at this node while it is primary.
// An update runs in the background, retried with backoff until it lands,
// so that a promotion never waits on DNS: at failover the DNS server may
// be as unreachable as the old primary.
type dnsName struct {
	up    *dnsupdate.Updater
	self  netip.Addr
	ttl   time.Duration
	log   *slog.Logger
	event func(kind, msg string) // records an event in the cluster's history

	mu     sync.Mutex
	st     dnsStatus
	cancel context.CancelFunc
	done   chan struct{}
}

func newDNSName(up *dnsupdate.Updater, self netip.Addr, log *slog.Logger, event func(kind, msg string)) *dnsName {
	ttl := up.TTL()
	return &dnsName{up: up, self: self, ttl: ttl, log: log, event: event, st: dnsStatus{TTL: ttl, Server: up.Server()}}
}

func (d *dnsName) setName(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.st.Name = name
}

func (d *dnsName) status() dnsStatus {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.st
}

// acquire starts pointing the name at this node, unless it already does
// or is on its way to.
func (d *dnsName) acquire() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.st.Desired && (d.st.Served || d.done != nil) {
		return
	}
	d.st.Desired, d.st.Served = true, false
	// The life of the update is the node's role, not the caller's
	// request: release cancels it.
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel, d.done = cancel, make(chan struct{})
	go d.point(ctx, d.st.Name, d.done)
}

func (d *dnsName) point(ctx context.Context, name string, done chan struct{}) {
	defer close(done)
	start := time.Now()
	want := []netip.Addr{d.self}
	staleSaid := false
	err := d.up.PointUntil(ctx, name, want, func(attempt int, err error) {
		d.mu.Lock()
		if err != nil {
			d.st.Err = err.Error()
			if d.st.Stale.IsZero() {
				d.st.Stale = start
			}
		} else {
			d.st.Err = ""
		}
		d.mu.Unlock()
		if err != nil && !staleSaid {
			staleSaid = true
			d.log.Warn("the cluster DNS name could not be updated; retrying with backoff", "name", name, "attempt", attempt, "err", err)
			d.event(EventDNSStale, fmt.Sprintf("%s is stale since %s: the update pointing it at %s did not land (%v); tandemd retries with backoff until it does",
				name, start.UTC().Format(time.RFC3339), d.self, err))
		}
	})
	if err != nil {
		return // released: the name is no longer ours to point
	}
	landed := time.Since(start)
	// The update landed; the zone's server may serve it a moment later
	// (a secondary zone, a slow journal): ask until it answers.
	waited, err := d.up.WaitAnswer(ctx, name, want, 50*time.Millisecond)
	if err != nil {
		return
	}
	took := time.Since(start)
	d.mu.Lock()
	stale := d.st.Stale
	d.st.Served, d.st.Stale, d.st.Took, d.st.Err = true, time.Time{}, took, ""
	d.mu.Unlock()
	msg := fmt.Sprintf("%s points at %s, served by %s after %s (update %s, then %s until answered; TTL %s)",
		name, d.self, d.up.Server(), took.Round(time.Millisecond), landed.Round(time.Millisecond), waited.Round(time.Millisecond), d.ttl)
	if !stale.IsZero() {
		msg += fmt.Sprintf("; it was stale since %s", stale.UTC().Format(time.RFC3339))
	}
	d.log.Info("cluster DNS name updated", "name", name, "took", took)
	d.event(EventDNSUpdated, msg)
}

// removeWithin bounds the old primary's removal of its own address: it
// comes first in a switchover, where a DNS server that does not answer
// must not hold the new primary back, and in a fence.
const removeWithin = time.Second

// release stops pointing the name here and removes this node's address
// from it where the server can be reached in time: a client resolving the
// name meanwhile finds no address rather than one that refuses writes.
// The new primary's update replaces the record whole anyway, so a removal
// that fails loses nothing.
func (d *dnsName) release(ctx context.Context) {
	d.mu.Lock()
	cancel, done, name := d.cancel, d.done, d.st.Name
	d.cancel, d.done = nil, nil
	d.st.Desired, d.st.Served, d.st.Stale = false, false, time.Time{}
	d.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	if name == "" {
		return
	}
	rctx, rcancel := context.WithTimeout(ctx, removeWithin)
	defer rcancel()
	if err := d.up.Remove(rctx, name, d.self); err != nil {
		d.log.Warn("could not remove this node's address from the cluster DNS name; the new primary's update replaces it", "name", name, "err", err)
	}
}

// dnsAskWithin bounds the view's question to the zone's server: status
// must answer quickly even when that server does not.
const dnsAskWithin = time.Second

// dnsInfo is the DNS endpoint as this node sees it, with what the zone's
// primary server answers for the name now.
func (n *Node) dnsInfo(ctx context.Context) *api.DNSEndpointInfo {
	d := n.ep.dns
	if d == nil {
		name := ""
		if s := n.State(); s.Cluster != nil {
			name = s.Cluster.DNSName
		}
		return &api.DNSEndpointInfo{Name: name, Unconfigured: true, Error: errNoDNSUpdate.Error(), Authority: []string{}}
	}
	st := d.status()
	info := &api.DNSEndpointInfo{Name: st.Name, Server: st.Server, TTL: int(st.TTL / time.Second),
		Pointing: st.Desired, Served: st.Served, Error: st.Err, Authority: []string{}}
	if !st.Stale.IsZero() {
		t := st.Stale.UTC()
		info.StaleSince = &t
	}
	actx, cancel := context.WithTimeout(ctx, dnsAskWithin)
	defer cancel()
	a, err := dnsupdate.Lookup(actx, st.Server, st.Name)
	if err != nil {
		info.AuthorityError = err.Error()
		return info
	}
	for _, ip := range a.Addrs {
		info.Authority = append(info.Authority, ip.String())
	}
	info.AuthorityTTL = int(a.TTL / time.Second)
	return info
}
