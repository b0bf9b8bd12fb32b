package postgres

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tandem-ha/tandem/internal/fsutil"
)

// The server's role: which one it runs in, which one to start in.
//
// A standby is a data directory with standby.signal, started with
// primary_conninfo among the settings; a primary has no standby.signal.
// PostgreSQL removes the file itself when it is promoted.

const standbySignal = "standby.signal"

const (
	promoteTimeout = 30 * time.Second
	// promotePoll: pg_promote(wait => true) looks for the end of recovery
	// only every 100 ms; asking without waiting and polling this often
	// takes most of that off every switchover and failover.
	promotePoll = 2 * time.Millisecond
)

// StartStandby makes PostgreSQL run as a standby with settings (which
// replace the current ones, primary_conninfo and primary_slot_name among
// them) and returns once it accepts connections. Halted: standby.signal is
// written and it starts. Running as a standby: the settings are reloaded,
// nothing restarts. Running as a primary: it is shut down (fast) and
// restarted in recovery, the hard way to stop it accepting writes; whether
// its data can follow the new primary is the caller's concern (Rewind).
// An empty data directory is refused: a standby needs a Clone first.
//
// When ctx ends first StartStandby returns; the start goes on.
func (s *Supervisor) StartStandby(ctx context.Context, settings map[string]string) error {
	return s.ask(ctx, request{kind: reqStartStandby, settings: settings})
}

// StartPrimary makes PostgreSQL run read-write with settings (which
// replace the current ones) and returns once it accepts connections.
// Halted: standby.signal is removed (a standby's data then ends recovery
// at the end of its WAL, on a new timeline) and it starts; mayInit allows
// initdb of an empty data directory. Running as a primary: the settings
// are reloaded. Running as a standby: refused with ErrInRecovery, since
// ending recovery is a promotion, which only Promote does.
//
// When ctx ends first StartPrimary returns; the start goes on.
func (s *Supervisor) StartPrimary(ctx context.Context, settings map[string]string, mayInit bool) error {
	return s.ask(ctx, request{kind: reqStartPrimary, settings: settings, mayInit: mayInit})
}

// Promote ends recovery on a running standby and returns once PostgreSQL
// accepts writes: pg_promote without waiting, then pg_is_in_recovery
// polled every 2 ms. It fails with ErrNotInRecovery on a primary, and when
// the promotion has not finished within 30 s. A cancelled ctx stops the
// waiting only: a promotion PostgreSQL has begun cannot be taken back.
func (s *Supervisor) Promote(ctx context.Context) error {
	return s.ask(ctx, request{kind: reqPromote})
}

// ShutdownForSwitchover stops a running primary so that a standby can take
// over with nothing lost: CHECKPOINT (so the shutdown checkpoint is
// short), fast shutdown, and the control file must then say "shut down".
// It returns the shutdown checkpoint's location ("Latest checkpoint
// location", such as "0/3000028"): a standby that has replayed past it
// holds every write. PostgreSQL stays halted, on success and on failure,
// until a Start* or Resume; a standby is refused (ErrInRecovery) before
// anything changes.
func (s *Supervisor) ShutdownForSwitchover(ctx context.Context) (checkpointLSN string, err error) {
	return s.askValue(ctx, request{kind: reqShutdownForSwitchover})
}

type role int

const (
	rolePrimary role = iota
	roleStandby
)

func (r role) String() string {
	if r == roleStandby {
		return "standby"
	}
	return "primary"
}

// start brings PostgreSQL up in want with r's settings, or reloads it if
// it already runs so. The reply waits for it to accept connections.
func (o *owner) start(r request, want role) {
	s := o.s
	fail := func(err error) { r.reply <- response{err: err} }
	if want == roleStandby {
		if kind, err := inspectDataDir(s.opts.DataDir); err != nil {
			fail(err)
			return
		} else if kind != dirCluster {
			fail(fmt.Errorf("%w: %s holds no cluster to start as a standby; clone one first", ErrNoData, s.opts.DataDir))
			return
		}
	}
	s.SetSettings(r.settings)
	if o.cur == nil && s.PostmasterRunning() {
		// Left running by an earlier tandemd: adopt it, then judge its
		// role as for our own. Explicit, so that if it was on its way out
		// we start our own rather than count a crash.
		o.cancelRetry()
		o.explicit = true
		if err := o.bringUp(false); err != nil {
			o.settle(err)
			fail(err)
			return
		}
		o.halted = false
	}
	if o.cur != nil {
		have, err := o.runningRole(r.ctx)
		if err != nil {
			fail(err)
			return
		}
		switch {
		case have == want:
			if err := o.reload(); err != nil {
				fail(err)
				return
			}
			s.log.Info("PostgreSQL already runs as "+want.String()+"; settings reloaded", "pid", o.cur.pid)
			if o.cur.isReady {
				r.reply <- response{}
			} else {
				o.waitReady(r.reply)
			}
			return
		case want == rolePrimary:
			fail(fmt.Errorf("%w: PostgreSQL (pid %d) is a standby; promote it rather than restart it as a primary", ErrInRecovery, o.cur.pid))
			return
		default:
			s.log.Warn("PostgreSQL runs as a primary; restarting it as a standby", "pid", o.cur.pid)
			if err := o.halt(true); err != nil {
				fail(fmt.Errorf("while stopping the primary to restart it as a standby: %w", err))
				return
			}
		}
	}
	if err := o.setStandbySignal(want == roleStandby); err != nil {
		fail(err)
		return
	}
	o.resume(request{kind: reqResume, mayInit: r.mayInit && want == rolePrimary, reply: r.reply})
}

// runningRole tells how the current postmaster runs: asked once it accepts
// connections, from standby.signal while it is still starting.
func (o *owner) runningRole(ctx context.Context) (role, error) {
	if !o.cur.isReady {
		if _, err := os.Stat(filepath.Join(o.s.opts.DataDir, standbySignal)); err == nil {
			return roleStandby, nil
		}
		return rolePrimary, nil
	}
	c, err := o.connect(ctx)
	if err != nil {
		return 0, err
	}
	defer c.Close(context.Background())
	var inRecovery bool
	if err := c.QueryRow(ctx, `SELECT pg_is_in_recovery()`).Scan(&inRecovery); err != nil {
		return 0, fmt.Errorf("while asking PostgreSQL whether it is in recovery: %w", err)
	}
	if inRecovery {
		return roleStandby, nil
	}
	return rolePrimary, nil
}

// setStandbySignal writes or removes standby.signal, durably: a crash
// must not turn a standby into a primary.
func (o *owner) setStandbySignal(on bool) error {
	path := filepath.Join(o.s.opts.DataDir, standbySignal)
	if on {
		if err := o.s.writeOwned(path, nil, 0o600); err != nil {
			return fmt.Errorf("while writing %s: %w", path, err)
		}
		return nil
	}
	err := os.Remove(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("while removing %s: %w", path, err)
	}
	return fsutil.SyncDir(o.s.opts.DataDir)
}

// connect opens a superuser connection to the current postmaster, once it
// accepts connections.
func (o *owner) connect(ctx context.Context) (*pgx.Conn, error) {
	if o.cur == nil {
		return nil, ErrNotRunning
	}
	if !o.cur.isReady {
		return nil, fmt.Errorf("%w: PostgreSQL (pid %d) does not accept connections yet", ErrNotRunning, o.cur.pid)
	}
	cfg, err := connConfig(o.cur.target)
	if err != nil {
		return nil, err
	}
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("while connecting to PostgreSQL over %s: %w", o.cur.target.socketDir, err)
	}
	return c, nil
}

func (o *owner) promote(ctx context.Context) error {
	s := o.s
	c, err := o.connect(ctx)
	if err != nil {
		return fmt.Errorf("while promoting: %w", err)
	}
	defer c.Close(context.Background())
	var inRecovery bool
	if err := c.QueryRow(ctx, `SELECT pg_is_in_recovery()`).Scan(&inRecovery); err != nil {
		return fmt.Errorf("while promoting: %w", err)
	}
	if !inRecovery {
		return fmt.Errorf("%w: PostgreSQL is already a primary; nothing to promote", ErrNotInRecovery)
	}
	began := time.Now()
	s.log.Info("promoting PostgreSQL", "op", "promote", "pid", o.cur.pid)
	var ok bool
	if err := c.QueryRow(ctx, `SELECT pg_promote(false)`).Scan(&ok); err != nil {
		return fmt.Errorf("while promoting: %w", err)
	}
	if !ok {
		return errors.New("PostgreSQL refused to promote (pg_promote returned false)")
	}
	deadline := began.Add(promoteTimeout)
	for {
		if err := c.QueryRow(ctx, `SELECT pg_is_in_recovery()`).Scan(&inRecovery); err != nil {
			return fmt.Errorf("while waiting for the promotion: %w", err)
		}
		if !inRecovery {
			s.log.Info("PostgreSQL promoted", "op", "promote", "took", time.Since(began))
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the promotion did not finish within %s", promoteTimeout)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("while waiting for the promotion (PostgreSQL goes on with it): %w", ctx.Err())
		case <-time.After(promotePoll):
		}
	}
}

func (o *owner) shutdownForSwitchover(ctx context.Context) (string, error) {
	s := o.s
	if o.cur == nil {
		return "", fmt.Errorf("%w: nothing to shut down for a switchover", ErrNotRunning)
	}
	// Refuse a standby while nothing has changed yet. Without a
	// connection the shutdown goes on: the control file has the last word.
	if c, err := o.connect(ctx); err != nil {
		s.log.Warn("cannot connect before the switchover shutdown; shutting down without a checkpoint first", "err", err.Error())
	} else {
		var inRecovery bool
		err := c.QueryRow(ctx, `SELECT pg_is_in_recovery()`).Scan(&inRecovery)
		if err == nil && inRecovery {
			c.Close(context.Background())
			return "", fmt.Errorf("%w: a switchover shuts down the primary, and this PostgreSQL is a standby", ErrInRecovery)
		}
		if err == nil {
			_, err = c.Exec(ctx, "CHECKPOINT")
		}
		c.Close(context.Background())
		if ctx.Err() != nil {
			return "", fmt.Errorf("before the switchover shutdown: %w", ctx.Err())
		}
		if err != nil {
			s.log.Warn("CHECKPOINT before the switchover shutdown failed; the shutdown checkpoint will take longer", "err", err.Error())
		}
	}
	if err := o.halt(true); err != nil {
		return "", fmt.Errorf("while shutting PostgreSQL down for the switchover: %w", err)
	}
	cd, err := s.controlData(ctx)
	if err != nil {
		return "", err
	}
	if st := cd["Database cluster state"]; st != "shut down" {
		return "", fmt.Errorf("PostgreSQL did not shut down cleanly for the switchover: the control file says %q", st)
	}
	lsn := cd["Latest checkpoint location"]
	if lsn == "" {
		return "", errors.New("pg_controldata names no latest checkpoint location")
	}
	s.log.Info("shut down for the switchover", "op", "switchover", "lsn", lsn)
	return lsn, nil
}
