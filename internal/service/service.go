// Package service holds what tandemd's two programs share as long-running
// services (a node's tandemd and the witness): the state dir's checks and
// lock, the logger, signal handling and systemd's notifications. It links
// neither PostgreSQL nor netlink, so the witness program stays small.
package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/tandem-ha/tandem/internal/config"
)

// QuorumDir is the etcd member's data dir inside the state dir (on a node
// and on the witness).
const QuorumDir = "quorum"

// ReloadSignal asks a node's tandemd to re-execute itself in place (what
// `tandemd --reload` and `systemctl reload tandemd` send).
const ReloadSignal = syscall.SIGUSR2

// CheckPrivate refuses a state dir others can read: it holds the admin
// token and the node's private key.
func CheckPrivate(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("while checking state_dir: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("state_dir %s has mode %o; it holds the admin token and node key: chmod 700 it", dir, fi.Mode().Perm())
	}
	return nil
}

// LockStateDir takes an exclusive lock so two processes never drive the
// same state dir.
func LockStateDir(dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, "tandemd.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("while opening the state dir lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("another tandemd is already running with state_dir %s: stop it first", dir)
		}
		return nil, fmt.Errorf("while locking the state dir: %w", err)
	}
	return func() { f.Close() }, nil
}

// APIPort is the port of api.listen (the default if it names none).
func APIPort(listen string) int {
	_, p, err := net.SplitHostPort(listen)
	if err != nil {
		return config.DefaultAPIPort
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		return config.DefaultAPIPort
	}
	return n
}

// NewLogger is the service's logger: text or JSON (log.format) at a level
// SIGHUP can change.
func NewLogger(w io.Writer, format string, level *slog.LevelVar) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// SignalContext ends the returned context at the first SIGTERM or SIGINT
// and exits the process at the second, for an operator who will not wait
// for PostgreSQL's shutdown. SIGHUP runs onHUP; ReloadSignal runs onReload,
// or is logged and ignored when onReload is nil (the witness).
func SignalContext(log *slog.Logger, onHUP, onReload func()) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 4)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, ReloadSignal)
	go func() {
		stopping := false
		for sig := range ch {
			switch {
			case sig == syscall.SIGHUP:
				onHUP()
			case sig == ReloadSignal && onReload == nil:
				log.Warn("reload signal ignored: the witness reloads by a restart", "signal", sig.String())
			case sig == ReloadSignal && !stopping:
				log.Info("reload signal received", "signal", sig.String())
				onReload()
			case sig == ReloadSignal:
				log.Warn("reload signal ignored: tandemd is stopping", "signal", sig.String())
			case !stopping:
				stopping = true
				log.Info("signal received, shutting down", "signal", sig.String())
				cancel()
			default:
				log.Warn("second signal, exiting now; PostgreSQL may still be running and will be adopted at next start", "signal", sig.String())
				os.Exit(1)
			}
		}
	}()
	return ctx, func() { signal.Stop(ch); cancel() }
}

// ReloadLevel re-reads log.level from the configuration file at path
// (checked with validate first) on SIGHUP.
func ReloadLevel(log *slog.Logger, path string, level *slog.LevelVar, validate func(*config.Config) error) {
	cfg, err := config.Load(path, os.Environ())
	if err == nil {
		err = validate(&cfg)
	}
	if err != nil {
		log.Error("SIGHUP: configuration not reloaded", "err", err)
		return
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(cfg.Log.Level)); err != nil {
		log.Error("SIGHUP: bad log.level", "err", err)
		return
	}
	level.Set(l)
	log.Info("SIGHUP: reloaded log.level; other settings take effect at restart", "level", cfg.Log.Level)
}

// Load reads the configuration a service starts with (defaults, the file
// at path, TANDEMD_* variables), puts logLevel over log.level when given
// (the --log-level flag), and checks it with validate: every problem at
// once.
func Load(path, logLevel string, validate func(*config.Config) error) (config.Config, error) {
	cfg, err := config.Load(path, os.Environ())
	if err != nil {
		return cfg, err
	}
	if logLevel != "" {
		cfg.Log.Level = logLevel
	}
	return cfg, validate(&cfg)
}

// CheckHost is --check: what a start would trip over later, or worse not
// at all (node.ip on no interface of this machine, a missing or readable
// state dir); "configuration ok" on out when there is nothing.
func CheckHost(cfg *config.Config, out io.Writer) error {
	if err := cfg.CheckHost(); err != nil {
		return err
	}
	fmt.Fprintln(out, "configuration ok")
	return nil
}
