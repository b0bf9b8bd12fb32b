package console

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tandem-ha/tandem/internal/api"
)

// NewFailoverModeCommand changes a running cluster's failover mode.
func NewFailoverModeCommand(g *globals) *cobra.Command {
	var (
		yes     bool
		cluster string
		wf      witnessFlags
	)
	cmd := &cobra.Command{
		Use:   "failover-mode manual|automatic",
		Short: "Change a running cluster's failover mode (automatic needs a witness or an external etcd)",
		Long: `Change the failover mode of the cluster while it runs, with no outage.

automatic: the secondary promotes by itself once the primary's leader
lease is gone, if it holds every acknowledged commit; a primary that loses
the quorum fences itself (docs/quorum.md). It needs --witness, a third
machine running 'tandem-witness' (token: --witness-token-file,
TANDEM_WITNESS_TOKEN or the console's tokens). The console gives the
witness the quorum, then the primary takes the leader key, then the
secondary starts watching it. Or --etcd URL,... (and --etcd-prefix): an
etcd cluster the site runs, reached by each node with its quorum.etcd.*
TLS files; the primary first checks that the prefix is free there.

manual: nothing promotes by itself; 'tandem failover' is for an operator.
The secondary stops watching first, then the primary retires the quorum
(no secondary may promote from it any more) and the witness leaves it.

Both nodes must answer; otherwise nothing changes.

Exit status: 0 done (or already in that mode); 2 bad flags or not
confirmed off a terminal; 3 a node or the witness could not be reached;
4 certificate or token refused; 5 refused by the cluster's state; 1
anything else.`,
		Example: `  TANDEM_WITNESS_TOKEN=… tandem failover-mode automatic --witness w.example.net
  tandem failover-mode automatic --etcd https://etcd1.example.net:2379,https://etcd2.example.net:2379,https://etcd3.example.net:2379
  tandem failover-mode manual --yes`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			mode := args[0]
			if mode != failoverManual && mode != failoverAutomatic {
				return exitf(ExitUsage, "failover mode %q: use manual or automatic. Nothing was sent", mode)
			}
			wf.failover = mode
			toks0, _ := LoadTokens()
			cache0, _ := LoadCache()
			wt, probs := wf.resolve(toks0, cache0)
			if len(probs) > 0 {
				return exitf(ExitUsage, "nothing was sent:\n  %s", strings.Join(probs, "\n  "))
			}
			op, err := g.startOperation(cmd, "failover-mode", yes, cluster, 2*time.Minute)
			if err != nil {
				return err
			}
			defer op.cancel()
			tr, name, cc, toks, ctx := op.tr, op.name, op.cc, op.toks, op.ctx
			probes := probeNodes(ctx, tr, toks, cc.Nodes)
			primary, secondary := primaryAndOther(probes)
			if primary == nil {
				return &ExitError{Code: ExitUnreachable, Err: fmt.Errorf("no node of cluster %s answers as primary (%s): the mode changes on both nodes together. Nothing was sent", name, describe(probes))}
			}
			if secondary == nil || !secondary.reachable() {
				return &ExitError{Code: ExitUnreachable, Err: fmt.Errorf("the secondary does not answer (%s): the mode changes on both nodes together. Nothing was sent", describe(probes))}
			}
			req := api.FailoverModeRequest{Failover: mode}
			errw := cmd.ErrOrStderr()
			var wc *Client
			if wt != nil {
				pc := &pairClients{p: primary.c, s: secondary.c}
				if err := primary.c.Get(ctx, "/v1/node", &pc.pInfo); err != nil {
					return err
				}
				if err := secondary.c.Get(ctx, "/v1/node", &pc.sInfo); err != nil {
					return err
				}
				var wi api.WitnessInfo
				wc, wi, err = dialWitness(ctx, tr, wt, name)
				if err != nil {
					return err
				}
				if req.Quorum, err = quorumSpec(name, pc, wi); err != nil {
					return err
				}
				fmt.Fprintf(errw, "\nFailover mode of %s → automatic: quorum of %s, %s and the witness %s.\n", name, pc.pInfo.Name, pc.sInfo.Name, wi.Name)
				fmt.Fprintf(errw, "  The secondary %s will promote by itself once the primary's lease is gone.\n\n", pc.sInfo.Name)
			} else if mode == failoverAutomatic {
				req.Quorum = wf.externalQuorum(name)
				fmt.Fprintf(errw, "\nFailover mode of %s → automatic: quorum of the external etcd %s, key prefix %s.\n", name, strings.Join(req.Quorum.Etcd, ","), req.Quorum.Prefix)
				fmt.Fprintf(errw, "  The secondary will promote by itself once the primary's lease is gone.\n\n")
			} else {
				fmt.Fprintf(errw, "\nFailover mode of %s → manual: nothing will promote by itself; `tandem failover` is for an operator.\n\n", name)
			}
			if err := confirmOrRefuse(tr, yes, fmt.Sprintf("Change the failover mode of %s to %s?", name, mode)); err != nil {
				return err
			}
			if wc != nil {
				toks.ByAddress[wc.Addr()] = wt.token
				if err := toks.Save(); err != nil {
					return err
				}
				if err := wc.Post(ctx, "/v1/witness/join", api.WitnessJoin{Cluster: name, Quorum: *req.Quorum}, nil); err != nil {
					return fmt.Errorf("the witness %s did not take the quorum; nothing else was changed: %w", wc.Addr(), err)
				}
			}
			var res api.FailoverModeResult
			if err := primary.c.Post(ctx, "/v1/cluster/failover-mode", req, &res); err != nil {
				if wc != nil {
					_ = wc.Post(ctx, "/v1/witness/leave", struct{}{}, nil)
				}
				return fmt.Errorf("the change of mode was refused or failed: %w", err)
			}
			tr.mu.Lock()
			c := tr.cache.Clusters[name]
			oldWitness := c.Witness
			if wc != nil {
				c.Witness = wc.Addr()
			} else {
				c.Witness = ""
			}
			tr.cache.Clusters[name] = c
			err = tr.cache.Save()
			tr.mu.Unlock()
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Failover mode of %s is %s.\n  primary:   %s\n  secondary: %s\n", name, res.Failover, res.Primary, res.Secondary)
			if mode == failoverManual && oldWitness != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "  witness:   %s\n", releaseWitness(ctx, tr, oldWitness))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&yes, "yes", false, "confirm without asking (scripts)")
	f.StringVar(&cluster, "cluster", "", "which cached cluster, when the console knows several")
	f.StringVar(&wf.witness, "witness", "", "automatic: API address of the witness (`tandem-witness` on a third machine)")
	f.StringVar(&wf.tokenFile, "witness-token-file", "", "file holding the witness's admin token (default: TANDEM_WITNESS_TOKEN, then the console's tokens)")
	f.StringVar(&wf.fp, "witness-fingerprint", "", "accept the witness, if not pinned yet, only with this certificate fingerprint (default: --fingerprint)")
	f.StringVar(&wf.etcd, "etcd", "", "automatic, with an external etcd instead of a witness: its client URLs, comma-separated (https://host:port,...); each node uses its quorum.etcd.* TLS files")
	f.StringVar(&wf.etcdPrefix, "etcd-prefix", "", "with --etcd: the key prefix that is this cluster's alone in that etcd (default /tandem/NAME)")
	return cmd
}
