package console

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/tandem-ha/tandem/internal/api"
)

// switchoverTimeout bounds the whole planned swap.
const switchoverTimeout = 2 * time.Minute

// SwitchoverOutput is `tandem switchover -o json`.
type SwitchoverOutput struct {
	Cluster string               `json:"cluster"`
	Result  api.SwitchoverResult `json:"result"`
}

// NewSwitchoverCommand swaps the roles with nothing lost.
func NewSwitchoverCommand(g *globals) *cobra.Command {
	var (
		yes, allowLoss bool
		cluster        string
	)
	cmd := &cobra.Command{
		Use:   "switchover",
		Short: "Swap the roles in a planned way: the secondary becomes primary, nothing is lost",
		Long: `Swap the roles: the secondary becomes the primary, the primary its standby.

The primary stops its role-bound services, checkpoints and shuts PostgreSQL
down, keeping the cluster IP (so clients are refused at once rather than
left without an answer); the secondary promotes only once it has replayed
that shutdown checkpoint, so no committed transaction is lost. Then the
primary drops the cluster IP and the new primary takes it (announced to the
network) and starts the services; the former primary restarts as its
standby. Writes pause for a fraction of a second.

Refused, with nothing changed, unless both nodes answer and the secondary
streams and has caught up. --allow-data-loss is the only way past "not
caught up": what the secondary has not received is then lost. A failure
before the promotion rolls back: the primary stays primary.

The switchover belongs to the nodes once it is sent: if this console is
killed or times out, it still runs to its end or rolls back, and
'tandem status' shows it in flight and how it ended.

Exit status: 0 done; 2 bad flags or not confirmed off a terminal; 3 a node
could not be reached; 4 certificate or token refused; 5 refused by the
cluster's state (not caught up, operation in progress); 6 the console
stopped waiting, the switchover carries on on the node; 1 anything else.`,
		Example: `  tandem switchover
  tandem switchover --yes -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			op, err := g.startOperation(cmd, "switchover", yes, cluster, switchoverTimeout)
			if err != nil {
				return err
			}
			defer op.cancel()
			tr, name, cc, toks, ctx := op.tr, op.name, op.cc, op.toks, op.ctx
			probes := probeNodes(ctx, tr, toks, cc.Nodes)
			primary, secondary := primaryAndOther(probes)
			if primary == nil {
				return &ExitError{Code: ExitUnreachable, Err: fmt.Errorf("no node of cluster %s answers as primary (%s): a switchover needs both nodes. If the primary is gone, see `tandem failover`. Nothing was sent", name, describe(probes))}
			}
			if secondary == nil || !secondary.reachable() {
				return &ExitError{Code: ExitUnreachable, Err: fmt.Errorf("the secondary does not answer (%s): there is nothing to switch to. Nothing was sent", describe(probes))}
			}
			plan := PlanSwitchover(name, nameOr(primary), nameOr(secondary), primary.view.Node.Term, primary.view.Replication, allowLoss, "pass --allow-data-loss")
			if plan.Refused != "" {
				return exitf(ExitConflict, "%s", plan.Refused)
			}
			errw := cmd.ErrOrStderr()
			fmt.Fprintf(errw, "\n%s\n", plan.Lines[0])
			for _, l := range plan.Lines[1:] {
				fmt.Fprintf(errw, "  %s\n", l)
			}
			if plan.Warning != "" {
				fmt.Fprintf(errw, "  WARNING: %s\n", plan.Warning)
			}
			fmt.Fprintln(errw)
			if err := confirmOrRefuse(tr, yes, plan.Question); err != nil {
				return err
			}
			var res api.SwitchoverResult
			if err := primary.c.Post(ctx, "/v1/cluster/switchover", api.SwitchoverRequest{AllowDataLoss: allowLoss}, &res); err != nil {
				return lostOperation(ctx, "switchover", nameOr(primary), err)
			}
			// Refresh the cache's view of the roles.
			_ = remember(tr.cache, name, probeNodes(ctx, tr, toks, cc.Nodes), time.Now())
			out := SwitchoverOutput{Cluster: name, Result: res}
			if g.output == "json" {
				return printJSON(cmd.OutOrStdout(), out)
			}
			printSwitchover(cmd.OutOrStdout(), out)
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&yes, "yes", false, "confirm without asking (scripts)")
	f.BoolVar(&allowLoss, "allow-data-loss", false, "switch even though the secondary has not caught up; what it has not received is lost")
	f.StringVar(&cluster, "cluster", "", "which cached cluster, when the console knows several")
	return cmd
}

func printSwitchover(w io.Writer, o SwitchoverOutput) {
	r := o.Result
	fmt.Fprintf(w, "Switchover done in %s: %s is primary, %s its standby (term %d).\n", r.Took, r.To, r.From, r.Term)
	printSteps(w, r.Steps)
}

func printSteps(w io.Writer, steps []api.Step) {
	for _, s := range steps {
		fmt.Fprintf(w, "  %-32s %8.1f ms\n", s.Name, s.MS)
	}
}

// lostOperation explains a console that stopped waiting for an operation:
// the node runs operations on its own lifetime, so when the console's
// time ran out the operation carries on (or rolls back) without it.
func lostOperation(ctx context.Context, verb, node string, err error) error {
	if ctx.Err() != nil {
		return &ExitError{Code: ExitDetached, Err: fmt.Errorf("%s: the console stopped waiting (%v), but the %s carries on on %s by itself, to its end or its rollback: `tandem status --watch` follows it and `tandem events` has its result", verb, ctx.Err(), verb, node)}
	}
	return fmt.Errorf("%s: %w", verb, err)
}

// operation is what a cluster-wide command starts from.
type operation struct {
	tr     *trust
	name   string
	cc     CachedCluster
	toks   *Tokens
	ctx    context.Context
	cancel context.CancelFunc
}

// startOperation checks the flags, loads the cache and tokens and picks
// the cluster, for commands that change it after a confirmation.
func (g *globals) startOperation(cmd *cobra.Command, verb string, yes bool, cluster string, timeout time.Duration) (*operation, error) {
	if err := g.validateOutput(); err != nil {
		return nil, err
	}
	if !yes && !canAsk(cmd.InOrStdin()) {
		return nil, exitf(ExitUsage, "%s asks for confirmation, but this console is not on a terminal: pass --yes to confirm in scripts. Nothing was sent", verb)
	}
	tr, err := g.trust(cmd)
	if err != nil {
		return nil, err
	}
	name, cc, err := pickCluster(tr.cache, cluster)
	if err != nil {
		return nil, err
	}
	toks, err := LoadTokens()
	if err != nil {
		return nil, err
	}
	ctx, cancel := g.contextFor(cmd, timeout)
	return &operation{tr: tr, name: name, cc: cc, toks: toks, ctx: ctx, cancel: cancel}, nil
}
