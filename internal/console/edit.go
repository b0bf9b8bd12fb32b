package console

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tandem-ha/tandem/internal/api"
)

// NewEditCommand changes a running cluster's cluster IP, DNS name or
// replication mode.
func NewEditCommand(g *globals) *cobra.Command {
	var (
		yes     bool
		cluster string
		req     api.EditRequest
	)
	cmd := &cobra.Command{
		Use:   "edit [--cluster-ip IP/PREFIX] [--dns-name NAME] [--replication async|sync|strict]",
		Short: "Change a running cluster's cluster IP, DNS name or replication mode",
		Long: `Change the cluster IP, the cluster DNS name or the replication mode of the
running cluster, on both nodes, with no restart.

A new cluster IP or DNS name first passes the same preflight as an
assembly, on both nodes: the new address must be free and in the nodes'
subnet, and the DNS name must resolve to the cluster IP, forward and
reverse, so update DNS first. Any problem is listed and nothing changes.
Then the secondary takes the new values, the primary takes them and moves
the cluster IP (the old address goes, the new one is announced), and the
record, the events and this console's cache are updated. Clients connected
through the old address lose their connections; those using the DNS name
reconnect to the new one once their resolver has it.

The replication mode takes effect within a second (the monitor sets
synchronous_standby_names and, in automatic mode, the sync record, in the
safe order). Both nodes must answer.

Exit status: 0 done (or nothing to change); 2 bad flags, or not confirmed
off a terminal; 3 a node could not be reached; 4 certificate or token
refused; 5 refused (preflight, or the cluster's state); 1 anything else.`,
		Example: `  tandem edit --replication async
  tandem edit --dns-name pg.example.net --yes
  tandem edit --cluster-ip 10.0.0.20/24 --yes`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if req.ClusterIP == "" && req.DNSName == "" && req.Replication == "" {
				return exitf(ExitUsage, "give what to change: --cluster-ip, --dns-name or --replication. Nothing was sent")
			}
			switch req.Replication {
			case "", "async", "sync", "strict":
			default:
				return exitf(ExitUsage, "--replication %q: use async, sync or strict. Nothing was sent", req.Replication)
			}
			if req.ClusterIP != "" {
				if _, err := netip.ParsePrefix(req.ClusterIP); err != nil {
					return exitf(ExitUsage, "--cluster-ip %q must be an address with its prefix length, such as 10.0.0.20/24. Nothing was sent", req.ClusterIP)
				}
			}
			op, err := g.startOperation(cmd, "edit", yes, cluster, 2*time.Minute)
			if err != nil {
				return err
			}
			defer op.cancel()
			tr, name, cc, toks, ctx := op.tr, op.name, op.cc, op.toks, op.ctx
			probes := probeNodes(ctx, tr, toks, cc.Nodes)
			primary, secondary := primaryAndOther(probes)
			if primary == nil {
				return &ExitError{Code: ExitUnreachable, Err: fmt.Errorf("no node of cluster %s answers as primary (%s): an edit changes both nodes together. Nothing was sent", name, describe(probes))}
			}
			if secondary == nil || !secondary.reachable() {
				return &ExitError{Code: ExitUnreachable, Err: fmt.Errorf("the secondary does not answer (%s): an edit changes both nodes together. Nothing was sent", describe(probes))}
			}
			errw := cmd.ErrOrStderr()
			fmt.Fprintf(errw, "\nEdit cluster %s:\n", name)
			for _, c := range []struct{ what, from, to string }{
				{"cluster IP", cc.ClusterIP, req.ClusterIP},
				{"DNS name", cc.DNSName, req.DNSName},
				{"replication", cc.Replication, req.Replication},
			} {
				if c.to != "" {
					fmt.Fprintf(errw, "  %-12s %s → %s\n", c.what, c.from, c.to)
				}
			}
			if req.ClusterIP != "" {
				fmt.Fprintf(errw, "  Connections through the old cluster IP are cut when it moves.\n")
			}
			fmt.Fprintln(errw)
			if err := confirmOrRefuse(tr, yes, fmt.Sprintf("Change cluster %s?", name)); err != nil {
				return err
			}
			var res api.EditResult
			if err := primary.c.Post(ctx, "/v1/cluster/edit", req, &res); err != nil {
				if ctx.Err() != nil {
					return &ExitError{Code: ExitDetached, Err: fmt.Errorf("stopped waiting for the edit (%v); it may still finish on the nodes: see `tandem status`", err)}
				}
				return fmt.Errorf("the edit was refused or failed: %w", err)
			}
			tr.mu.Lock()
			c := tr.cache.Clusters[name]
			if res.ClusterIP != "" {
				c.ClusterIP, c.DNSName, c.Replication = res.ClusterIP, res.DNSName, res.Replication
			}
			c.UpdatedAt = time.Now().UTC()
			tr.cache.Clusters[name] = c
			err = tr.cache.Save()
			tr.mu.Unlock()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if len(res.Changed) == 0 {
				fmt.Fprintf(out, "Cluster %s already is as asked; nothing changed.\n", name)
				return nil
			}
			fmt.Fprintf(out, "Cluster %s edited: %s.\n", name, strings.Join(res.Changed, "; "))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.ClusterIP, "cluster-ip", "", "the new cluster IP with its prefix length (10.0.0.20/24): free, in the nodes' subnet, the DNS name resolving to it")
	f.StringVar(&req.DNSName, "dns-name", "", "the new cluster DNS name: it must resolve to the cluster IP, forward and reverse")
	f.StringVar(&req.Replication, "replication", "", "the new replication mode: async, sync or strict")
	f.BoolVar(&yes, "yes", false, "confirm without asking (scripts)")
	f.StringVar(&cluster, "cluster", "", "which cached cluster, when the console knows several")
	return cmd
}
