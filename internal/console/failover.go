package console

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/tandem-ha/tandem/internal/api"
)

// failoverTimeout bounds the failover request; the checks before it are
// bounded per path (failoverchecks.go).
const failoverTimeout = time.Minute

// PathCheck is one way the console tried to reach the primary.
type PathCheck struct {
	Path      string `json:"path"`
	Address   string `json:"address"`
	Reachable bool   `json:"reachable"`
	Detail    string `json:"detail,omitempty"`
	// MS is when the path answered, or when the console stopped waiting,
	// in milliseconds from the start of the checks.
	MS float64 `json:"ms"`
}

// FailoverOutput is `tandem failover -o json`.
type FailoverOutput struct {
	Cluster   string             `json:"cluster"`
	Paths     []PathCheck        `json:"paths"`
	Contact   *api.PeerContact   `json:"contact,omitempty"`
	Forced    bool               `json:"forced"`
	Result    api.FailoverResult `json:"result"`
	Confirmed time.Time          `json:"confirmed_at"`
}

// NewFailoverCommand promotes the secondary because the primary is gone.
func NewFailoverCommand(g *globals) *cobra.Command {
	var (
		yes, force bool
		cluster    string
	)
	cmd := &cobra.Command{
		Use:   "failover",
		Short: "Make the secondary primary because the primary is gone (refused while it runs)",
		Long: `Make the secondary the primary because the primary is gone.

First the console tries every path it knows to the primary: its node API by
its node address and on the cluster IP, and its PostgreSQL port by its node
IP and on the cluster IP. While any of them answers, the failover is
refused, saying which: a primary that still runs must not get a twin. Use
switchover for planned changes.

Then it asks the secondary when it last heard from the primary and whether
the cluster was synchronized at that moment (if it was not, commits the
secondary never received are lost), shows that, and asks for confirmation.
The secondary checks once more from its side, probes the cluster IP, and
promotes: it bumps the term, takes the cluster IP and starts the services.
The cluster is degraded until the old primary comes back, which rejoins as
standby by itself (rewind, or a fresh copy).

--force skips the reachability checks, the console's and the secondary's,
for when you know better (a primary that answers but must be abandoned):
use it only if you are sure the old primary cannot accept writes any more.
The cluster IP probe still runs.

Once sent, the failover belongs to the secondary: if this console is killed
or times out, it still runs to its end, and 'tandem status' shows how it
ended.

Exit status: 0 done; 2 bad flags or not confirmed off a terminal; 3 the
secondary could not be reached; 4 certificate or token refused; 5 refused:
the primary still answers, or the cluster's state forbids it; 6 the console
stopped waiting, the failover carries on on the node; 1 otherwise.`,
		Example: `  tandem failover
  tandem failover --yes -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			op, err := g.startOperation(cmd, "failover", yes, cluster, failoverTimeout)
			if err != nil {
				return err
			}
			defer op.cancel()
			tr, name, cc, toks, ctx := op.tr, op.name, op.cc, op.toks, op.ctx
			errw := cmd.ErrOrStderr()
			out := FailoverOutput{Cluster: name, Forced: force}

			sv, err := surveyFailover(ctx, tr, toks, cc, force)
			if err != nil {
				return err
			}
			secondary, primary := sv.secondary, sv.primary
			out.Paths = sv.paths
			var reached []string
			for _, pc := range out.Paths {
				if pc.Reachable {
					reached = append(reached, fmt.Sprintf("%s (%s)", pc.Path, pc.Address))
				}
			}
			if len(reached) > 0 {
				if !force {
					return exitf(ExitConflict, "the primary %s still answers by %v: failover refused; a running primary must not get a twin. Use `tandem switchover` for a planned change, or stop it first. Nothing was sent", nameOr(primary), reached)
				}
				fmt.Fprintf(errw, "\n!!! --force: the primary %s STILL ANSWERS by %v.\n!!! If it can still accept writes, you are about to create TWO PRIMARIES and lose data.\n", nameOr(primary), reached)
			}
			out.Contact = secondary.view.PeerContact
			fmt.Fprintf(errw, "\nFailover in cluster %s (term %d → %d):\n", name, secondary.view.Node.Term, secondary.view.Node.Term+1)
			for _, pc := range out.Paths {
				if pc.Path == heartbeatPath {
					continue // the contact, below
				}
				state := fmt.Sprintf("silent (%.0f ms)", pc.MS)
				if pc.Reachable {
					state = "ANSWERS: " + pc.Detail
				}
				fmt.Fprintf(errw, "  primary %s via %s (%s): %s\n", nameOr(primary), pc.Path, pc.Address, state)
			}
			if c := out.Contact; c != nil {
				if c.SilentSeconds < 0 {
					fmt.Fprintf(errw, "  %s has not heard from the primary since it started.\n", nameOr(secondary))
				} else {
					fmt.Fprintf(errw, "  %s last heard from the primary %s ago (%s)%s.\n", nameOr(secondary), time.Duration(c.SilentSeconds*float64(time.Second)).Round(100*time.Millisecond), c.LastHeard, askAgain(c))
				}
				if c.Synchronized {
					fmt.Fprintf(errw, "  At that moment the cluster was synchronized: no acknowledged commit is lost.\n")
				} else {
					fmt.Fprintf(errw, "  At that moment the cluster was NOT synchronized: commits the secondary had not received are LOST.\n")
				}
			}
			if r := secondary.view.Replication; r != nil && r.LastMessage != "" {
				fmt.Fprintf(errw, "  Its WAL receiver last heard from the primary at %s (received up to %s).\n", r.LastMessage, dash(r.ReceivedLSN))
			}
			fmt.Fprintf(errw, "  %s will promote, take the cluster IP and start the services; the cluster stays degraded until %s rejoins.\n\n", nameOr(secondary), nameOr(primary))
			if err := confirmOrRefuse(tr, yes, fmt.Sprintf("Make %s the primary?", nameOr(secondary))); err != nil {
				return err
			}
			out.Confirmed = time.Now().UTC()
			if err := secondary.c.Post(ctx, "/v1/cluster/failover", api.FailoverRequest{Force: force}, &out.Result); err != nil {
				return lostOperation(ctx, "failover", nameOr(secondary), err)
			}
			// The cache learns the new primary from the answer: looking at
			// the nodes again would cost a full probe timeout on the old
			// one, just found silent.
			promoted := *secondary
			promoted.view.Node.Role, promoted.view.Node.Term, promoted.view.Record = rolePrimary, out.Result.Term, nil
			_ = remember(tr.cache, name, []*probe{&promoted}, time.Now())
			if g.output == "json" {
				return printJSON(cmd.OutOrStdout(), out)
			}
			printFailover(cmd.OutOrStdout(), out)
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&yes, "yes", false, "confirm without asking (scripts)")
	f.BoolVar(&force, "force", false, "skip the checks that the primary is unreachable (DANGEROUS: only when it surely cannot accept writes)")
	f.StringVar(&cluster, "cluster", "", "which cached cluster, when the console knows several")
	return cmd
}

func printFailover(w io.Writer, o FailoverOutput) {
	r := o.Result
	fmt.Fprintf(w, "Failover done in %s: %s is primary at term %d. The cluster is degraded until the old primary rejoins.\n", r.Took, r.Primary, r.Term)
	printSteps(w, r.Steps)
}
