package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/tandem-ha/tandem/internal/config"
	"github.com/tandem-ha/tandem/internal/service"
	"github.com/tandem-ha/tandem/internal/version"
	"github.com/tandem-ha/tandem/internal/witness"
)

// NewCommand is tandemd's command line.
func NewCommand() *cobra.Command {
	var (
		configPath  string
		logLevel    string
		printConfig bool
		checkOnly   bool
		asWitness   bool
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
the quorum at assembly), no PostgreSQL; tandem-witness, the program the
package's tandem-witness.service runs, is the same witness in a smaller
binary (less resident memory). Its configuration uses node.name,
node.ip, api.listen, state_dir, quorum.* and log.* of the same file format;
nothing else is read. See docs/quorum.md.`,
		Version:       version.Version,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if asWitness {
				if reload {
					return errors.New("--reload is for a node; the witness holds no PostgreSQL nor cluster IP: restart it")
				}
				return witness.Execute(cmd, configPath, logLevel, printConfig, checkOnly)
			}
			cfg, err := service.Load(configPath, logLevel, (*config.Config).Validate)
			if err != nil {
				return err
			}
			if printConfig {
				fmt.Fprint(cmd.OutOrStdout(), cfg.YAML())
				return nil
			}
			if reload {
				// This is the binary now on disk: what the running tandemd
				// would become must accept this configuration and host.
				if err := cfg.CheckHost(); err != nil {
					return err
				}
				return Reload(cmd.Context(), cfg.StateDir, func(format string, a ...any) { fmt.Fprintf(cmd.OutOrStdout(), format, a...) })
			}
			if checkOnly {
				return service.CheckHost(&cfg, cmd.OutOrStdout())
			}
			level := new(slog.LevelVar)
			_ = level.UnmarshalText([]byte(cfg.Log.Level))
			log := service.NewLogger(cmd.ErrOrStderr(), cfg.Log.Format, level)
			d := New(cfg, configPath, log)
			ctx, stop := service.SignalContext(log, func() {
				service.ReloadLevel(log, configPath, level, (*config.Config).Validate)
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
	cmd.Flags().BoolVar(&asWitness, "witness", false, "run the quorum witness (a third machine, automatic failover mode) instead of a node")
	return cmd
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
