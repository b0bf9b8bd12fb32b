package postgres

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/tandem-ha/tandem/internal/tool"
)

// Rewind makes this data directory a copy of src's history again after it
// diverged (a former primary after a failover), copying only what changed:
//
//  1. stop PostgreSQL (fast) if it runs;
//  2. if the control file does not say it shut down cleanly, run crash
//     recovery in single-user mode (postgres --single), which pg_rewind
//     needs and which opens no port;
//  3. CHECKPOINT on src: a just-promoted primary's control file names its
//     new timeline only after its first checkpoint, and without it
//     pg_rewind sees "same timeline" and does nothing;
//  4. pg_rewind from src, the password through PGPASSWORD;
//  5. remove a postmaster.pid copied from src, and write standby.signal:
//     a rewound data directory may only start as a standby.
//
// PostgreSQL stays halted; StartStandby follows. A cancelled ctx kills the
// tool that runs (single-user postgres, pg_rewind) and Rewind returns. A
// pg_rewind stopped half-way (cancelled or failed) may leave the data
// directory unusable: clone then.
func (s *Supervisor) Rewind(ctx context.Context, src Source) error {
	return s.ask(ctx, request{kind: reqRewind, src: src})
}

// sourceCheckpointTimeout bounds the CHECKPOINT asked of a rewind's source.
const sourceCheckpointTimeout = 30 * time.Second

// Clean shutdown states, as pg_controldata prints them.
const (
	stateShutDown           = "shut down"
	stateShutDownInRecovery = "shut down in recovery"
)

func (o *owner) rewind(ctx context.Context, src Source) error {
	s := o.s
	if err := src.check(); err != nil {
		return err
	}
	if err := o.haltAll(); err != nil {
		return fmt.Errorf("while stopping PostgreSQL before the rewind: %w", err)
	}
	if kind, err := inspectDataDir(s.opts.DataDir); err != nil {
		return err
	} else if kind != dirCluster {
		return fmt.Errorf("%w: %s holds no cluster to rewind; clone instead", ErrNoData, s.opts.DataDir)
	}
	log := s.log.With("op", "rewind", "source", src)
	cd, err := s.controlData(ctx)
	if err != nil {
		return err
	}
	switch st := cd["Database cluster state"]; st {
	case stateShutDown, stateShutDownInRecovery:
	default:
		log.Info("PostgreSQL did not shut down cleanly; running crash recovery in single-user mode first", "state", st)
		if err := o.singleUserRecovery(ctx); err != nil {
			return err
		}
	}
	if err := checkpointSource(ctx, src); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("before the rewind: %w", ctx.Err())
		}
		// pg_rewind may still work: the source may have checkpointed on
		// its own since it was promoted.
		log.Warn("could not make the source CHECKPOINT before the rewind", "err", err.Error())
	}
	cmd := s.Tool("pg_rewind", "--target-pgdata="+s.opts.DataDir, "--source-server="+src.conninfo(), "--progress")
	cmd.Env = append(cmd.Env, "PGPASSWORD="+src.Password)
	if _, err := tool.Run(ctx, log, cmd); err != nil {
		return fmt.Errorf("while rewinding from %s with pg_rewind: %w", src, err)
	}
	// pg_rewind skips postmaster.pid, but a lock file in the data dir that
	// names the source's postmaster would keep this one from starting.
	if err := os.Remove(filepath.Join(s.opts.DataDir, "postmaster.pid")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("while removing the postmaster.pid copied from %s: %w", src, err)
	}
	if err := o.setStandbySignal(true); err != nil {
		return err
	}
	log.Info("rewound; PostgreSQL stays stopped until it starts as a standby")
	return nil
}

// singleUserRecovery runs crash recovery with postgres --single, which
// replays the WAL and shuts down cleanly without listening for clients.
// Single-user mode refuses standby mode, so standby.signal is set aside
// meanwhile and put back after.
func (o *owner) singleUserRecovery(ctx context.Context) (err error) {
	s := o.s
	signal := filepath.Join(s.opts.DataDir, standbySignal)
	if _, serr := os.Stat(signal); serr == nil {
		if err := o.setStandbySignal(false); err != nil {
			return err
		}
		defer func() {
			if werr := o.setStandbySignal(true); werr != nil && err == nil {
				err = werr
			}
		}()
	}
	// Stdin is empty: the single-user backend reads no command and exits
	// after recovery, with a shutdown checkpoint. -F (no fsync) because
	// pg_rewind rewrites these files next and syncs the data dir itself.
	if _, err := tool.Run(ctx, s.log.With("op", "crash-recovery"), s.Tool("postgres", "--single", "-F", "-D", s.opts.DataDir, "postgres")); err != nil {
		return fmt.Errorf("while running crash recovery in single-user mode: %w", err)
	}
	cd, err := s.controlData(ctx)
	if err != nil {
		return err
	}
	if st := cd["Database cluster state"]; st != stateShutDown && st != stateShutDownInRecovery {
		return fmt.Errorf("after crash recovery in single-user mode the control file still says %q", st)
	}
	return nil
}

func checkpointSource(ctx context.Context, src Source) error {
	ctx, cancel := context.WithTimeout(ctx, sourceCheckpointTimeout)
	defer cancel()
	c, err := src.connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(ctx, "CHECKPOINT"); err != nil {
		return fmt.Errorf("while asking %s to CHECKPOINT: %w", src, err)
	}
	return nil
}
