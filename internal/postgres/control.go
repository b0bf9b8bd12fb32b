package postgres

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"syscall"

	"github.com/tandem-ha/tandem/internal/tool"
)

// Halt shuts PostgreSQL down and keeps it down (no crash restart) until
// Resume: for cloning over the data directory, or demoting. fast skips the
// smart stage, which would wait for every client to disconnect.
func (s *Supervisor) Halt(ctx context.Context, fast bool) error {
	return s.ask(ctx, request{kind: reqHalt, fast: fast})
}

// Resume starts PostgreSQL after a Halt and returns once it accepts
// connections, in whatever role the data directory says (StartStandby and
// StartPrimary choose it). mayInit allows initdb of an empty data
// directory (a node returning to "no cluster" after its replica was
// removed).
func (s *Supervisor) Resume(ctx context.Context, mayInit bool) error {
	return s.ask(ctx, request{kind: reqResume, mayInit: mayInit})
}

// Reload rewrites tandem.conf from the current settings and tells the
// postmaster to re-read its configuration.
func (s *Supervisor) Reload(ctx context.Context) error {
	return s.ask(ctx, request{kind: reqReload})
}

// SetSettings replaces the extra settings written into tandem.conf. They
// take effect at the next Reload or start.
func (s *Supervisor) SetSettings(m map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opts.Settings = maps.Clone(m)
}

func (s *Supervisor) currentSettings() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.opts.Settings)
}

func (s *Supervisor) ask(ctx context.Context, r request) error {
	_, err := s.askValue(ctx, r)
	return err
}

// askValue sends r to the owner and waits for its answer. The owner does
// one request at a time, so a long one (a clone) makes the others wait:
// that is what keeps them from interleaving. When ctx ends first askValue
// returns at once; the owner still finishes the request, with ctx
// cancelled (each request says what that means for it).
func (s *Supervisor) askValue(ctx context.Context, r request) (string, error) {
	if !s.started.Load() {
		return "", errors.New("the PostgreSQL supervisor is not running")
	}
	r.ctx = ctx
	r.reply = make(chan response, 1)
	select {
	case s.reqs <- r:
	case <-s.done:
		return "", errors.New("the PostgreSQL supervisor has stopped")
	case <-ctx.Done():
		return "", fmt.Errorf("while waiting for PostgreSQL's supervisor to take the request to %s: %w", r.kind, ctx.Err())
	}
	select {
	case resp := <-r.reply:
		return resp.value, resp.err
	case <-ctx.Done():
		return "", fmt.Errorf("while waiting for PostgreSQL's supervisor to %s: %w", r.kind, ctx.Err())
	}
}

// handle answers one request; it reports whether the owner must end.
func (o *owner) handle(r request) (end bool) {
	answer := func(err error) { r.reply <- response{err: err} }
	switch r.kind {
	case reqStop:
		answer(o.stop())
		return true
	case reqHalt:
		answer(o.halt(r.fast))
	case reqFence:
		answer(o.fence())
	case reqResume:
		if err := o.s.refuseFenced("start PostgreSQL in the role its data dir says"); err != nil {
			answer(err)
			break
		}
		o.resume(r)
	case reqReload:
		answer(o.reload())
	case reqStartStandby:
		// A standby accepts no writes: starting one ends a fence.
		o.s.fenced.Store(false)
		o.start(r, roleStandby)
	case reqStartPrimary:
		if err := o.s.refuseFenced("start or reload PostgreSQL read-write"); err != nil {
			answer(err)
			break
		}
		o.start(r, rolePrimary)
	case reqPromote:
		if err := o.s.refuseFenced("promote"); err != nil {
			answer(err)
			break
		}
		answer(o.promote(r.ctx))
	case reqShutdownForSwitchover:
		lsn, err := o.shutdownForSwitchover(r.ctx)
		r.reply <- response{err: err, value: lsn}
	case reqRewind:
		answer(o.rewind(r.ctx, r.src))
	case reqClone:
		aside, err := o.clone(r.ctx, r.src, r.slot, r.progress)
		r.reply <- response{err: err, value: aside}
	case reqRestoreAside:
		answer(o.restoreAside(r.aside))
	case reqDiscardAside:
		trash, err := o.discardAside(r.aside)
		r.reply <- response{err: err, value: trash}
	case reqMoveDataAside:
		aside, err := o.moveDataAside()
		r.reply <- response{err: err, value: aside}
	case reqRecoverInterruptedClone:
		if !o.halted {
			answer(errors.New("RecoverInterruptedClone runs only before PostgreSQL starts (before Start, or after StartHalted)"))
			break
		}
		restored, err := o.recoverInterruptedClone()
		r.reply <- response{err: err, value: restored}
	default:
		answer(fmt.Errorf("unknown %s", r.kind))
	}
	return false
}

func (o *owner) halt(fast bool) error {
	err := o.shutdown(fast)
	o.halted = true
	return err
}

// fence stops, at once, whatever postmaster runs on the data directory
// (ours was sent an immediate shutdown by Fence already; one an earlier
// tandemd left running is sent one now) and keeps it down.
func (o *owner) fence() error {
	if r, err := o.s.findRunning(); err == nil && r != nil && (o.cur == nil || o.cur.pid != r.pid) {
		if err := syscall.Kill(r.pid, syscall.SIGQUIT); err == nil {
			o.s.log.Warn("FENCE: immediate shutdown sent to a postmaster tandemd did not start", "pid", r.pid)
		}
	}
	return o.haltAll()
}

// haltAll stops the postmaster, ours or one an earlier tandemd left
// running on the data directory, and keeps it down.
func (o *owner) haltAll() error {
	if err := o.halt(true); err != nil {
		return err
	}
	r, err := o.s.findRunning()
	if err != nil || r == nil {
		return err
	}
	o.s.log.Warn("a postmaster tandemd did not start runs on the data directory; stopping it", "pid", r.pid)
	o.cur = o.s.adopt(r)
	return o.halt(true)
}

func (o *owner) resume(r request) {
	if o.cur != nil {
		if o.cur.isReady {
			r.reply <- response{}
		} else {
			o.waitReady(r.reply) // a start under way, asked for or after a crash
		}
		return
	}
	if o.retry != nil {
		// A crash restart waits out its backoff: the crashed postmaster's
		// children may still hold its shared memory, and a start now would
		// fail on it ("pre-existing shared memory block is still in use").
		// This start is that restart: it is answered when it settles.
		o.halted = false
		o.waitReady(r.reply)
		return
	}
	o.halted = false
	o.beginStart(r.reply, r.mayInit)
	if err := o.bringUp(r.mayInit); err != nil {
		o.s.log.Error("could not start PostgreSQL", "err", err.Error())
		o.s.setState(StateStopped, 0, err.Error())
		o.halted = true
		o.settle(err)
	}
}

func (o *owner) reload() error {
	if err := o.s.writeManagedConfig(); err != nil {
		return err
	}
	if p := o.cur; p != nil {
		if err := p.proc.Signal(syscall.SIGHUP); err != nil {
			return fmt.Errorf("while asking PostgreSQL to reload its configuration: %w", err)
		}
	}
	return nil
}

// DataDir is the supervised data directory.
func (s *Supervisor) DataDir() string { return s.opts.DataDir }

// Tool returns a command for one of PostgreSQL's programs in BinDir, run as
// the OS user (pg_basebackup, pg_rewind must not run as root either).
func (s *Supervisor) Tool(name string, args ...string) tool.Cmd {
	return tool.Cmd{Path: filepath.Join(s.opts.BinDir, name), Args: args, User: s.runAs, Dir: "/"}
}

// WriteDataFile writes a file inside the data directory, owned by the OS
// user (standby.signal, pg_hba.conf).
func (s *Supervisor) WriteDataFile(name string, data []byte, perm fs.FileMode) error {
	return s.writeOwned(filepath.Join(s.opts.DataDir, name), data, perm)
}

// ReadDataFile reads a file inside the data directory.
func (s *Supervisor) ReadDataFile(name string) ([]byte, error) {
	return os.ReadFile(filepath.Join(s.opts.DataDir, name))
}

// RemoveDataFile removes a file inside the data directory if it exists.
func (s *Supervisor) RemoveDataFile(name string) error {
	err := os.Remove(filepath.Join(s.opts.DataDir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// MakeEmptyDataDir creates an empty data directory owned by the OS user,
// mode 0700, for a clone to fill.
func (s *Supervisor) MakeEmptyDataDir() error {
	return s.makeDataDir()
}

// StartHalted starts the owner goroutine without starting PostgreSQL: the
// cluster logic first decides in which role it may run (a former primary
// must not open for writes before it has asked its peer), then calls
// Resume.
func (s *Supervisor) StartHalted() error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("the PostgreSQL supervisor was already started")
	}
	go s.run(nil, true)
	return nil
}

// ControlData runs pg_controldata on the data directory.
func (s *Supervisor) ControlData(ctx context.Context) (map[string]string, error) {
	return s.controlData(ctx)
}

// PostmasterRunning reports whether a postmaster (ours or left by an
// earlier tandemd) runs on the data directory.
func (s *Supervisor) PostmasterRunning() bool {
	r, err := s.findRunning()
	return err == nil && r != nil
}
