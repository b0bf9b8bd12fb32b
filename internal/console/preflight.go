package console

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/tandem-ha/tandem/internal/api"
	"github.com/tandem-ha/tandem/internal/dnscheck"
)

// preflightTimeout is preflight's default timeout: DNS lookups and the
// cluster IP probe take a few seconds each when something is missing.
const preflightTimeout = time.Minute

// PreflightNode is one node's checks in `tandem preflight -o json`.
type PreflightNode struct {
	Role    string `json:"role"` // the role it would have: primary or secondary
	Address string `json:"address"`
	Error   string `json:"error,omitempty"` // the node could not run them
	api.PreflightResult
}

// PreflightOutput is `tandem preflight -o json`.
type PreflightOutput struct {
	Nodes    []PreflightNode `json:"nodes"`
	Problems int             `json:"problems"`
}

// NewPreflightCommand has both nodes check DNS and the network.
func NewPreflightCommand(g *globals) *cobra.Command {
	var pf pairFlags
	cmd := &cobra.Command{
		Use:   "preflight",
		Short: "Have both nodes check DNS and the network for a cluster, changing nothing",
		Long: `Have each node check, from where it stands, what a cluster of the two needs:
forward and reverse DNS for the cluster name and both nodes, one subnet and
one address family, the cluster IP not in use, the peer's API and PostgreSQL
ports reachable. Each check is ok, PROBLEM (with what to fix) or skipped
(with why). Nothing changes on either node; 'tandem assemble' runs the same
checks first.

Tokens as for 'tandem assemble'. The default timeout is 1m.

Exit status: 0 no problem; 1 at least one problem; 2 bad flags; 3 a node
unreachable; 4 certificate or token refused.`,
		Example: `  tandem preflight --primary 10.0.0.11 --secondary 10.0.0.12 \
      --cluster-ip 10.0.0.10/24 --dns-name db.example.net \
      --primary-token-file a.token --secondary-token-file b.token`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := g.validateOutput(); err != nil {
				return err
			}
			r, probs := pf.resolve()
			if len(probs) > 0 {
				return exitf(ExitUsage, "nothing was sent:\n  %s", strings.Join(probs, "\n  "))
			}
			tr, err := g.trust(cmd)
			if err != nil {
				return err
			}
			ctx, cancel := g.contextFor(cmd, preflightTimeout)
			defer cancel()
			cctx, ccancel := context.WithTimeout(ctx, checkTimeout)
			pc, err := dialPair(cctx, tr, r)
			ccancel()
			if err != nil {
				return err
			}

			out := PreflightOutput{Nodes: []PreflightNode{
				{Role: rolePrimary, Address: pc.p.Addr()},
				{Role: roleSecondary, Address: pc.s.Addr()},
			}}
			ask := []struct {
				c    *Client
				self api.NodeInfo
				peer api.NodeInfo
			}{{pc.p, pc.pInfo, pc.sInfo}, {pc.s, pc.sInfo, pc.pInfo}}
			var wg sync.WaitGroup
			for i, a := range ask {
				wg.Go(func() {
					n := &out.Nodes[i]
					req := api.PreflightRequest{Peer: member(a.peer), ClusterIP: r.clusterIPText(), DNSName: r.dnsName, DNSServer: pf.dnsServer, Endpoint: r.endpoint}
					if err := a.c.Post(ctx, "/v1/preflight", req, &n.PreflightResult); err != nil {
						n.Error = err.Error()
					}
					if n.Node == "" {
						n.Node = a.self.Name
					}
					// Count here too: the node's count is a convenience.
					n.Problems = dnscheck.Problems(n.Checks)
				})
			}
			wg.Wait()
			failed := 0
			for _, n := range out.Nodes {
				out.Problems += n.Problems
				if n.Error != "" {
					failed++
				}
			}
			if g.output == "json" {
				err = printJSON(cmd.OutOrStdout(), out)
			} else {
				printPreflight(cmd.OutOrStdout(), out)
			}
			switch {
			case err != nil:
				return err
			case failed > 0:
				return exitf(ExitFailure, "%d of the nodes could not run the checks (see above)", failed)
			case out.Problems > 0:
				return exitf(ExitFailure, "%d problem(s): fix them and run the preflight again", out.Problems)
			}
			return nil
		},
	}
	pf.register(cmd)
	return cmd
}

func printPreflight(w io.Writer, out PreflightOutput) {
	for i, n := range out.Nodes {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "As %s (%s, the future %s) sees it:", n.Node, n.Address, n.Role)
		if n.Error != "" {
			fmt.Fprintf(w, " the checks could not run: %s\n", n.Error)
			continue
		}
		fmt.Fprintf(w, " %s\n", plural(n.Problems, "problem"))
		for _, c := range n.Checks {
			switch c.Status {
			case dnscheck.StatusProblem:
				fmt.Fprintf(w, "  PROBLEM  %s\n", c.Title)
				if c.Detail != "" {
					fmt.Fprintf(w, "           found: %s\n", c.Detail)
				}
				if c.Fix != "" {
					fmt.Fprintf(w, "           fix:   %s\n", c.Fix)
				}
			case dnscheck.StatusOK:
				fmt.Fprintf(w, "  ok       %s%s\n", c.Title, suffix(c.Detail))
			default:
				fmt.Fprintf(w, "  %-8s %s%s\n", c.Status, c.Title, suffix(c.Detail))
			}
		}
	}
}

func suffix(detail string) string {
	if detail == "" {
		return ""
	}
	return " (" + detail + ")"
}

func plural(n int, word string) string {
	switch n {
	case 0:
		return "no " + word + "s"
	case 1:
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
