package postgres

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

const (
	statusTimeout  = 2 * time.Second // bounds one Status query, so Status stays cheap
	connectTimeout = 3 * time.Second
	probeEvery     = 100 * time.Millisecond
)

// connConfig is a superuser connection over t's unix socket. Local
// connections are trusted (see renderHBA), so no password is needed.
func connConfig(t target) (*pgx.ConnConfig, error) {
	dsn := fmt.Sprintf("host=%s port=%d user=%s dbname=postgres sslmode=disable target_session_attrs=any application_name=tandemd",
		quoteConnValue(t.socketDir), t.port, superuser)
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("while building the connection settings: %w", err)
	}
	cfg.ConnectTimeout = connectTimeout
	// Only the socket: PG* variables in tandemd's environment must add no
	// hosts (target_session_attrs above keeps them from refusing a standby).
	cfg.Fallbacks = nil
	return cfg, nil
}

// quoteConnValue quotes a keyword/value connection string value.
func quoteConnValue(v string) string {
	v = strings.ReplaceAll(v, `\`, `\\`)
	return "'" + strings.ReplaceAll(v, "'", `\'`) + "'"
}

// Connect opens a superuser connection (database postgres) over the unix
// socket of the running postmaster.
func (s *Supervisor) Connect(ctx context.Context) (*pgx.Conn, error) {
	st, t, _ := s.snapshot()
	if st.State != StateRunning && st.State != StateStarting {
		return nil, fmt.Errorf("%w (state %s)", ErrNotRunning, st.State)
	}
	cfg, err := connConfig(t)
	if err != nil {
		return nil, err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("while connecting to PostgreSQL over %s: %w", t.socketDir, err)
	}
	return conn, nil
}

// probe tries SELECT 1 until it works, then closes p.ready.
func (s *Supervisor) probe(ctx context.Context, p *postmaster) {
	cfg, err := connConfig(p.target)
	if err != nil {
		s.log.Error("cannot probe PostgreSQL", "err", err.Error())
		return
	}
	for {
		if !s.pidFileSaysStarting(p.pid) {
			if err := ping(ctx, cfg); err == nil {
				close(p.ready)
				return
			} else if ctx.Err() == nil {
				s.log.Debug("PostgreSQL not ready yet", "pid", p.pid, "err", err.Error())
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-p.gone:
			return
		case <-time.After(probeEvery):
		}
	}
}

// pidFileSaysStarting spares PostgreSQL's log a "the database system is
// starting up" line per probe: the postmaster notes in postmaster.pid when
// it accepts connections. Anything unexpected in the file means "try".
func (s *Supervisor) pidFileSaysStarting(pid int) bool {
	b, err := os.ReadFile(filepath.Join(s.opts.DataDir, "postmaster.pid"))
	if err != nil {
		return false
	}
	pf, err := parsePidFile(b)
	if err != nil || pf.PID != pid {
		return false
	}
	return pf.Status != "ready" && pf.Status != "standby"
}

func ping(ctx context.Context, cfg *pgx.ConnConfig) error {
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	_, err = conn.Exec(ctx, "SELECT 1")
	conn.Close(ctx)
	return err
}

// Status reports the supervisor's state and, while a postmaster runs, what
// PostgreSQL says about itself over one reused connection.
func (s *Supervisor) Status(ctx context.Context) Status {
	// Under qmu: stop sets "stopping" before it closes the connection under
	// qmu, so no query opens a new one that would hold up a smart shutdown.
	s.qmu.Lock()
	defer s.qmu.Unlock()
	st, t, gen := s.snapshot()
	// PID 0 while "starting": still preparing (initdb), nothing to ask yet.
	if (st.State != StateRunning && st.State != StateStarting) || st.PID == 0 {
		return st
	}
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	if err := s.query(ctx, &st, t, gen); err != nil {
		st.Error = fmt.Sprintf("while querying PostgreSQL's status: %v", err)
	}
	return st
}

const statusSQL = `SELECT pg_is_in_recovery(),
	coalesce((CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END)::text, ''),
	current_setting('server_version'),
	current_setting('server_version_num')::int`

// query fills st from PostgreSQL. A reused connection that fails (the
// postmaster was restarted since) is replaced once. Callers hold qmu.
func (s *Supervisor) query(ctx context.Context, st *Status, t target, gen int) error {
	for attempt := 0; ; attempt++ {
		fresh := false
		if s.qconn == nil || s.qgen != gen || s.qconn.IsClosed() {
			s.closeQueryConnLocked()
			cfg, err := connConfig(t)
			if err != nil {
				return err
			}
			conn, err := pgx.ConnectConfig(ctx, cfg)
			if err != nil {
				return err
			}
			s.qconn, s.qgen, fresh = conn, gen, true
		}
		var version string
		err := s.qconn.QueryRow(ctx, statusSQL).Scan(&st.InRecovery, &st.LSN, &version, &st.VersionNum)
		if err == nil {
			// Debian and others append their package version: "15.18 (Debian 15.18-0+deb12u1)".
			st.Version, _, _ = strings.Cut(version, " ")
			return nil
		}
		s.closeQueryConnLocked()
		if fresh || attempt > 0 || ctx.Err() != nil {
			return err
		}
	}
}

func (s *Supervisor) closeQueryConn() {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	s.closeQueryConnLocked()
}

func (s *Supervisor) closeQueryConnLocked() {
	if s.qconn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = s.qconn.Close(ctx)
		s.qconn = nil
	}
}
