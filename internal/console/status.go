package console

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/tandem-ha/tandem/internal/api"
)

// NodeStatus is one node as the console saw it.
type NodeStatus struct {
	Address   string `json:"address"`
	Reachable bool   `json:"reachable"`
	Error     string `json:"error,omitempty"`
	api.NodeInfo
}

// StatusOutput is `tandem status -o json`.
type StatusOutput struct {
	Nodes []NodeStatus `json:"nodes"`
}

// NewStatusCommand shows a node's state.
func NewStatusCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the state of a node: PostgreSQL, recovery, LSN, versions",
		Long: `Show the state of the node at --endpoint: whether its PostgreSQL runs, whether
it is in recovery (a standby), its current WAL position and versions.

Exit status: 0 when the node answered, 3 when it could not be reached,
4 when its certificate or the token was refused.`,
		Example: `  TANDEM_TOKEN=$(cat /var/lib/tandem/state/admin-token) tandem status --endpoint 10.0.0.11
  tandem status --endpoint db1.example.net -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := g.validateOutput(); err != nil {
				return err
			}
			token, err := g.token()
			if err != nil {
				return err
			}
			if token == "" {
				return exitf(ExitUsage, "no admin token: set TANDEM_TOKEN or pass --token-file (the token is in the node's state dir, file admin-token)")
			}
			tr, err := g.trust(cmd)
			if err != nil {
				return err
			}
			ctx, cancel := g.context(cmd.Context())
			defer cancel()
			addr, err := NormalizeEndpoint(g.endpoint)
			if err != nil {
				return exitf(ExitUsage, "%v", err)
			}
			ns := NodeStatus{Address: addr}
			c, err := Dial(ctx, addr, token, tr)
			if err == nil {
				err = c.Get(ctx, "/v1/node", &ns.NodeInfo)
			}
			if err != nil {
				if ExitCode(err) != ExitUnreachable {
					return err
				}
				ns.Error = err.Error()
			} else {
				ns.Reachable = true
			}
			out := StatusOutput{Nodes: []NodeStatus{ns}}
			if g.output == "json" {
				err = printJSON(cmd.OutOrStdout(), out)
			} else {
				printStatusTable(cmd.OutOrStdout(), out)
			}
			if err == nil && !ns.Reachable {
				return &ExitError{Code: ExitUnreachable, Err: fmt.Errorf("%s", ns.Error)}
			}
			return err
		},
	}
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func printStatusTable(w io.Writer, s StatusOutput) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tADDRESS\tREACHABLE\tPOSTGRES\tRECOVERY\tLSN\tPG VERSION\tTANDEMD")
	for _, n := range s.Nodes {
		if !n.Reachable {
			fmt.Fprintf(tw, "%s\t%s\tno\t-\t-\t-\t-\t-\n", dash(n.Name), n.Address)
			continue
		}
		rec := "no"
		if n.Postgres.InRecovery {
			rec = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\tyes\t%s\t%s\t%s\t%s\t%s\n", n.Name, n.Address, n.Postgres.State, rec, dash(n.Postgres.LSN), dash(n.Postgres.Version), n.TandemdVersion)
	}
	tw.Flush()
	for _, n := range s.Nodes {
		if n.Postgres.Error != "" {
			fmt.Fprintf(w, "\n%s: PostgreSQL: %s\n", n.Name, n.Postgres.Error)
		}
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
