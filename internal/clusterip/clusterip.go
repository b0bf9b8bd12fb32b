// Package clusterip owns the cluster IP on one node: it adds the address to
// the interface whose subnet holds it, announces it, removes it, and keeps
// "present while desired, absent otherwise" true with a reconcile loop (the
// vip-manager model).
//
// One goroutine owns the address. Acquire, Release and SetAddress are
// requests to it; it also wakes every ReconcileInterval and on every netlink
// address change, compares what is wanted with what the kernel has, and
// fixes the difference.
package clusterip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Options tune a Manager. Zero values take the defaults.
type Options struct {
	// Interface names the interface to add the address to. Empty means the
	// interface with a configured address whose subnet holds the cluster IP.
	Interface string
	// AnnounceCount is how many gratuitous ARPs / unsolicited NAs follow an
	// add (default 5). One is not enough: a client whose neighbour entry was
	// refreshed within the last second (Linux locktime) ignores it, and a
	// single frame can be lost.
	AnnounceCount int
	// AnnounceInterval spaces the announcements (default 500ms).
	AnnounceInterval time.Duration
	// ReconcileInterval is how often desired and actual are compared even
	// when nothing asked (default 2s).
	ReconcileInterval time.Duration
	// ProbeTimeout is how long a probe listens for another holder's answer
	// (default 300ms).
	ProbeTimeout time.Duration
}

const (
	defaultAnnounceCount     = 5
	defaultAnnounceInterval  = 500 * time.Millisecond
	defaultReconcileInterval = 2 * time.Second
	defaultProbeTimeout      = 300 * time.Millisecond
)

func (o Options) withDefaults() Options {
	if o.AnnounceCount <= 0 {
		o.AnnounceCount = defaultAnnounceCount
	}
	if o.AnnounceInterval <= 0 {
		o.AnnounceInterval = defaultAnnounceInterval
	}
	if o.ReconcileInterval <= 0 {
		o.ReconcileInterval = defaultReconcileInterval
	}
	if o.ProbeTimeout <= 0 {
		o.ProbeTimeout = defaultProbeTimeout
	}
	return o
}

// Status is a snapshot of the manager's view, for the API and the console.
type Status struct {
	Address   string `json:"address"`    // cluster IP with prefix, "" when none is managed
	Interface string `json:"interface"`  // where it is held, or where it would be added
	Desired   bool   `json:"desired"`    // Acquire was the last request
	Held      bool   `json:"held"`       // on an interface of this node now
	Conflict  string `json:"conflict"`   // another host answered the last probe
	LastError string `json:"last_error"` // last failure of the loop, "" after a clean pass
}

var (
	// ErrStopped is returned by requests made after Stop.
	ErrStopped = errors.New("cluster IP manager stopped")
	// ErrNotStarted is returned by Acquire before Start.
	ErrNotStarted = errors.New("cluster IP manager not started")
	// ErrNoAddress is returned by Acquire when no cluster IP is set.
	ErrNoAddress = errors.New("no cluster IP configured")
)

// ConflictError says another host answered the probe for the cluster IP, so
// it was not added.
type ConflictError struct {
	IP  netip.Addr
	MAC net.HardwareAddr // nil when the answer did not carry one
}

func (e *ConflictError) Error() string {
	who := "another host (MAC unknown)"
	if len(e.MAC) > 0 {
		who = e.MAC.String()
	}
	return fmt.Sprintf("cluster IP %s is already answered for by %s; not adding it", e.IP, who)
}

// link is one interface as the manager needs it.
type link struct {
	Index int
	Name  string
	MAC   net.HardwareAddr
	Addrs []ifAddr
}

type ifAddr struct {
	Prefix netip.Prefix
	// Tentative marks an IPv6 address still in (or failed) duplicate address
	// detection: the kernel will not send from it.
	Tentative bool
}

// links is the kernel's address table (netlink in production).
type links interface {
	List() ([]link, error)
	Add(l link, p netip.Prefix) error
	// Del removes p exactly as listed (the kernel matches the prefix length).
	Del(l link, p netip.Prefix) error
	// Watch returns a channel that receives (coalesced) when any address
	// changes and is closed when the subscription ends. A nil channel means
	// no notifications; the periodic reconcile still runs.
	Watch(ctx context.Context) (<-chan struct{}, error)
}

// announcer speaks ARP (IPv4) or NDP (IPv6) on a link.
type announcer interface {
	// Probe asks the link who has ip, sending from src (invalid: let the
	// implementation choose), and listens up to timeout for an answer from
	// another host. found reports an answer; mac is nil if it named none.
	Probe(ctx context.Context, l link, ip, src netip.Addr, timeout time.Duration) (found bool, mac net.HardwareAddr, err error)
	// Announce tells the link once that ip is at l.MAC.
	Announce(l link, ip, src netip.Addr) error
}

type desire int

const (
	// undecided: neither Acquire nor Release yet. The loop leaves the
	// interface as it finds it, so a restarted tandemd that is still primary
	// keeps serving while it works out its role.
	undecided desire = iota
	wantHeld
	wantReleased
)

type lifecycle int

const (
	notStarted lifecycle = iota
	running
	stopped
)

type reqKind int

const (
	reqSetAddress reqKind = iota
	reqAcquire
	reqRelease
	reqPrepare
)

type request struct {
	kind    reqKind
	trusted bool // reqAcquire: skip the probe (the holder confirmed it let go)
	prefix  netip.Prefix
	ctx     context.Context
	reply   chan error // buffered: the loop never blocks on a gone caller
}

// Manager owns the cluster IP on this node.
type Manager struct {
	opts  Options
	log   *slog.Logger
	links links
	ann   announcer

	reqs chan request
	done chan struct{} // closed when the loop (or a Stop before Start) is over

	mu         sync.Mutex // guards state and, before Start, the owner fields
	state      lifecycle
	cancelLoop context.CancelFunc
	stopErr    error
	detach     bool // Detach ended the loop: leave the address as it is

	smu         sync.Mutex // guards status and probeCancel; never held across I/O
	status      Status
	probeCancel context.CancelFunc

	// Owned by the loop goroutine (or by the caller holding mu before Start).
	addr        netip.Prefix
	want        desire
	burstCancel context.CancelFunc
	burstDone   chan struct{}
	lastMsg     string       // last conflict/error logged, to log changes and not every tick
	skipProbe   bool         // set for one trusted acquisition
	prepared    *observation // Prepare's look at the interfaces, for the next trusted acquisition
	preparedAt  time.Time
	watchWarned bool
}

// New returns a manager using netlink and raw ARP/NDP sockets. It must run in
// the node's network namespace: sockets bind to the namespace of the thread
// that opens them, and the manager opens them from whichever thread runs.
func New(opts Options, log *slog.Logger) *Manager {
	l, a := newSystem()
	return newManager(opts, log, l, a)
}

func newManager(opts Options, log *slog.Logger, l links, a announcer) *Manager {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Manager{
		opts:  opts.withDefaults(),
		log:   log,
		links: l,
		ann:   a,
		reqs:  make(chan request),
		done:  make(chan struct{}),
	}
}

// Start runs the reconcile loop until ctx ends or Stop is called; either way
// the loop removes the address before it ends. It returns at once.
func (m *Manager) Start(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch m.state {
	case running:
		return errors.New("cluster IP manager already started")
	case stopped:
		return ErrStopped
	}
	lctx, cancel := context.WithCancel(ctx)
	m.state, m.cancelLoop = running, cancel
	go m.loop(lctx)
	return nil
}

// SetAddress sets the cluster IP and its prefix length (the node IPs'
// subnet). The zero Prefix means nothing to manage: the manager forgets the
// address and leaves the interface as it is (a disassembled primary keeps
// it). Changing from one address to another removes the old one.
func (m *Manager) SetAddress(p netip.Prefix) {
	if p.Addr().Is4In6() {
		p = netip.PrefixFrom(p.Addr().Unmap(), max(p.Bits()-96, 0))
	}
	if !p.IsValid() {
		p = netip.Prefix{}
	}
	m.mu.Lock()
	if m.state == notStarted {
		m.addr = p
		m.mu.Unlock()
		m.publish(func(s *Status) { s.Address = prefixString(p) })
		return
	}
	m.mu.Unlock()
	_ = m.send(context.Background(), request{kind: reqSetAddress, prefix: p})
}

// Acquire makes "held" the desired state and returns once the address is on
// the interface and the first announcement is out; the rest of the
// announcements follow in the background. If another host answers the
// probe, the address is not added and the error is a *ConflictError; the
// loop keeps probing and takes the address once nobody answers. If ctx ends
// first, held stays desired (call Release to undo).
func (m *Manager) Acquire(ctx context.Context) error {
	return m.acquireReq(ctx, false)
}

// AcquireTrusted takes the address without probing first: for a switchover,
// where the old holder has confirmed it let go, so the probe would only
// add its timeout to the write outage.
func (m *Manager) AcquireTrusted(ctx context.Context) error {
	return m.acquireReq(ctx, true)
}

func (m *Manager) acquireReq(ctx context.Context, trusted bool) error {
	m.mu.Lock()
	st := m.state
	m.mu.Unlock()
	if st == notStarted {
		return ErrNotStarted
	}
	return m.send(ctx, request{kind: reqAcquire, ctx: ctx, trusted: trusted})
}

// Prepare looks at the interfaces now, so that the next AcquireTrusted
// (within preparedFor) adds the address without listing them first: a
// switchover's new primary prepares while the old one still holds the
// address, and the moment nobody holds it shrinks to the add and the
// first announcement. It changes nothing on the interfaces.
func (m *Manager) Prepare(ctx context.Context) error {
	m.mu.Lock()
	st := m.state
	m.mu.Unlock()
	if st != running {
		return ErrNotStarted
	}
	return m.send(ctx, request{kind: reqPrepare, ctx: ctx})
}

// preparedFor is how long a prepared look at the interfaces is used.
const preparedFor = 30 * time.Second

// Release makes "not held" the desired state and removes the address now.
// It interrupts a probe in progress and stops pending announcements: once it
// returns, this node neither holds nor announces the address.
func (m *Manager) Release(ctx context.Context) error {
	m.mu.Lock()
	if m.state != running {
		// No loop (not yet, or any more): fence directly.
		defer m.mu.Unlock()
		m.want = wantReleased
		return m.removeAll()
	}
	m.mu.Unlock()
	m.interruptProbe()
	err := m.send(ctx, request{kind: reqRelease, ctx: ctx})
	if errors.Is(err, ErrStopped) {
		// The loop ended between the check and the send; it no longer
		// touches the owner fields.
		m.mu.Lock()
		defer m.mu.Unlock()
		m.want = wantReleased
		return m.removeAll()
	}
	return err
}

// Status returns the latest snapshot; it does no I/O.
func (m *Manager) Status() Status {
	m.smu.Lock()
	defer m.smu.Unlock()
	return m.status
}

// Stop ends the loop and removes the address if this node holds it: a
// stopped tandemd cannot fence itself, so it must not leave the address
// behind.
func (m *Manager) Stop(ctx context.Context) error {
	m.mu.Lock()
	switch m.state {
	case notStarted:
		defer m.mu.Unlock()
		m.state = stopped
		m.stopErr = m.removeAll()
		close(m.done)
		return m.stopErr
	case running:
		m.cancelLoop()
	}
	m.mu.Unlock()
	m.interruptProbe()
	select {
	case <-m.done:
	case <-ctx.Done():
		return fmt.Errorf("while stopping the cluster IP manager: %w", ctx.Err())
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stopErr
}

// Detach ends the loop and leaves the address as it is: held if this node
// holds it. It is the cluster IP's part of a reload, where tandemd
// re-executes itself and the new process keeps serving on the address (its
// manager starts undecided, which leaves the interface as it finds it,
// and its Acquire finds the address held and only announces it again):
// no removal, no gap. Pending announcements are cut short; the new
// process sends its own.
func (m *Manager) Detach(ctx context.Context) error {
	m.mu.Lock()
	switch m.state {
	case notStarted:
		m.state = stopped
		close(m.done)
		m.mu.Unlock()
		return nil
	case running:
		m.detach = true
		m.cancelLoop()
	}
	m.mu.Unlock()
	m.interruptProbe()
	select {
	case <-m.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("while detaching the cluster IP manager: %w", ctx.Err())
	}
}

func (m *Manager) send(ctx context.Context, r request) error {
	if r.ctx == nil {
		r.ctx = ctx
	}
	r.reply = make(chan error, 1)
	select {
	case m.reqs <- r:
	case <-m.done:
		return ErrStopped
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-r.reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (m *Manager) interruptProbe() {
	m.smu.Lock()
	defer m.smu.Unlock()
	if m.probeCancel != nil {
		m.probeCancel()
	}
}

func (m *Manager) publish(f func(*Status)) {
	m.smu.Lock()
	defer m.smu.Unlock()
	f(&m.status)
}

func (m *Manager) loop(ctx context.Context) {
	defer close(m.done)
	tick := time.NewTicker(m.opts.ReconcileInterval)
	defer tick.Stop()
	watch := m.watch(ctx)
	m.log.Info("cluster IP manager started", "ip", prefixString(m.addr), "iface", m.opts.Interface)
	m.publish(func(s *Status) { s.Address = prefixString(m.addr) })
	m.reconcile(ctx)
	for {
		select {
		case <-ctx.Done():
			m.shutdown()
			return
		case r := <-m.reqs:
			r.reply <- m.handle(ctx, r)
		case _, ok := <-watch:
			if !ok {
				watch = nil
				if ctx.Err() != nil {
					continue // shutting down: the next pass sees ctx.Done
				}
				m.log.Warn("netlink address subscription ended; relying on the periodic reconcile")
				continue
			}
			m.reconcile(ctx)
		case <-tick.C:
			if watch == nil {
				watch = m.watch(ctx)
			}
			m.reconcile(ctx)
		}
	}
}

func (m *Manager) watch(ctx context.Context) <-chan struct{} {
	ch, err := m.links.Watch(ctx)
	if err != nil && !m.watchWarned {
		m.watchWarned = true
		m.log.Warn("cannot subscribe to netlink address changes; relying on the periodic reconcile", "err", err)
	}
	if err == nil {
		m.watchWarned = false
	}
	return ch
}

func (m *Manager) shutdown() {
	m.stopBurst()
	m.mu.Lock()
	detach := m.detach
	m.mu.Unlock()
	var err error
	if detach {
		m.log.Info("cluster IP manager detached; the address stays as it is", "ip", prefixString(m.addr))
	} else {
		err = m.removeAll()
	}
	m.mu.Lock()
	m.state = stopped
	m.stopErr = err
	m.mu.Unlock()
}

func (m *Manager) handle(ctx context.Context, r request) error {
	switch r.kind {
	case reqSetAddress:
		m.setAddress(ctx, r.prefix)
		return nil
	case reqAcquire:
		m.want = wantHeld
		m.publish(func(s *Status) { s.Desired = true })
		if r.trusted {
			m.skipProbe = true
			defer func() { m.skipProbe = false }()
		}
		return m.acquire(ctx, r.ctx)
	case reqPrepare:
		m.prepared = nil
		if !m.addr.IsValid() {
			return ErrNoAddress
		}
		o, err := m.observe()
		if err != nil {
			return err
		}
		if o.targetErr != nil {
			return o.targetErr
		}
		m.prepared, m.preparedAt = &o, time.Now()
		return nil
	case reqRelease:
		m.prepared = nil
		m.want = wantReleased
		m.publish(func(s *Status) { s.Desired, s.Conflict = false, "" })
		m.lastMsg = ""
		m.stopBurst()
		return m.removeAll()
	}
	return fmt.Errorf("unknown cluster IP request %d", r.kind)
}

func (m *Manager) setAddress(ctx context.Context, p netip.Prefix) {
	if p == m.addr {
		return
	}
	old := m.addr
	m.prepared = nil
	if p.IsValid() && old.IsValid() && m.want != undecided {
		// The cluster IP moved: the old address is nobody's now.
		m.stopBurst()
		if err := m.removeAll(); err != nil {
			m.log.Error("could not remove the previous cluster IP", "ip", old.Addr(), "err", err)
		}
	}
	if !p.IsValid() {
		m.stopBurst()
	}
	m.addr = p
	m.lastMsg = ""
	m.log.Info("cluster IP set", "ip", prefixString(p), "previous", prefixString(old))
	m.publish(func(s *Status) {
		s.Address, s.Conflict, s.LastError = prefixString(p), "", ""
		if !p.IsValid() {
			s.Interface, s.Held = "", false
		}
	})
	m.reconcile(ctx)
}

// observation is what the kernel has now.
type observation struct {
	target    link  // where the address belongs
	targetErr error // why there is no target
	holders   []holder
}

type holder struct {
	link   link
	prefix netip.Prefix // as configured, needed to delete it
}

func (o observation) heldOn(index int) bool {
	for _, h := range o.holders {
		if h.link.Index == index {
			return true
		}
	}
	return false
}

func (m *Manager) observe() (observation, error) {
	ls, err := m.links.List()
	if err != nil {
		return observation{}, fmt.Errorf("while listing interfaces for cluster IP %s: %w", m.addr.Addr(), err)
	}
	var o observation
	for _, l := range ls {
		for _, a := range l.Addrs {
			if a.Prefix.Addr() == m.addr.Addr() {
				o.holders = append(o.holders, holder{link: l, prefix: a.Prefix})
			}
		}
	}
	o.target, o.targetErr = pickInterface(ls, m.opts.Interface, m.addr)
	return o, nil
}

// reconcile compares desired with actual and fixes the difference. Errors are
// logged and published, not returned: the next pass tries again.
func (m *Manager) reconcile(ctx context.Context) {
	if !m.addr.IsValid() {
		return
	}
	o, err := m.observe()
	if err != nil {
		m.fail(err)
		return
	}
	switch m.want {
	case wantHeld:
		if o.targetErr == nil && !o.heldOn(o.target.Index) {
			m.log.Info("cluster IP missing while desired; adding it", "ip", m.addr.Addr(), "iface", o.target.Name)
			_ = m.take(ctx, ctx, o) // take publishes its outcome
			return
		}
		if o.targetErr != nil && len(o.holders) == 0 {
			m.fail(o.targetErr)
			return
		}
	case wantReleased:
		if len(o.holders) > 0 {
			m.log.Warn("cluster IP present while not desired; removing it", "ip", m.addr.Addr(), "iface", o.holders[0].link.Name)
			if err := m.removeAll(); err != nil {
				m.fail(err)
			}
			return
		}
	}
	m.ok(o)
}

// ok publishes a clean pass.
func (m *Manager) ok(o observation) {
	m.lastMsg = ""
	m.publish(func(s *Status) {
		s.LastError = ""
		s.Held = len(o.holders) > 0
		switch {
		case len(o.holders) > 0:
			s.Interface = o.holders[0].link.Name
		case o.targetErr == nil:
			s.Interface = o.target.Name
		}
		if s.Held {
			s.Conflict = ""
		}
	})
}

func (m *Manager) fail(err error) {
	if msg := err.Error(); msg != m.lastMsg {
		m.lastMsg = msg
		m.log.Error("cluster IP reconcile failed", "ip", m.addr.Addr(), "err", err)
	}
	m.publish(func(s *Status) { s.LastError = err.Error() })
}

func (m *Manager) acquire(loopCtx, reqCtx context.Context) error {
	if !m.addr.IsValid() {
		return ErrNoAddress
	}
	prepared := m.prepared
	m.prepared = nil
	if prepared != nil && m.skipProbe && time.Since(m.preparedAt) < preparedFor {
		err := m.take(loopCtx, reqCtx, *prepared)
		if err == nil {
			return nil
		}
		// The interface may have changed since Prepare: look again.
		m.log.Warn("adding the cluster IP as prepared failed; looking at the interfaces again", "ip", m.addr.Addr(), "err", err)
	}
	o, err := m.observe()
	if err != nil {
		m.fail(err)
		return err
	}
	if o.targetErr != nil {
		m.fail(o.targetErr)
		return fmt.Errorf("while acquiring cluster IP %s: %w", m.addr.Addr(), o.targetErr)
	}
	if o.heldOn(o.target.Index) {
		// Already ours (a restart after a crash, or a repeated Acquire):
		// no probe, since our own kernel would not answer it anyway, but
		// announce again because clients may still point elsewhere.
		m.log.Info("cluster IP already held; announcing it again", "ip", m.addr.Addr(), "iface", o.target.Name)
		m.announce(o.target)
		m.ok(o)
		return nil
	}
	return m.take(loopCtx, reqCtx, o)
}

// take probes for the address, adds it if nobody answered, and starts the
// announcements. It publishes the outcome in Status.
func (m *Manager) take(loopCtx, reqCtx context.Context, o observation) error {
	err := m.probeAndAdd(loopCtx, reqCtx, o)
	var ce *ConflictError
	if err != nil && !errors.As(err, &ce) && !errors.Is(err, context.Canceled) {
		m.fail(err) // a conflict is published as such; an interruption is no failure
	}
	return err
}

func (m *Manager) probeAndAdd(loopCtx, reqCtx context.Context, o observation) error {
	ip, l := m.addr.Addr(), o.target
	src := sourceFor(l, m.addr)

	pctx, cancel := context.WithCancel(loopCtx)
	stop := context.AfterFunc(reqCtx, cancel)
	m.smu.Lock()
	m.probeCancel = cancel
	m.smu.Unlock()
	var (
		found bool
		mac   net.HardwareAddr
		err   error
	)
	if !m.skipProbe {
		found, mac, err = m.ann.Probe(pctx, l, ip, src, m.opts.ProbeTimeout)
	}
	m.smu.Lock()
	m.probeCancel = nil
	m.smu.Unlock()
	stop()
	interrupted := pctx.Err() != nil
	cancel()
	if interrupted {
		return fmt.Errorf("while probing for cluster IP %s on %s: interrupted: %w", ip, l.Name, context.Canceled)
	}
	if err != nil {
		// Not knowing whether another host holds it, we do not add it.
		return fmt.Errorf("while probing for cluster IP %s on %s: %w", ip, l.Name, err)
	}
	if found {
		ce := &ConflictError{IP: ip, MAC: mac}
		if msg := ce.Error(); msg != m.lastMsg {
			m.lastMsg = msg
			m.log.Warn("another host answers for the cluster IP; not adding it", "ip", ip, "iface", l.Name, "mac", macString(mac))
		}
		m.publish(func(s *Status) {
			s.Conflict, s.Held, s.Interface, s.LastError = ce.Error(), false, l.Name, ""
		})
		return ce
	}

	if err := m.links.Add(l, m.addr); err != nil {
		return fmt.Errorf("while adding cluster IP %s to %s: %w", m.addr, l.Name, err)
	}
	// The first announcement before anything else: until clients hear
	// it, their connections go to the previous holder's hardware address.
	m.announce(l)
	m.log.Info("cluster IP added", "ip", m.addr, "iface", l.Name, "mac", macString(l.MAC))
	m.lastMsg = ""
	m.publish(func(s *Status) {
		s.Held, s.Interface, s.Conflict, s.LastError = true, l.Name, "", ""
	})
	return nil
}

// announce sends the first announcement now and the rest in the background,
// replacing any burst still running. A failed announcement is logged, not
// returned: the address is held either way, and clients that miss it still
// find it when their neighbour entries expire.
func (m *Manager) announce(l link) {
	m.stopBurst()
	ip, src := m.addr.Addr(), sourceFor(l, m.addr)
	once := func(n int) {
		if err := m.ann.Announce(l, ip, src); err != nil {
			m.log.Warn("could not announce the cluster IP", "ip", ip, "iface", l.Name, "mac", macString(l.MAC), "err", err)
			return
		}
		m.log.Debug("cluster IP announced", "ip", ip, "iface", l.Name, "mac", macString(l.MAC), "n", n)
	}
	once(1)
	if m.opts.AnnounceCount <= 1 {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	m.burstCancel, m.burstDone = cancel, done
	count, every := m.opts.AnnounceCount, m.opts.AnnounceInterval
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		for n := 2; n <= count; n++ {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if ctx.Err() != nil { // both ready: cancellation wins
				return
			}
			once(n)
		}
	}()
}

// stopBurst cancels pending announcements and waits for one in flight, so
// that nothing is announced after the address is released.
func (m *Manager) stopBurst() {
	if m.burstCancel == nil {
		return
	}
	m.burstCancel()
	<-m.burstDone
	m.burstCancel, m.burstDone = nil, nil
}

// removeAll deletes the address from every interface of this node, not only
// the one it belongs on: at most one node may hold it.
func (m *Manager) removeAll() error {
	if !m.addr.IsValid() {
		return nil
	}
	o, err := m.observe()
	if err != nil {
		m.fail(err)
		return err
	}
	var errs []error
	for _, h := range o.holders {
		if err := m.links.Del(h.link, h.prefix); err != nil {
			errs = append(errs, fmt.Errorf("while removing cluster IP %s from %s: %w", h.prefix, h.link.Name, err))
			continue
		}
		m.log.Info("cluster IP removed", "ip", h.prefix, "iface", h.link.Name)
	}
	if err := errors.Join(errs...); err != nil {
		m.fail(err)
		m.publish(func(s *Status) { s.Held = true })
		return err
	}
	m.publish(func(s *Status) { s.Held, s.LastError = false, "" })
	return nil
}

func prefixString(p netip.Prefix) string {
	if !p.IsValid() {
		return ""
	}
	return p.String()
}

func macString(mac net.HardwareAddr) string {
	if len(mac) == 0 {
		return ""
	}
	return mac.String()
}
