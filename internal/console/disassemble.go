package console

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tandem-ha/tandem/internal/api"
)

// disassembleTimeout is disassemble's default timeout: the secondary stops
// PostgreSQL and removes its replica before the primary answers.
const disassembleTimeout = 5 * time.Minute

// DisassembleOutput is `tandem disassemble -o json`.
type DisassembleOutput struct {
	Cluster string `json:"cluster,omitempty"`
	// SentTo is the node that was asked: the primary, or with --force and
	// the primary gone, the secondary (Fallback true).
	SentTo   string                `json:"sent_to"`
	Address  string                `json:"address"`
	Fallback bool                  `json:"fallback"`
	Result   api.DisassembleResult `json:"result"`
	Left     []string              `json:"left_to_clean,omitempty"` // nodes not told, to clean with --endpoint
	// Witness: what became of the quorum witness (automatic mode).
	Witness string `json:"witness,omitempty"`
}

// NewDisassembleCommand takes a cluster apart.
func NewDisassembleCommand(g *globals) *cobra.Command {
	var (
		force, yes bool
		cluster    string
	)
	cmd := &cobra.Command{
		Use:   "disassemble",
		Short: "Take the cluster apart: the primary carries on alone, the secondary's replica is removed",
		Long: `Take the cluster apart. The primary drops the replication slot, role and
pg_hba entries, keeps its database and the cluster IP, and carries on as a
standalone server. The secondary stops PostgreSQL, removes its replica and
returns to "no cluster", ready to be assembled again.

The request goes to the primary, which tells the secondary. With --force the
primary goes ahead even when the secondary does not answer; and when the
primary itself does not answer, --force sends the request to the secondary,
which drops its own side (the primary must then be cleaned when it is back,
with --endpoint). With --endpoint the request goes to that node only.

The console forgets the cluster afterwards but keeps the pinned certificates
and the tokens. It asks for confirmation on a terminal (--yes in scripts).
The default timeout is 5m.

Exit status: 0 done; 2 bad flags, or not confirmed off a terminal; 3 the
node to ask could not be reached; 4 certificate or token refused; 5 the
nodes' state forbids it; 1 anything else.`,
		Example: `  tandem disassemble
  tandem disassemble --force --yes
  tandem disassemble --force --endpoint 10.0.0.12`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := g.validateOutput(); err != nil {
				return err
			}
			if !yes && !canAsk(cmd.InOrStdin()) {
				return exitf(ExitUsage, "disassemble asks for confirmation, but this console is not on a terminal: pass --yes to confirm in scripts. Nothing was sent")
			}
			tr, err := g.trust(cmd)
			if err != nil {
				return err
			}
			ctx, cancel := g.contextFor(cmd, disassembleTimeout)
			defer cancel()
			errw := cmd.ErrOrStderr()

			var (
				target  *probe
				out     DisassembleOutput
				name    string
				plan    []string
				cleanup []string
			)
			if g.endpoint != "" {
				addr, err := NormalizeEndpoint(g.endpoint)
				if err != nil {
					return exitf(ExitUsage, "%v", err)
				}
				token, err := g.endpointToken(addr)
				if err != nil {
					return err
				}
				c, err := Dial(ctx, addr, token, tr)
				if err != nil {
					return err
				}
				target = &probe{node: CachedNode{Address: addr}, c: c}
				if err := c.Get(ctx, "/v1/node", &target.view.Node); err != nil {
					return err
				}
				n := target.view.Node
				if n.Role == roleNone {
					return exitf(ExitConflict, "%s (%s) belongs to no cluster: nothing to disassemble", n.Name, addr)
				}
				name = n.Cluster
				plan = append(plan, fmt.Sprintf("%s (%s) is %s of cluster %q and drops its side of it.", n.Name, addr, n.Role, n.Cluster))
			} else {
				var cc CachedCluster
				name, cc, err = pickCluster(tr.cache, cluster)
				if err != nil {
					return err
				}
				toks, err := LoadTokens()
				if err != nil {
					return err
				}
				probes := probeNodes(ctx, tr, toks, cc.Nodes)
				target = primaryOf(probes)
				var others []*probe
				for _, p := range probes {
					if p != target {
						others = append(others, p)
					}
				}
				switch {
				case target != nil:
					plan = append(plan, fmt.Sprintf("%s, the primary: drops the replication slot, role and pg_hba entries; keeps its database and the cluster IP, standalone.", nameOr(target)))
					for _, o := range others {
						if o.reachable() {
							plan = append(plan, fmt.Sprintf("%s, the %s: stops PostgreSQL and removes its replica; it belongs to no cluster afterwards.", nameOr(o), o.view.Node.Role))
						} else if force {
							plan = append(plan, fmt.Sprintf("%s does not answer (%v) and will NOT be told: when it is back, run `tandem disassemble --force --endpoint %s`.", nameOr(o), o.err, o.node.Address))
							cleanup = append(cleanup, o.node.Address)
						} else {
							return &ExitError{Code: ExitUnreachable, Err: fmt.Errorf("%s does not answer (%v): the primary cannot tell it. Pass --force to disassemble the primary's side anyway (%s is then cleaned later with --endpoint). Nothing was sent", nameOr(o), o.err, nameOr(o))}
						}
					}
				case !force:
					return &ExitError{Code: ExitUnreachable, Err: fmt.Errorf("no node of cluster %s answers as primary: %s. With --force the console asks the secondary to drop its own side. Nothing was sent", name, describe(probes))}
				default:
					for _, p := range probes {
						if p.reachable() && p.view.Node.Role != roleNone && (target == nil || p.view.Node.Term > target.view.Node.Term) {
							target = p
						}
					}
					if target == nil {
						return noneAnswered(name, probes)
					}
					out.Fallback = true
					plan = append(plan, fmt.Sprintf("%s, the %s: stops PostgreSQL and removes its replica; it belongs to no cluster afterwards.", nameOr(target), target.view.Node.Role))
					for _, o := range others {
						if o != target {
							plan = append(plan, fmt.Sprintf("%s does not answer as primary (%s) and will NOT be told: it may still hold the cluster IP and accept writes. When it is back, run `tandem disassemble --force --endpoint %s`.", nameOr(o), describe([]*probe{o}), o.node.Address))
							cleanup = append(cleanup, o.node.Address)
						}
					}
				}
			}

			fmt.Fprintf(errw, "\nDisassemble cluster %s:\n", dash(name))
			for _, l := range plan {
				fmt.Fprintf(errw, "  %s\n", l)
			}
			fmt.Fprintln(errw)
			if err := confirmOrRefuse(tr, yes, fmt.Sprintf("Disassemble cluster %s?", dash(name))); err != nil {
				return err
			}

			var res api.DisassembleResult
			if err := target.c.Post(ctx, "/v1/cluster/disassemble", api.DisassembleRequest{Force: force}, &res); err != nil {
				var ae *APIError
				if errors.As(err, &ae) {
					return fmt.Errorf("disassembly refused or failed: %w", err)
				}
				return &ExitError{Code: ExitCode(err), Err: fmt.Errorf("lost the answer of %s while it was disassembling (%v): see `tandem status`", target.c.Addr(), err)}
			}
			out.Cluster, out.SentTo, out.Address, out.Result, out.Left = name, nameOr(target), target.c.Addr(), res, cleanup

			// With --endpoint on a secondary, the primary still holds the
			// cluster: keep it in the cache.
			forget := g.endpoint == "" || target.view.Node.Role == rolePrimary
			if c, ok := tr.cache.Clusters[name]; ok && forget && c.Witness != "" {
				out.Witness = releaseWitness(ctx, tr, c.Witness)
			}
			if _, ok := tr.cache.Clusters[name]; ok && forget {
				delete(tr.cache.Clusters, name)
				if err := tr.cache.Save(); err != nil {
					return fmt.Errorf("disassembled, but the console could not forget the cluster: %w", err)
				}
			}
			if g.output == "json" {
				return printJSON(cmd.OutOrStdout(), out)
			}
			printDisassembled(cmd.OutOrStdout(), out)
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&force, "force", false, "go ahead without the secondary; with the primary gone, ask the secondary to drop its side")
	f.BoolVar(&yes, "yes", false, "confirm without asking (scripts)")
	f.StringVar(&cluster, "cluster", "", "which cached cluster, when the console knows several")
	return cmd
}

// describe says in a few words what became of nodes that were asked.
func describe(ps []*probe) string {
	var parts []string
	for _, p := range ps {
		switch {
		case !p.reachable():
			parts = append(parts, fmt.Sprintf("%s did not answer (%v)", nameOr(p), p.err))
		default:
			parts = append(parts, fmt.Sprintf("%s is %s at term %d", nameOr(p), p.view.Node.Role, p.view.Node.Term))
		}
	}
	return strings.Join(parts, "; ")
}

func printDisassembled(w io.Writer, out DisassembleOutput) {
	fmt.Fprintf(w, "Cluster %s disassembled (asked %s at %s).\n", dash(out.Cluster), out.SentTo, out.Address)
	if out.Result.Primary != "" {
		fmt.Fprintf(w, "  primary:   %s\n", out.Result.Primary)
	}
	if out.Result.Secondary != "" {
		fmt.Fprintf(w, "  secondary: %s\n", out.Result.Secondary)
	}
	for _, a := range out.Left {
		fmt.Fprintf(w, "NOT TOLD: %s. When it is back, run `tandem disassemble --force --endpoint %s`.\n", a, a)
	}
	if out.Witness != "" {
		fmt.Fprintf(w, "  witness:   %s\n", out.Witness)
	}
	fmt.Fprintln(w, "The console keeps the pinned certificates and the tokens.")
}

// releaseWitness has the witness of a disassembled cluster leave its
// quorum (its member stops, its data goes), so it can serve another
// cluster; it says what happened.
func releaseWitness(ctx context.Context, tr *trust, addr string) string {
	toks, err := LoadTokens()
	if err != nil {
		return fmt.Sprintf("NOT released (%v): run `curl -X POST …/v1/witness/leave` on %s, or restart it with an empty state dir", err, addr)
	}
	kept := toks.lookup(tr.cache, addr)
	c, err := dialWant(ctx, addr, kept.token, tr, tr.pinned(addr))
	if err == nil {
		err = c.Post(ctx, "/v1/witness/leave", struct{}{}, nil)
	}
	if err != nil {
		return fmt.Sprintf("%s NOT released (%v): before it serves another cluster, POST /v1/witness/leave to it (docs/api.md)", addr, err)
	}
	return addr + " left the quorum (its member stopped, its data removed)"
}
