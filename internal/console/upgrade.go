package console

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/tandem-ha/tandem/internal/api"
	"github.com/tandem-ha/tandem/internal/config"
	"github.com/tandem-ha/tandem/internal/version"
)

// versionRE is what --version may be (the nodes check it again): the
// characters of a package version, never anything a shell would read.
var versionRE = config.VersionRE

// NewUpgradeCommand is the rolling update: the secondary first, then the
// primary, each by its own upgrade.command and a live reload.
func NewUpgradeCommand(g *globals) *cobra.Command {
	var (
		yes     bool
		cluster string
		ver     string
		each    time.Duration
		pg      bool
	)
	cmd := &cobra.Command{
		Use:   "upgrade --version V | --postgres",
		Short: "Rolling update of tandem on both nodes: the secondary first, then the primary, each by live reload",
		Long: `Install tandem at version V on both nodes of the cluster, one after the
other, with no write gap: the secondary first, then the primary.

On each node tandemd runs its upgrade.command for V (by default apt-get
installs the tandem package at that version from the node's apt sources;
see docs/config.md), checks that the executable now on disk is V, and
reloads into it in place: PostgreSQL keeps running with its clients and
the cluster IP stays. The console waits for the secondary to answer at V
and stream again before it touches the primary; a failure on the
secondary stops the update with the primary untouched.

V is checked here and on each node: letters, digits and .+~:- only. It
reaches the command as an argument ({version} in upgrade.command) and in
TANDEM_UPGRADE_VERSION, never through a shell. Nodes one protocol apart
(N and N+1) work together throughout; a jump of more than one protocol is
warned about after the secondary, and operations between the nodes are
refused until the primary is upgraded too.

--postgres instead finishes a PostgreSQL minor update (15.x to 15.y) with
one switchover's write gap in all: install the new minor release's
packages on both nodes first (a running PostgreSQL keeps the old binaries
until it restarts); the console then restarts the secondary's PostgreSQL
and waits for it to stream, switches over, and restarts the former
primary's, now the secondary. The roles end swapped. A major version
(15 to 16) is not a minor update: see docs/operations.md.

Exit status: 0 both nodes at V; 2 bad flags or not confirmed off a
terminal; 3 a node could not be reached; 4 certificate or token refused;
5 refused (a node's state, or its upgrade.command); 1 the upgrade failed on
a node (its output is shown); 6 the console stopped waiting.`,
		Example: `  tandem upgrade --version 0.2.0
  tandem upgrade --version 0.2.0 --yes --each-timeout 15m`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if pg {
				if ver != "" {
					return exitf(ExitUsage, "--postgres and --version are two updates: run one, then the other. Nothing was sent")
				}
				return g.postgresMinorUpdate(cmd, yes, cluster, each)
			}
			if !versionRE.MatchString(ver) {
				if ver == "" {
					return exitf(ExitUsage, "say what to update: --version V (tandem) or --postgres (a PostgreSQL minor release already installed). Nothing was sent")
				}
				return exitf(ExitUsage, "--version %q must be a package version: letters, digits and .+~:-, at most 64 (such as 0.2.0). Nothing was sent", ver)
			}
			op, err := g.startOperation(cmd, "upgrade", yes, cluster, 2*each+time.Minute)
			if err != nil {
				return err
			}
			defer op.cancel()
			tr, name, ctx := op.tr, op.name, op.ctx
			primary, secondary, err := op.bothNodes("a rolling update goes from one to the other")
			if err != nil {
				return err
			}
			errw := cmd.ErrOrStderr()
			fmt.Fprintf(errw, "\nRolling update of cluster %s to tandem %s:\n", name, ver)
			fmt.Fprintf(errw, "  1. secondary %s (now %s), then it must stream again\n", secondary.view.Node.Name, secondary.view.Node.TandemdVersion)
			fmt.Fprintf(errw, "  2. primary   %s (now %s), by live reload: no write gap\n\n", primary.view.Node.Name, primary.view.Node.TandemdVersion)
			if err := confirmOrRefuse(tr, yes, fmt.Sprintf("Upgrade cluster %s to %s?", name, ver)); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			for _, step := range []struct {
				p    *probe
				role string
			}{{secondary, roleSecondary}, {primary, rolePrimary}} {
				start := time.Now()
				now, err := upgradeOne(ctx, step.p.c, step.p.view.Node.Name, step.role, ver, each)
				if err != nil {
					return err
				}
				fmt.Fprintf(out, "%s (%s) is at tandem %s after %s.\n", step.p.view.Node.Name, step.role, ver, time.Since(start).Round(100*time.Millisecond))
				if p, q := now.Protocol, primary.view.Node.Protocol; step.p == secondary && !version.WorkTogether(p, q) {
					// More than one protocol apart: operations between the
					// two are refused until the primary is at ver too,
					// which is the next step (a reload needs no peer).
					fmt.Fprintf(errw, "warning: %s now speaks protocol %d and %s protocol %d, more than one apart: switchover and other operations are refused until %s is upgraded too, which follows now.\n",
						now.Name, p, primary.view.Node.Name, q, primary.view.Node.Name)
				}
			}
			fmt.Fprintf(out, "Cluster %s runs tandem %s on both nodes.\n", name, ver)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&ver, "version", "", "the version to install, as the nodes' upgrade.command takes it")
	f.BoolVar(&pg, "postgres", false, "restart PostgreSQL on both nodes into the minor release installed, with one switchover")
	f.DurationVar(&each, "each-timeout", 12*time.Minute, "how long to wait for each node (its upgrade.command, the reload, streaming again)")
	f.BoolVar(&yes, "yes", false, "confirm without asking (scripts)")
	f.StringVar(&cluster, "cluster", "", "which cached cluster, when the console knows several")
	return cmd
}

// upgradeOne upgrades one node and waits until it answers at ver in role
// (a secondary streaming again), or its upgrade failed, or limit passed;
// it returns what the node says of itself then.
func upgradeOne(ctx context.Context, c *Client, name, role, ver string, limit time.Duration) (api.NodeInfo, error) {
	var info api.UpgradeInfo
	if err := c.Post(ctx, "/v1/node/upgrade", api.UpgradeRequest{Version: ver}, &info); err != nil {
		return api.NodeInfo{}, fmt.Errorf("%s refused the upgrade: %w", name, err)
	}
	deadline := time.Now().Add(limit)
	last := ""
	for {
		var v api.ClusterView
		err := c.Get(ctx, "/v1/cluster", &v)
		switch {
		case err != nil:
			last = err.Error() // reloading: the API is away for a moment
		case v.Node.Upgrade != nil && v.Node.Upgrade.State == "failed":
			return api.NodeInfo{}, &ExitError{Code: ExitFailure, Err: fmt.Errorf("the upgrade of %s to %s failed: %s\n%s", name, ver, v.Node.Upgrade.Error, v.Node.Upgrade.Output)}
		case v.Node.TandemdVersion != ver:
			last = fmt.Sprintf("%s still runs %s", name, v.Node.TandemdVersion)
			if v.Node.Upgrade != nil {
				last += " (upgrade " + v.Node.Upgrade.State + ")"
			}
		case v.Node.Role != role:
			return api.NodeInfo{}, &ExitError{Code: ExitConflict, Err: fmt.Errorf("%s is at %s but is now %s, not %s: look at `tandem status` before the next step", name, ver, v.Node.Role, role)}
		case role == roleSecondary && (v.Replication == nil || v.Replication.ReceiverStatus != "streaming"):
			last = fmt.Sprintf("%s is at %s and waits to stream again", name, ver)
		default:
			return v.Node, nil
		}
		if time.Now().After(deadline) {
			return api.NodeInfo{}, &ExitError{Code: ExitDetached, Err: fmt.Errorf("stopped waiting for %s after %s: %s. The upgrade may still finish: see `tandem status`", name, limit, last)}
		}
		select {
		case <-ctx.Done():
			return api.NodeInfo{}, &ExitError{Code: ExitDetached, Err: fmt.Errorf("stopped waiting for %s: %s", name, last)}
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// postgresMinorUpdate is `tandem upgrade --postgres`: the secondary's
// PostgreSQL restarted, a switchover, the other's restarted.
func (g *globals) postgresMinorUpdate(cmd *cobra.Command, yes bool, cluster string, each time.Duration) error {
	op, err := g.startOperation(cmd, "upgrade --postgres", yes, cluster, 3*each+time.Minute)
	if err != nil {
		return err
	}
	defer op.cancel()
	tr, name, cc, toks, ctx := op.tr, op.name, op.cc, op.toks, op.ctx
	primary, secondary, err := op.bothNodes("the update restarts one, switches over, restarts the other")
	if err != nil {
		return err
	}
	if r := primary.view.Replication; r == nil || r.State != "streaming" {
		return exitf(ExitConflict, "the secondary %s does not stream from %s: a switchover would lose writes or wait; nothing was sent", nameOr(secondary), nameOr(primary))
	}
	errw := cmd.ErrOrStderr()
	pv, sv := primary.view.Node.Postgres.Version, secondary.view.Node.Postgres.Version
	fmt.Fprintf(errw, "\nPostgreSQL minor update of cluster %s (the new packages must be installed on both nodes):\n", name)
	fmt.Fprintf(errw, "  1. %s (secondary, PostgreSQL %s) restarts its PostgreSQL and streams again\n", nameOr(secondary), sv)
	fmt.Fprintf(errw, "  2. switchover: %s becomes primary (the one write gap)\n", nameOr(secondary))
	fmt.Fprintf(errw, "  3. %s (then secondary, PostgreSQL %s) restarts its PostgreSQL\n\n", nameOr(primary), pv)
	if err := confirmOrRefuse(tr, yes, fmt.Sprintf("Restart PostgreSQL on both nodes of %s, with one switchover?", name)); err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	restart := func(p *probe) error {
		rctx, cancel := context.WithTimeout(ctx, each)
		defer cancel()
		var res api.PostgresRestartResult
		if err := p.c.Post(rctx, "/v1/node/postgres-restart", nil, &res); err != nil {
			return lostOperation(rctx, "PostgreSQL restart", nameOr(p), err)
		}
		fmt.Fprintf(out, "%s: PostgreSQL %s → %s, restarted and streaming in %s.\n", res.Node, res.VersionBefore, res.VersionAfter, res.Took)
		return nil
	}
	if err := restart(secondary); err != nil {
		return err
	}
	var sw api.SwitchoverResult
	if err := primary.c.Post(ctx, "/v1/cluster/switchover", api.SwitchoverRequest{}, &sw); err != nil {
		return lostOperation(ctx, "switchover", nameOr(primary), err)
	}
	fmt.Fprintf(out, "Switchover done in %s: %s is primary, %s its standby (term %d).\n", sw.Took, sw.To, sw.From, sw.Term)
	// The former primary follows as a standby at the switchover's end; it
	// must stream before its own restart, or the restart would find no
	// standby to restart.
	deadline := time.Now().Add(each)
	for {
		var v api.ClusterView
		if err := primary.c.Get(ctx, "/v1/cluster", &v); err == nil && v.Node.Role == roleSecondary && v.Replication != nil && v.Replication.ReceiverStatus == "streaming" {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return &ExitError{Code: ExitDetached, Err: fmt.Errorf("%s does not stream from %s after the switchover; its PostgreSQL was not restarted: see `tandem status`, then run `tandem upgrade --postgres` again", nameOr(primary), nameOr(secondary))}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := restart(primary); err != nil {
		return err
	}
	_ = remember(tr.cache, name, probeNodes(ctx, tr, toks, cc.Nodes), time.Now())
	fmt.Fprintf(out, "Cluster %s: PostgreSQL restarted on both nodes; %s is primary.\n", name, sw.To)
	return nil
}

// bothNodes probes the cluster's nodes for an update, which needs both:
// the primary and a reachable secondary; why says what the update does
// with them, for the refusal.
func (op *operation) bothNodes(why string) (primary, secondary *probe, err error) {
	probes := probeNodes(op.ctx, op.tr, op.toks, op.cc.Nodes)
	primary, secondary = primaryAndOther(probes)
	if primary == nil || secondary == nil || !secondary.reachable() {
		return nil, nil, &ExitError{Code: ExitUnreachable, Err: fmt.Errorf("both nodes must answer, the primary and the secondary (%s): %s. Nothing was sent", describe(probes), why)}
	}
	return primary, secondary, nil
}
