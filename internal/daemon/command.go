package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/tandem-ha/tandem/internal/config"
	"github.com/tandem-ha/tandem/internal/version"
)

// NewCommand is tandemd's command line.
func NewCommand() *cobra.Command {
	var (
		configPath  string
		logLevel    string
		printConfig bool
		checkOnly   bool
		witness     bool
		reload      bool
	)
	cmd := &cobra.Command{
		Use:   "tandemd --config FILE",
		Short: "tandem's HA service: supervises this node's PostgreSQL and serves the node API",
		Long: `tandemd runs on each of the two nodes of a tandem cluster. It starts and
supervises this node's PostgreSQL (as an unprivileged OS user, initialising
an empty data directory on first start), restarts it if it crashes, and
serves the node API over HTTPS for the console and the peer node.

Settings come from defaults, then the YAML file given with --config, then
TANDEMD_* environment variables (TANDEMD_POSTGRES_PORT=5433 sets
postgres.port), then flags. All of them are checked before anything starts;
every problem is listed at once.

Signals: SIGTERM or SIGINT stop PostgreSQL (smart, then fast, then
immediate shutdown) and exit; a second one exits at once. SIGHUP re-reads
log.level from the config file, and the admin token (state_dir/admin-token,
created anew if removed) and the metrics token (metrics.token_file).
SIGUSR2 reloads: tandemd checks the executable now on disk against the
configuration (--check), lets the operation in flight finish, and
re-executes itself in place (same PID) while PostgreSQL keeps running with
its clients and the cluster IP stays; everything in the configuration takes
effect. --reload sends it and waits until the new process answers (exit 0)
or the reload was refused (exit 1); it is the unit's ExecReload.

--witness runs the witness instead, on a third machine, for clusters in
automatic failover mode: one member of the cluster's etcd quorum, a node
API of its own (GET /health, /v1/node, /v1/witness; the console gives it
the quorum at assembly), no PostgreSQL. Its configuration uses node.name,
node.ip, api.listen, state_dir, quorum.* and log.* of the same file format;
nothing else is read. See docs/quorum.md.`,
		Version:       version.Version,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(configPath, os.Environ())
			if err != nil {
				return err
			}
			if logLevel != "" {
				cfg.Log.Level = logLevel
			}
			validate := cfg.Validate
			if witness {
				validate = cfg.ValidateWitness
			}
			if err := validate(); err != nil {
				return err
			}
			if printConfig {
				fmt.Fprint(cmd.OutOrStdout(), cfg.YAML())
				return nil
			}
			if reload {
				if witness {
					return errors.New("--reload is for a node; the witness holds no PostgreSQL nor cluster IP: restart it")
				}
				// This is the binary now on disk: what the running tandemd
				// would become must accept this configuration and host.
				if err := cfg.CheckHost(); err != nil {
					return err
				}
				return Reload(cmd.Context(), cfg.StateDir, func(format string, a ...any) { fmt.Fprintf(cmd.OutOrStdout(), format, a...) })
			}
			if checkOnly {
				// What a start would trip over later, or worse not at
				// all: a node IP on no interface, a missing state dir.
				if err := cfg.CheckHost(); err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), "configuration ok")
				return nil
			}
			level := new(slog.LevelVar)
			_ = level.UnmarshalText([]byte(cfg.Log.Level))
			log := newLogger(cmd.ErrOrStderr(), cfg.Log.Format, level)
			if witness {
				ctx, stop := signalContext(log, func() { reloadLevel(log, configPath, level, true) }, nil)
				defer stop()
				return RunWitness(ctx, cfg, log)
			}
			d := New(cfg, configPath, log)
			ctx, stop := signalContext(log, func() {
				reloadLevel(log, configPath, level, false)
				if err := d.ReloadTokens(); err != nil {
					log.Error("SIGHUP: tokens not reloaded; the ones in force stay", "err", err)
				} else {
					log.Info("SIGHUP: reloaded the admin token and the metrics token")
				}
			}, d.RequestReload)
			err = d.Run(ctx)
			stop()
			if err == nil && d.Handover() != nil {
				err = d.Reexec()
				return fmt.Errorf("could not re-execute %s for the reload (PostgreSQL keeps running; the next start adopts it): %w", os.Args[0], err)
			}
			return err
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", "", "YAML configuration file (see docs/config.md)")
	cmd.Flags().StringVar(&logLevel, "log-level", "", "override log.level: debug, info, warn or error")
	cmd.Flags().BoolVar(&printConfig, "print-config", false, "print the merged, validated configuration and exit")
	cmd.Flags().BoolVar(&checkOnly, "check", false, "validate the configuration, and that node.ip is this machine's and state_dir exists and is private, and exit")
	cmd.Flags().BoolVar(&reload, "reload", false, "replace the running tandemd of this configuration with this binary, keeping PostgreSQL and the cluster IP (what systemctl reload runs), and wait until it is back")
	cmd.Flags().BoolVar(&witness, "witness", false, "run the quorum witness (a third machine, automatic failover mode) instead of a node")
	return cmd
}

func newLogger(w io.Writer, format string, level *slog.LevelVar) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// signalContext ends the returned context at the first SIGTERM or SIGINT
// and exits the process at the second, for an operator who will not wait
// for PostgreSQL's shutdown.
func signalContext(log *slog.Logger, onHUP, onReload func()) (context.Context, func()) {
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

func reloadLevel(log *slog.Logger, path string, level *slog.LevelVar, witness bool) {
	cfg, err := config.Load(path, os.Environ())
	if err == nil {
		if witness {
			err = cfg.ValidateWitness()
		} else {
			err = cfg.Validate()
		}
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

// Main runs tandemd and returns the process exit status.
func Main() int {
	cmd := NewCommand()
	if err := cmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "tandemd:", err)
		var p *config.Problems
		if errors.As(err, &p) {
			return 2
		}
		return 1
	}
	return 0
}
