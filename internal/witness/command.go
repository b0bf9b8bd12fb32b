package witness

import (
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/tandem-ha/tandem/internal/config"
	"github.com/tandem-ha/tandem/internal/service"
	"github.com/tandem-ha/tandem/internal/version"
)

// serve runs the witness in the foreground with its signals: SIGTERM or
// SIGINT stop it (a second one exits at once), SIGHUP re-reads log.level.
// The reload signal of a node is logged and ignored: the witness holds no
// PostgreSQL and no cluster IP, so a restart costs the cluster nothing but
// a member's absence for a moment. Both tandem-witness and
// `tandemd --witness` run this.
func serve(cfg config.Config, configPath string, level *slog.LevelVar, log *slog.Logger) error {
	ctx, stop := service.SignalContext(log, func() {
		service.ReloadLevel(log, configPath, level, (*config.Config).ValidateWitness)
	}, nil)
	defer stop()
	return Run(ctx, cfg, log)
}

// NewCommand is the command line of tandem-witness, the witness's own
// program: it links etcd and the node API but not PostgreSQL's driver,
// netlink or the console, so it maps less memory than tandemd --witness
// (which runs the same code).
func NewCommand() *cobra.Command {
	var (
		configPath  string
		logLevel    string
		printConfig bool
		checkOnly   bool
	)
	cmd := &cobra.Command{
		Use:   "tandem-witness --config FILE",
		Short: "tandem's quorum witness: the third etcd member of clusters in automatic failover mode",
		Long: `tandem-witness runs on a third, small machine for a tandem cluster in
automatic failover mode: one member of the cluster's etcd quorum, and a node
API of its own (GET /health, /v1/node, /v1/witness; the console gives it the
quorum at assembly). It runs no PostgreSQL and holds no cluster IP.

Its configuration uses node.name, node.ip, api.listen, state_dir, quorum.*
and log.* of tandemd's file format (see docs/config.md); nothing else is
read. Settings come from defaults, then the YAML file given with --config,
then TANDEMD_* environment variables, then flags; every problem is listed
at once.

Signals: SIGTERM or SIGINT stop the member and exit; a second one exits at
once. SIGHUP re-reads log.level. There is no live reload: restart it (the
quorum keeps working with the two nodes meanwhile).

` + "`tandemd --witness`" + ` runs the same witness from tandemd's binary. See
docs/quorum.md.`,
		Version:       version.Version,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return Execute(cmd, configPath, logLevel, printConfig, checkOnly)
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", "", "YAML configuration file (see docs/config.md)")
	cmd.Flags().StringVar(&logLevel, "log-level", "", "override log.level: debug, info, warn or error")
	cmd.Flags().BoolVar(&printConfig, "print-config", false, "print the merged, validated configuration and exit")
	cmd.Flags().BoolVar(&checkOnly, "check", false, "validate the configuration, and that node.ip is this machine's and state_dir exists and is private, and exit")
	return cmd
}

// Execute is what tandem-witness (and `tandemd --witness`) do with their
// flags: load and check the configuration (logLevel overrides log.level),
// then print it, check the host, or run the witness.
func Execute(cmd *cobra.Command, configPath, logLevel string, printConfig, checkOnly bool) error {
	cfg, err := service.Load(configPath, logLevel, (*config.Config).ValidateWitness)
	if err != nil {
		return err
	}
	if printConfig {
		fmt.Fprint(cmd.OutOrStdout(), cfg.YAML())
		return nil
	}
	if checkOnly {
		return service.CheckHost(&cfg, cmd.OutOrStdout())
	}
	level := new(slog.LevelVar)
	_ = level.UnmarshalText([]byte(cfg.Log.Level))
	return serve(cfg, configPath, level, service.NewLogger(cmd.ErrOrStderr(), cfg.Log.Format, level))
}

// Main runs tandem-witness and returns the process exit status: 2 for a
// configuration problem, 1 for any other error.
func Main() int {
	if err := NewCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "tandem-witness:", err)
		var p *config.Problems
		if errors.As(err, &p) {
			return 2
		}
		return 1
	}
	return 0
}
