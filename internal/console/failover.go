package console

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/tandem-ha/tandem/internal/api"
)

// failoverTimeout bounds the failover request; the checks before it are
// bounded per path.
const failoverTimeout = time.Minute

// pathTimeout bounds each attempt to reach the primary before a failover.
const pathTimeout = 1500 * time.Millisecond

// PathCheck is one way the console tried to reach the primary.
type PathCheck struct {
	Path      string `json:"path"`
	Address   string `json:"address"`
	Reachable bool   `json:"reachable"`
	Detail    string `json:"detail,omitempty"`
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

			probes := probeNodes(ctx, tr, toks, cc.Nodes)
			if p := primaryOf(probes); p != nil && !force {
				return exitf(ExitConflict, "%s answers as primary (term %d): failover refused. For a planned change use `tandem switchover`. Nothing was sent", nameOr(p), p.view.Node.Term)
			}
			var secondary, primary *probe
			for _, p := range probes {
				switch {
				case p.reachable() && p.view.Node.Role == roleSecondary:
					secondary = p
				case p.node.Name == cc.Primary || !p.reachable():
					primary = p
				}
			}
			if secondary == nil {
				return &ExitError{Code: ExitUnreachable, Err: fmt.Errorf("no node of cluster %s answers as secondary (%s): there is nothing to fail over to. Nothing was sent", name, describe(probes))}
			}
			if primary == nil {
				for _, p := range probes {
					if p != secondary {
						primary = p
					}
				}
			}
			pgPort := 5432
			if peer := secondary.view.Peer; peer != nil && peer.PGPort > 0 {
				pgPort = peer.PGPort
			}
			out.Paths = checkPaths(ctx, primary, cc, apiPortOf(cc), pgPort, knownFingerprints(tr, cc))
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
				state := "silent"
				if pc.Reachable {
					state = "ANSWERS"
				}
				fmt.Fprintf(errw, "  primary %s via %s (%s): %s\n", nameOr(primary), pc.Path, pc.Address, state)
			}
			if c := out.Contact; c != nil {
				if c.SilentSeconds < 0 {
					fmt.Fprintf(errw, "  %s has not heard from the primary since it started.\n", nameOr(secondary))
				} else {
					fmt.Fprintf(errw, "  %s last heard from the primary %s ago (%s).\n", nameOr(secondary), time.Duration(c.SilentSeconds*float64(time.Second)).Round(100*time.Millisecond), c.LastHeard)
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
			_ = remember(tr.cache, name, probeNodes(ctx, tr, toks, cc.Nodes), time.Now())
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

// checkPaths tries, all at once, every way to the primary: its API by the
// cached address and on the cluster IP, its PostgreSQL port by node IP and
// on the cluster IP.
func checkPaths(ctx context.Context, primary *probe, cc CachedCluster, apiPort string, pgPort int, known map[string]string) []PathCheck {
	var checks []PathCheck
	add := func(path, addr string) { checks = append(checks, PathCheck{Path: path, Address: addr}) }
	if primary != nil {
		add("node API", primary.node.Address)
		if primary.node.IP != "" {
			add("PostgreSQL on the node IP", net.JoinHostPort(primary.node.IP, strconv.Itoa(pgPort)))
		}
	}
	if p, err := netip.ParsePrefix(cc.ClusterIP); err == nil {
		add("node API on the cluster IP", net.JoinHostPort(p.Addr().String(), apiPort))
		add("PostgreSQL on the cluster IP", net.JoinHostPort(p.Addr().String(), strconv.Itoa(pgPort)))
	}
	var wg sync.WaitGroup
	for i := range checks {
		wg.Go(func() {
			c := &checks[i]
			pctx, cancel := context.WithTimeout(ctx, pathTimeout)
			defer cancel()
			if c.Path == "node API" || c.Path == "node API on the cluster IP" {
				a := identify(pctx, c.Address, known)
				c.Reachable, c.Detail = a.Reachable, a.Error
				if a.Node != "" {
					c.Detail = "answered as " + a.Node
				}
				return
			}
			conn, err := (&net.Dialer{}).DialContext(pctx, "tcp", c.Address)
			if err != nil {
				c.Detail = err.Error()
				return
			}
			conn.Close()
			c.Reachable = true
		})
	}
	wg.Wait()
	return checks
}

func printFailover(w io.Writer, o FailoverOutput) {
	r := o.Result
	fmt.Fprintf(w, "Failover done in %s: %s is primary at term %d. The cluster is degraded until the old primary rejoins.\n", r.Took, r.Primary, r.Term)
	printSteps(w, r.Steps)
}
