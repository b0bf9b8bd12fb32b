package console

import (
	"fmt"
	"os"
	"os/user"
	"time"

	"github.com/spf13/cobra"

	"github.com/tandem-ha/tandem/internal/api"
)

// maintenanceTimeout bounds the switch: both nodes' state files and one
// peer call (its own timeout is shorter, so a silent peer is reported).
const maintenanceTimeout = 30 * time.Second

// MaintenanceOutput is `tandem maintenance on|off -o json`.
type MaintenanceOutput struct {
	Cluster string                `json:"cluster"`
	Result  api.MaintenanceResult `json:"result"`
}

// NewMaintenanceCommand switches the cluster's maintenance mode.
func NewMaintenanceCommand(g *globals) *cobra.Command {
	var reason, cluster string
	cmd := &cobra.Command{
		Use:   "maintenance on|off",
		Short: "Switch maintenance mode: tandemd keeps reporting but takes no automatic action",
		Long: `Switch the cluster's maintenance mode (Patroni's pause).

While it is on, tandemd keeps reporting but acts on nothing by itself: sync
mode does not degrade (commits keep waiting for an absent secondary), the
secondary does not fail over by
itself (automatic mode), a fenced or stale node does not rejoin, nothing is
re-seeded, and PostgreSQL may be stopped and started by hand: tandemd does
not restart it and adopts the postmaster started by hand.

tandem switchover still works; tandem failover is refused (a primary that
does not answer may be stopped on purpose): switch maintenance off first.
In automatic mode the primary still renews its leader lease and fences
itself if it cannot: see docs/operations.md, "Maintenance mode".

The switch is sent to one node, which passes it to its peer. A peer that
does not answer is named in the output: it learns the switch when the
nodes hear each other again, and acts on what it knew until then.

Exit status: 0 done (also when it already was so); 2 bad arguments;
3 no node could be reached; 4 certificate or token refused; 1 anything else.`,
		Example: `  tandem maintenance on --reason "kernel update on both nodes"
  tandem maintenance off`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var on bool
			switch args[0] {
			case "on":
				on = true
			case "off":
			default:
				return exitf(ExitUsage, "maintenance takes on or off, not %q. Nothing was sent", args[0])
			}
			op, err := g.startOperation(cmd, "maintenance", true, cluster, maintenanceTimeout)
			if err != nil {
				return err
			}
			defer op.cancel()
			probes := probeNodes(op.ctx, op.tr, op.toks, op.cc.Nodes)
			// The primary first (it records the event), else any node that
			// answers: switching off must work with the primary gone.
			to := primaryOf(probes)
			if to == nil {
				for _, p := range probes {
					if p.reachable() {
						to = p
						break
					}
				}
			}
			if to == nil {
				return &ExitError{Code: ExitUnreachable, Err: fmt.Errorf("no node of cluster %s answers (%s). Nothing was changed", op.name, describe(probes))}
			}
			var res api.MaintenanceResult
			if err := to.c.Post(op.ctx, "/v1/cluster/maintenance", api.MaintenanceRequest{On: on, Reason: reason, By: whoAmI()}, &res); err != nil {
				return fmt.Errorf("maintenance %s on %s: %w", args[0], nameOr(to), err)
			}
			out := MaintenanceOutput{Cluster: op.name, Result: res}
			if g.output == "json" {
				return printJSON(cmd.OutOrStdout(), out)
			}
			w := cmd.OutOrStdout()
			m := res.Maintenance
			state := "OFF: tandemd acts by itself again"
			if m.On {
				state = "ON: tandemd reports but takes no automatic action"
			}
			if !res.Changed {
				state = "already " + state
			}
			fmt.Fprintf(w, "Maintenance mode of cluster %s is %s\n", op.name, state)
			fmt.Fprintf(w, "  since %s, by %s", m.At.Local().Format(time.RFC3339), m.By)
			if m.Reason != "" {
				fmt.Fprintf(w, ": %s", m.Reason)
			}
			fmt.Fprintln(w)
			for _, n := range res.Nodes {
				if !n.Applied {
					fmt.Fprintf(cmd.ErrOrStderr(), "WARNING: %s\n", n.Error)
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why (recorded in the events and shown by status)")
	cmd.Flags().StringVar(&cluster, "cluster", "", "cluster name (default: the only one known)")
	return cmd
}

// whoAmI names the operator for the events: the sudo user if any, and the
// host the console runs on.
func whoAmI() string {
	name := os.Getenv("SUDO_USER")
	if name == "" {
		if u, err := user.Current(); err == nil {
			name = u.Username
		}
	}
	host, _ := os.Hostname()
	if host != "" {
		name += "@" + host
	}
	return name
}

// maintenanceLines are status's loud lines about maintenance mode: the
// latest switch any node reports, and a node that disagrees (it missed
// the switch while unreachable).
func maintenanceLines(nodes []NodeStatus) []string {
	var latest *api.MaintenanceInfo
	for _, n := range nodes {
		if n.Reachable && n.Maintenance.Newer(latest) {
			latest = n.Maintenance
		}
	}
	if latest == nil || !latest.On {
		return nil
	}
	line := fmt.Sprintf("*** MAINTENANCE MODE ON since %s by %s", latest.At.Local().Format(time.RFC3339), latest.By)
	if latest.Reason != "" {
		line += ": " + latest.Reason
	}
	out := []string{line + " ***", "    tandemd takes no automatic action: no failover, degrade, rejoin or PostgreSQL restart by itself; `tandem maintenance off` ends it"}
	for _, n := range nodes {
		if n.Reachable && (n.Maintenance == nil || n.Maintenance.Gen != latest.Gen) {
			out = append(out, fmt.Sprintf("    %s has not taken this switch yet (it learns it from its peer's heartbeat)", n.Name))
		}
	}
	return out
}
