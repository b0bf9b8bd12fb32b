// Package postgres supervises this node's PostgreSQL. One goroutine, the
// owner, starts (or adopts), watches, restarts and stops the postmaster,
// and is the only one to change the server's role or its data directory:
// start as primary or standby, promote, the switchover's shutdown, rewind,
// clone and the copies it moves aside. Everything else in tandemd asks it
// through requests on one channel, or reads its Status, so two actions on
// the postmaster or the data directory can never interleave.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tandem-ha/tandem/internal/tool"
)

// Options says which PostgreSQL to supervise and how.
type Options struct {
	BinDir          string // holds postgres, initdb, pg_ctl, pg_controldata
	DataDir         string
	SocketDir       string // this node's own unix socket dir (sockets are per filesystem, not per network namespace)
	Port            int
	OSUser          string        // e.g. "postgres"; PostgreSQL refuses root
	ListenAddresses string        // listen_addresses, e.g. "*"
	Init            string        // "auto": initdb an empty/missing data dir; "never": refuse, report state "no_data"
	StopTimeout     time.Duration // per stage of smart → fast → immediate
	PasswordFile    string        // superuser password file (root-owned, 0600); created at initdb time with a random password
	// DataChecksums and InitdbOptions shape a cluster initdb creates
	// (Init "auto"); an existing data directory keeps what it has.
	DataChecksums bool
	InitdbOptions []string // more initdb options, each --name=value
	// Settings are extra postgresql.conf settings written into tandem.conf
	// (replication settings, primary_conninfo…); SetSettings changes them.
	Settings map[string]string
	// HBA is who may connect over TCP: pg_hba.conf is written from it.
	HBA HBA
}

// Status is a snapshot of the supervised PostgreSQL.
type Status struct {
	State      string // one of the State* constants
	PID        int
	InRecovery bool
	LSN        string // pg_current_wal_lsn() on a primary, pg_last_wal_replay_lsn() in recovery
	Version    string // server_version, e.g. "15.18"
	VersionNum int    // server_version_num
	Restarts   int    // crash restarts since tandemd started
	Error      string // last error, if any
}

// Values of Status.State.
const (
	StateStopped  = "stopped"
	StateStarting = "starting"
	StateRunning  = "running"
	StateStopping = "stopping"
	StateCrashed  = "crashed" // restarting after an unexpected exit
	StateNoData   = "no_data" // empty data dir and Init is "never"
	StateFailed   = "failed"  // the first start failed; nothing is retried
)

var (
	// ErrNoData is returned by Start when the data directory is empty or
	// missing and Options.Init is "never".
	ErrNoData = errors.New("no PostgreSQL data directory")
	// ErrVersionMismatch is returned when the data directory was made by
	// another PostgreSQL major version than the binaries in BinDir.
	ErrVersionMismatch = errors.New("PostgreSQL major version of the data directory differs from the binaries")
	// ErrNotRunning is returned by Connect when there is no postmaster.
	ErrNotRunning = errors.New("PostgreSQL is not running")
	// ErrNotInRecovery is returned by Promote on a primary.
	ErrNotInRecovery = errors.New("PostgreSQL is not in recovery")
	// ErrInRecovery is returned when a primary was expected and PostgreSQL
	// runs as a standby (StartPrimary, ShutdownForSwitchover).
	ErrInRecovery = errors.New("PostgreSQL runs as a standby")
)

// superuser is the role initdb creates (-U) and tandemd connects as.
const superuser = "postgres"

// Supervisor owns one PostgreSQL instance.
type Supervisor struct {
	opts   Options
	log    *slog.Logger
	runAs  *tool.Credential // nil when tandemd is not root: programs run as ourselves
	osUser *tool.Credential
	root   bool

	reqs      chan request
	done      chan struct{} // closed when the owner goroutine has returned
	started   atomic.Bool
	abandoned chan struct{} // closed by Detach: the owner leaves without touching the postmaster
	abandon1  sync.Once

	// life is cancelled when the owner returns; tools it runs use it.
	life       context.Context
	lifeCancel context.CancelFunc

	mu     sync.Mutex
	st     Status // State, PID, Restarts, Error; the rest is filled by queries
	target target // where the current postmaster listens
	gen    int    // bumped for every new postmaster, so status connections follow it

	// qmu serialises status queries over the one reused connection.
	qmu   sync.Mutex
	qconn *pgx.Conn
	qgen  int

	binMajor string // major version of BinDir/postgres, once known (owner only)

	hbaMu sync.Mutex // held across read, render and write of pg_hba.conf

	// fenced is set by Fence: no crash restart, and nothing starts
	// PostgreSQL read-write, until Unfence (or a start as a standby).
	fenced atomic.Bool
	// handsOff is set while the cluster is in maintenance mode
	// (handsoff.go): a postmaster that exits is not restarted, and one
	// started by hand on the data directory is adopted.
	handsOff atomic.Bool

	// Tunables; tests shorten them.
	readyTimeout time.Duration // how long a start may take before Start gives up waiting
	backoffMin   time.Duration
	backoffMax   time.Duration
	stableAfter  time.Duration // uptime after which the restart backoff starts over
	pollEvery    time.Duration // liveness poll of an adopted postmaster
}

// target is where a postmaster accepts local connections.
type target struct {
	socketDir string
	port      int
}

type requestKind int

const (
	reqStop                    requestKind = iota // shut down and end the owner
	reqHalt                                       // shut down, stay supervised, do not restart
	reqFence                                      // immediate shutdown of any postmaster on the data dir, stay down
	reqResume                                     // start again after a halt
	reqReload                                     // rewrite tandem.conf and signal a reload
	reqStartStandby                               // run as a standby (start, restart or reload)
	reqStartPrimary                               // run read-write (start or reload)
	reqPromote                                    // end recovery
	reqShutdownForSwitchover                      // checkpoint, fast shutdown, report the checkpoint
	reqRewind                                     // pg_rewind from a source
	reqClone                                      // replace the data with a pg_basebackup copy
	reqRestoreAside                               // put data moved aside back
	reqDiscardAside                               // give up data moved aside
	reqMoveDataAside                              // move the whole data dir aside
	reqRecoverInterruptedClone                    // put back what an interrupted clone moved aside
)

var requestNames = [...]string{
	reqStop: "stop", reqHalt: "halt", reqFence: "fence", reqResume: "resume", reqReload: "reload",
	reqStartStandby: "start as a standby", reqStartPrimary: "start as a primary",
	reqPromote: "promote", reqShutdownForSwitchover: "shut down for a switchover",
	reqRewind: "rewind", reqClone: "clone", reqRestoreAside: "put data back",
	reqDiscardAside: "discard data moved aside", reqMoveDataAside: "move the data aside",
	reqRecoverInterruptedClone: "recover an interrupted clone",
}

func (k requestKind) String() string {
	if int(k) < len(requestNames) && requestNames[k] != "" {
		return requestNames[k]
	}
	return fmt.Sprintf("request %d", int(k))
}

// request is one thing asked of the owner goroutine; it answers on reply.
type request struct {
	kind requestKind
	// ctx is the asker's. Tools the owner runs for the request die with it
	// (exec.CommandContext), so a cancelled request cannot leave one
	// running; shutdowns are bounded by StopTimeout instead.
	ctx      context.Context
	fast     bool              // reqHalt: begin with a fast shutdown instead of smart
	mayInit  bool              // reqResume, reqStartPrimary: an empty data dir may be initialised
	settings map[string]string // reqStart*: the settings to run with
	src      Source            // reqRewind, reqClone
	slot     string            // reqClone
	progress func(done, total int64)
	aside    string // reqRestoreAside, reqDiscardAside
	reply    chan response
}

// response is the owner's answer to a request. reply channels are buffered
// (one answer each), so the owner never blocks on an asker that gave up.
type response struct {
	err   error
	value string // what the request returns besides the error, if anything
}

// New checks opts and returns a Supervisor that has not started anything.
func New(opts Options, log *slog.Logger) (*Supervisor, error) {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if err := opts.check(); err != nil {
		return nil, err
	}
	u, err := tool.LookupUser(opts.OSUser)
	if err != nil {
		return nil, err
	}
	if u.UID == 0 {
		return nil, fmt.Errorf("OS user %q is root; PostgreSQL refuses to run as root: name an unprivileged user", opts.OSUser)
	}
	root := os.Geteuid() == 0
	if !root && int(u.UID) != os.Geteuid() {
		return nil, fmt.Errorf("OS user %q differs from the user tandemd runs as (uid %d): run tandemd as root or use your own user", opts.OSUser, os.Geteuid())
	}
	s := &Supervisor{
		opts:         opts,
		log:          log.With("data_dir", opts.DataDir),
		osUser:       u,
		root:         root,
		reqs:         make(chan request),
		done:         make(chan struct{}),
		abandoned:    make(chan struct{}),
		st:           Status{State: StateStopped},
		readyTimeout: 60 * time.Second, // pg_ctl's default wait
		backoffMin:   500 * time.Millisecond,
		backoffMax:   10 * time.Second,
		stableAfter:  time.Minute,
		pollEvery:    250 * time.Millisecond,
	}
	if root {
		s.runAs = u
	}
	s.life, s.lifeCancel = context.WithCancel(context.Background())
	return s, nil
}

func (o Options) check() error {
	var p []string
	add := func(format string, a ...any) { p = append(p, fmt.Sprintf(format, a...)) }
	if o.BinDir == "" {
		add("BinDir is empty: name the directory holding postgres and initdb")
	} else if fi, err := os.Stat(filepath.Join(o.BinDir, "postgres")); err != nil || fi.IsDir() {
		add("BinDir %q holds no postgres executable", o.BinDir)
	}
	for _, d := range []struct{ name, v string }{{"DataDir", o.DataDir}, {"SocketDir", o.SocketDir}} {
		if !filepath.IsAbs(d.v) {
			add("%s %q must be an absolute path", d.name, d.v)
		}
	}
	if o.Port < 1 || o.Port > 65535 {
		add("Port %d must be 1-65535", o.Port)
	}
	// The kernel limits a socket path to 107 bytes.
	if sock := filepath.Join(o.SocketDir, ".s.PGSQL."+strconv.Itoa(o.Port)); len(sock) > 107 {
		add("SocketDir %q is too long: the socket path %s exceeds the kernel's 107 bytes", o.SocketDir, sock)
	}
	// unix_socket_directories is a comma-separated list that honours double quotes.
	if strings.ContainsAny(o.SocketDir, ",\"\n") {
		add("SocketDir %q must not contain a comma, a double quote or a newline", o.SocketDir)
	}
	if o.OSUser == "" {
		add("OSUser is empty: name the unprivileged OS user PostgreSQL runs as")
	}
	if o.ListenAddresses == "" || strings.ContainsAny(o.ListenAddresses, "\n\r") {
		add("ListenAddresses %q must be \"*\" or a comma-separated list of addresses on one line", o.ListenAddresses)
	}
	switch o.Init {
	case "auto":
		if !filepath.IsAbs(o.PasswordFile) {
			add("PasswordFile %q must be an absolute path: initdb stores the superuser's password there", o.PasswordFile)
		}
	case "never":
	default:
		add("Init %q must be \"auto\" or \"never\"", o.Init)
	}
	if o.StopTimeout <= 0 {
		add("StopTimeout must be positive")
	}
	p = append(p, o.HBA.check()...)
	if len(p) > 0 {
		return fmt.Errorf("invalid PostgreSQL supervisor options: %s", strings.Join(p, "; "))
	}
	return nil
}

// Start starts the owner goroutine and returns once the first attempt to
// bring PostgreSQL up has settled: nil when it accepts connections (started
// or adopted); an error wrapping ErrNoData when the data dir is empty and
// Init is "never" (the owner keeps running, state "no_data"); any other
// error when it could not start (state "failed", or still "starting" if it
// merely has not accepted connections within the start bound). In every
// case the owner keeps running until Stop. Cancelling ctx only stops the
// waiting.
func (s *Supervisor) Start(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("the PostgreSQL supervisor was already started")
	}
	first := make(chan response, 1)
	go s.run(first, false)
	select {
	case r := <-first:
		return r.err
	case <-ctx.Done():
		return fmt.Errorf("while waiting for PostgreSQL to start: %w", ctx.Err())
	}
}

// Stop shuts PostgreSQL down (smart, then fast, then immediate, each stage
// bounded by StopTimeout) and ends the owner goroutine. When ctx ends first
// Stop returns, but the owner still finishes the shutdown.
func (s *Supervisor) Stop(ctx context.Context) error {
	if !s.started.Load() {
		return nil
	}
	r := request{kind: reqStop, ctx: ctx, reply: make(chan response, 1)}
	select {
	case s.reqs <- r:
	case <-s.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("while asking PostgreSQL's supervisor to stop: %w", ctx.Err())
	}
	select {
	case resp := <-r.reply:
		<-s.done
		return resp.err
	case <-ctx.Done():
		return fmt.Errorf("while waiting for PostgreSQL to stop: %w", ctx.Err())
	}
}

// Detach ends the owner goroutine without touching the postmaster: it
// keeps running, with its clients, for the next tandemd to adopt. It is
// the supervisor's part of a reload (tandemd re-executing itself); a
// request under way finishes first, since the owner handles one at a
// time. When ctx ends first Detach returns; the owner still lets go.
func (s *Supervisor) Detach(ctx context.Context) error {
	if !s.started.Load() {
		return nil
	}
	s.abandon1.Do(func() { close(s.abandoned) })
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("while letting go of PostgreSQL: %w", ctx.Err())
	}
}

// abandonForTest ends the owner goroutine without touching the postmaster,
// as if tandemd had been killed.
func (s *Supervisor) abandonForTest() { _ = s.Detach(context.Background()) }

func (s *Supervisor) setState(state string, pid int, errText string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.State, s.st.PID, s.st.Error = state, pid, errText
}

func (s *Supervisor) snapshot() (Status, target, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st, s.target, s.gen
}

// owner is the state only the owner goroutine touches.
type owner struct {
	s     *Supervisor
	cur   *postmaster // nil when no postmaster is known to run
	bo    backoff
	retry *time.Timer // pending crash restart
	// halted: stopped on purpose (Halt); no restart until Resume.
	halted bool
	// waiters are answered once the current postmaster accepts
	// connections, exits, is overdue or is stopped: Start's, and those of
	// requests that start PostgreSQL (Resume, StartPrimary…).
	waiters []chan response
	// explicit: the start under way was asked for (not a crash restart),
	// so its failure is reported rather than retried.
	explicit bool
	mayInit  bool // whether the explicit start may initdb
}

func (s *Supervisor) run(first chan response, halted bool) {
	defer close(s.done)
	defer s.lifeCancel()
	o := &owner{s: s, bo: backoff{min: s.backoffMin, max: s.backoffMax}}
	if halted {
		o.halted = true
	} else {
		o.beginStart(first, true)
		o.firstAttempt()
	}
	for {
		var gone, ready <-chan struct{}
		var retry, late <-chan time.Time
		if p := o.cur; p != nil {
			gone = p.gone
			if !p.isReady {
				ready = p.ready
				if p.late != nil {
					late = p.late.C
				}
			}
		}
		if o.retry != nil {
			retry = o.retry.C
		}
		select {
		case r := <-s.reqs:
			if o.handle(r) {
				return
			}
		case <-gone:
			o.exited()
		case <-ready:
			o.becameReady()
		case <-late:
			o.readyOverdue()
		case <-retry:
			o.retry = nil
			o.restart()
		case <-s.abandoned:
			o.leave()
			return
		}
	}
}

// beginStart marks an explicit start, answered on reply once it settles.
func (o *owner) beginStart(reply chan response, mayInit bool) {
	o.explicit, o.mayInit = true, mayInit
	o.waitReady(reply)
}

// waitReady answers reply once the current start settles.
func (o *owner) waitReady(reply chan response) {
	o.waiters = append(o.waiters, reply)
}

// settle answers every waiter; an explicit start is over.
func (o *owner) settle(err error) {
	for _, w := range o.waiters {
		w <- response{err: err}
	}
	o.waiters, o.explicit, o.mayInit = nil, false, false
}

func (o *owner) firstAttempt() {
	s := o.s
	err := o.bringUp(o.mayInit)
	switch {
	case err == nil:
		return // settled when ready, exited or overdue
	case errors.Is(err, ErrNoData):
		s.log.Warn("not starting PostgreSQL", "reason", err.Error())
		s.setState(StateNoData, 0, err.Error())
	default:
		s.log.Error("could not start PostgreSQL", "err", err.Error())
		s.setState(StateFailed, 0, err.Error())
	}
	o.settle(err)
}

// bringUp prepares the data directory, then adopts a postmaster that is
// already running on it or starts one. Only the first attempt may initdb:
// a data directory that vanishes while tandemd runs is a fault to report,
// not a reason to create an empty cluster.
func (o *owner) bringUp(mayInit bool) error {
	s := o.s
	s.setState(StateStarting, 0, "")
	running, err := s.prepare(s.life, mayInit)
	if err != nil {
		return err
	}
	var p *postmaster
	if running != nil {
		p = s.adopt(running)
	} else if p, err = s.spawn(); err != nil {
		return err
	}
	o.cur = p
	s.mu.Lock()
	s.gen++
	s.target = p.target
	s.st.State, s.st.PID = StateStarting, p.pid
	s.mu.Unlock()
	return nil
}

func (o *owner) becameReady() {
	s, p := o.s, o.cur
	p.isReady = true
	p.readyAt = time.Now()
	if p.late != nil {
		p.late.Stop()
	}
	p.stopProbe()
	s.setState(StateRunning, p.pid, "")
	s.log.Info("PostgreSQL accepts connections", "pid", p.pid, "adopted", p.adopted)
	o.settle(nil)
}

func (o *owner) readyOverdue() {
	s, p := o.s, o.cur
	p.late = nil
	err := fmt.Errorf("PostgreSQL (pid %d) does not accept connections after %s; still waiting (crash recovery can take long)", p.pid, s.readyTimeout)
	s.log.Warn("PostgreSQL is slow to start", "pid", p.pid, "waited", s.readyTimeout)
	s.setState(StateStarting, p.pid, err.Error())
	o.settle(err)
}

// exited handles a postmaster that went away without being asked to.
func (o *owner) exited() {
	s, p := o.s, o.cur
	o.cur = nil
	p.stopProbe()
	p.stopWatch()
	if p.late != nil {
		p.late.Stop()
	}
	err := fmt.Errorf("postmaster (pid %d) exited unexpectedly: %s", p.pid, p.exit)
	switch {
	case o.explicit && p.adopted:
		// It was on its way out when we found it (a shutdown begun by the
		// previous tandemd); start our own.
		s.log.Warn("adopted PostgreSQL went away before it accepted connections; starting a new one", "pid", p.pid)
		o.firstAttempt()
	case o.explicit:
		err = fmt.Errorf("PostgreSQL exited while starting (%s); its last log lines say why", p.exit)
		s.log.Error("could not start PostgreSQL", "pid", p.pid, "status", p.exit)
		s.setState(StateFailed, 0, err.Error())
		o.settle(err)
	case p.isReady:
		s.mu.Lock()
		s.st.Restarts++
		n := s.st.Restarts
		s.mu.Unlock()
		if time.Since(p.readyAt) >= s.stableAfter {
			o.bo.reset()
		}
		s.log.Error("PostgreSQL exited unexpectedly", "pid", p.pid, "status", p.exit, "restarts", n)
		o.scheduleRestart(err)
	default:
		s.log.Error("PostgreSQL exited before it accepted connections", "pid", p.pid, "status", p.exit)
		o.scheduleRestart(err)
	}
}

func (o *owner) scheduleRestart(cause error) {
	if o.s.fenced.Load() {
		// Fenced: it stays down, as a Halt would keep it.
		o.settle(cause)
		o.halted = true
		o.s.setState(StateStopped, 0, "fenced")
		return
	}
	o.settle(cause) // those waiting for a crash restart hear of its failure
	if o.s.handsOff.Load() {
		o.waitByHand(cause)
		return
	}
	d := o.bo.next()
	o.s.setState(StateCrashed, 0, cause.Error())
	o.s.log.Info("restarting PostgreSQL after a delay", "delay", d)
	o.retry = time.NewTimer(d)
}

func (o *owner) restart() {
	if o.s.fenced.Load() {
		o.halted = true
		o.s.setState(StateStopped, 0, "fenced")
		return
	}
	if o.s.handsOff.Load() && len(o.waiters) == 0 {
		// Hands off, and nobody asked for a start (a request waiting on
		// this timer, resume's, is served by the start below).
		o.adoptByHand()
		return
	}
	if err := o.bringUp(false); err != nil {
		o.s.log.Error("could not restart PostgreSQL", "err", err.Error())
		o.scheduleRestart(err)
	}
}

type stopStage struct {
	sig  os.Signal
	mode string
}

// stop shuts the postmaster down, escalating smart → fast → immediate.
func (o *owner) stop() error { return o.shutdown(false) }

// shutdown stops the postmaster; fast skips the smart stage, for
// operations that must not wait for clients to leave.
func (o *owner) shutdown(fast bool) error {
	s, p := o.s, o.cur
	o.cancelRetry()
	o.settle(errors.New("PostgreSQL was asked to stop before it accepted connections"))
	if p == nil {
		s.setState(StateStopped, 0, "")
		return nil
	}
	o.cur = nil
	s.setState(StateStopping, p.pid, "")
	p.stopProbe()
	if p.late != nil {
		p.late.Stop()
	}
	defer p.stopWatch()
	// Our own status connection would hold up a smart shutdown forever.
	s.closeQueryConn()

	stages := []stopStage{{sigSmart, "smart"}, {sigFast, "fast"}, {sigImmediate, "immediate"}}
	if fast {
		stages = stages[1:]
	}
	for i, st := range stages {
		if i == 0 {
			s.log.Info("stopping PostgreSQL", "pid", p.pid, "mode", st.mode)
		} else {
			s.log.Warn("PostgreSQL still running; escalating shutdown", "pid", p.pid, "mode", st.mode, "after", s.opts.StopTimeout)
		}
		if err := p.proc.Signal(st.sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
			s.log.Warn("could not signal PostgreSQL", "pid", p.pid, "mode", st.mode, "err", err.Error())
		}
		if waitGone(p, s.opts.StopTimeout) {
			s.log.Info("PostgreSQL stopped", "pid", p.pid, "mode", st.mode, "status", p.exit)
			s.setState(StateStopped, 0, "")
			return nil
		}
	}
	s.log.Error("PostgreSQL ignored an immediate shutdown; killing it", "pid", p.pid)
	_ = p.proc.Kill()
	if waitGone(p, 5*time.Second) {
		err := fmt.Errorf("PostgreSQL (pid %d) ignored smart, fast and immediate shutdown and was killed", p.pid)
		s.setState(StateStopped, 0, err.Error())
		return err
	}
	err := fmt.Errorf("PostgreSQL (pid %d) is still alive after SIGKILL", p.pid)
	s.setState(StateFailed, p.pid, err.Error())
	return err
}

func (o *owner) cancelRetry() {
	if o.retry != nil {
		o.retry.Stop()
		o.retry = nil
	}
}

// leave lets go of the postmaster without touching it (Detach).
func (o *owner) leave() {
	if p := o.cur; p != nil {
		p.stopProbe()
		p.stopWatch()
		if p.late != nil {
			p.late.Stop()
		}
	}
	if o.retry != nil {
		o.retry.Stop()
	}
	o.s.closeQueryConn()
	o.settle(errors.New("supervisor abandoned"))
}

func waitGone(p *postmaster, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.gone:
		return true
	case <-t.C:
		return false
	}
}

// backoff spaces crash restarts: min, doubling, capped at max.
type backoff struct {
	min, max time.Duration
	cur      time.Duration
}

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	}
	d := b.cur
	b.cur = min(b.cur*2, b.max)
	return d
}

func (b *backoff) reset() { b.cur = 0 }
