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

// assembleTimeout is assemble's default timeout: the secondary clones the
// whole database before the primary answers.
const assembleTimeout = 30 * time.Minute

// checkTimeout bounds the looks a command takes before it changes anything.
const checkTimeout = 15 * time.Second

// NewAssembleCommand makes a cluster of two nodes.
func NewAssembleCommand(g *globals) *cobra.Command {
	var (
		pf            pairFlags
		name          string
		replication   string
		yes           bool
		skipPreflight bool
		wf            witnessFlags
	)
	cmd := &cobra.Command{
		Use:   "assemble",
		Short: "Make a cluster of two nodes: the secondary's database is REPLACED by a copy of the primary's",
		Long: `Make a cluster of two nodes running tandemd. The primary keeps its database
and takes the cluster IP; the secondary's database is moved aside and
replaced by a copy of the primary's, which it then follows as a hot standby.

Before anything changes, the console checks on its own that the secondary
belongs to no cluster and that both run the same PostgreSQL major version,
shows what will happen and asks for confirmation (--yes in scripts). Both
nodes then check DNS and the network (see 'tandem preflight'), unless
--skip-preflight.

Each node's admin token (the file admin-token in its state dir) is read from
--primary-token-file / --secondary-token-file or TANDEM_PRIMARY_TOKEN /
TANDEM_SECONDARY_TOKEN. The secondary's token is its consent to having its
database replaced. The console keeps both tokens (tokens.json, mode 0600) and
the cluster in its cache, so later commands need no token flags.

Cloning can take minutes: the default timeout is 30m (--timeout overrides).

Failover mode (--failover): manual (the default) never promotes by itself:
when the primary is gone, an operator runs 'tandem failover'. automatic
adds a third vote, the witness (--witness HOST: a small third machine
running 'tandem-witness'), and an etcd member on each node: only the
holder of the leader key may be primary; a primary that cannot renew its
lease fences itself before anyone may replace it, and the secondary
promotes by itself once the lease is gone, if it holds every acknowledged
commit (sync, strict: the sync record names it; async: within
quorum.max_lag). The witness's token comes from --witness-token-file,
TANDEM_WITNESS_TOKEN or the console's tokens. Instead of a witness, the
quorum can be an etcd cluster the site already runs (--etcd URL,...,
--etcd-prefix): no member runs in tandemd then, and each node reaches that
etcd with the TLS files of its quorum.etcd.* settings. See docs/quorum.md.

Exit status: 0 assembled; 2 bad flags, or not confirmed off a terminal
(nothing sent); 3 a node unreachable; 4 certificate or token refused;
5 the nodes' state forbids it (nothing changed); 1 anything else.`,
		Example: `  tandem assemble --primary 10.0.0.11 --secondary 10.0.0.12 \
      --cluster-ip 10.0.0.10/24 --dns-name db.example.net \
      --primary-token-file a.token --secondary-token-file b.token
  TANDEM_PRIMARY_TOKEN=… TANDEM_SECONDARY_TOKEN=… tandem assemble --yes --trust-new \
      --primary a.lab.test --secondary b.lab.test --cluster-ip 10.77.0.10/24 --dns-name db.lab.test`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := g.validateOutput(); err != nil {
				return err
			}
			r, probs := pf.resolve()
			if name == "" {
				name = r.dnsName
			}
			if len(name) > 253 || !clusterNameRE.MatchString(name) {
				probs = append(probs, fmt.Sprintf("--name %q: a cluster name is letters, digits, '.', '-' and '_', starting with a letter or digit", name))
			}
			switch replication {
			case "async", "sync", "strict":
			default:
				probs = append(probs, fmt.Sprintf("--replication %q: use async, sync or strict", replication))
			}
			toks0, _ := LoadTokens()
			cache0, _ := LoadCache()
			wt, wprobs := wf.resolve(toks0, cache0)
			probs = append(probs, wprobs...)
			if len(probs) > 0 {
				return exitf(ExitUsage, "nothing was sent:\n  %s", strings.Join(probs, "\n  "))
			}
			if !yes && !canAsk(cmd.InOrStdin()) {
				return exitf(ExitUsage, "assemble replaces the database on %s and asks first, but this console is not on a terminal: pass --yes to confirm in scripts. Nothing was sent", r.secondaryAddr)
			}
			tr, err := g.trust(cmd)
			if err != nil {
				return err
			}
			ctx, cancel := g.contextFor(cmd, assembleTimeout)
			defer cancel()

			cctx, ccancel := context.WithTimeout(ctx, checkTimeout)
			pc, err := dialPair(cctx, tr, r)
			ccancel()
			if err != nil {
				return err
			}
			if err := assemblePreconditions(pc); err != nil {
				return err
			}
			req := api.AssembleRequest{
				Name: name, ClusterIP: r.clusterIPText(), DNSName: r.dnsName, Replication: replication, Endpoint: r.endpoint,
				Secondary: api.PeerRef{
					Address:     pc.s.Addr(),
					Token:       r.secondaryToken,
					Fingerprint: tr.pinned(pc.s.Addr()),
				},
				SkipPreflight: skipPreflight,
			}
			if req.Secondary.Fingerprint == "" {
				return fmt.Errorf("the certificate of %s was accepted but not pinned; run `tandem trust list` and try again", pc.s.Addr())
			}
			var wc *Client
			if wt != nil {
				wctx, wcancel := context.WithTimeout(ctx, checkTimeout)
				var wi api.WitnessInfo
				wc, wi, err = dialWitness(wctx, tr, wt, name)
				wcancel()
				if err != nil {
					return err
				}
				if req.Quorum, err = quorumSpec(name, pc, wi); err != nil {
					return err
				}
				req.Failover = failoverAutomatic
			} else if wf.etcd != "" {
				req.Quorum, req.Failover = wf.externalQuorum(name), failoverAutomatic
			}
			errw := cmd.ErrOrStderr()
			printAssemblePlan(errw, pc, req)
			if err := confirmOrRefuse(tr, yes, fmt.Sprintf("Replace the database on %s with a copy of %s's?", pc.sInfo.Name, pc.pInfo.Name)); err != nil {
				return err
			}

			// The tokens were just accepted by both nodes; keep them now,
			// so that even if the answer is lost the operator can look.
			toks, err := LoadTokens()
			if err != nil {
				return err
			}
			toks.ByAddress[pc.p.Addr()] = r.primaryToken
			toks.ByAddress[pc.s.Addr()] = r.secondaryToken
			if wc != nil {
				toks.ByAddress[wc.Addr()] = wt.token
			}
			if err := toks.Save(); err != nil {
				return err
			}
			if wc != nil {
				// The witness's member first: with the primary's, it makes
				// the majority the primary needs to take the leader key.
				var wi api.WitnessInfo
				if err := wc.Post(ctx, "/v1/witness/join", api.WitnessJoin{Cluster: name, Quorum: *req.Quorum}, &wi); err != nil {
					return fmt.Errorf("the witness %s did not take the quorum; nothing else was changed: %w", wc.Addr(), err)
				}
				fmt.Fprintf(errw, "Witness %s joined the quorum (member %s).\n", wi.Name, wi.State)
			}

			fmt.Fprintf(errw, "Assembling: %s is cloning %s's database; this can take minutes (timeout %s).\n", pc.sInfo.Name, pc.pInfo.Name, timeoutOf(ctx))
			var res api.AssembleResult
			stopProgress := showProgress(ctx, errw, pc.s, pc.sInfo.Name)
			err = pc.p.Post(ctx, "/v1/cluster/assemble", req, &res)
			stopProgress()
			if err != nil {
				var ae *APIError
				if errors.As(err, &ae) {
					if wc != nil {
						lctx, lcancel := context.WithTimeout(context.WithoutCancel(ctx), checkTimeout)
						if lerr := wc.Post(lctx, "/v1/witness/leave", struct{}{}, nil); lerr != nil {
							fmt.Fprintf(errw, "The witness %s kept the quorum of the failed assembly (%v): before another assembly with it, run it again or restart it with an empty state dir.\n", wc.Addr(), lerr)
						}
						lcancel()
					}
					return fmt.Errorf("assembly refused or failed; the nodes roll back what they changed: %w", err)
				}
				return &ExitError{Code: ExitCode(err), Err: fmt.Errorf("lost the answer of %s while it was assembling (%v). The assembly may still be running, or may have rolled back: see `tandem status --endpoint %s` and `tandem status --endpoint %s`", pc.p.Addr(), err, pc.p.Addr(), pc.s.Addr())}
			}

			c := tr.cache
			tr.mu.Lock()
			cached := cachedFromAssembly(res.Record, req, pc, time.Now().UTC())
			if wc != nil {
				cached.Witness = wc.Addr()
			}
			c.Clusters[clusterNameOf(res.Record, name)] = cached
			err = c.Save()
			tr.mu.Unlock()
			if err != nil {
				return fmt.Errorf("the cluster is assembled, but the console could not remember it: %w", err)
			}
			if g.output == "json" {
				return printJSON(cmd.OutOrStdout(), res)
			}
			printAssembled(cmd.OutOrStdout(), res, req, pc)
			return nil
		},
	}
	pf.register(cmd)
	f := cmd.Flags()
	f.StringVar(&name, "name", "", "the cluster's name (default: the DNS name)")
	f.StringVar(&replication, "replication", "sync", "replication mode: async, sync (synchronous while the secondary streams) or strict (never degrade)")
	f.BoolVar(&yes, "yes", false, "confirm without asking that the secondary's database is replaced (scripts)")
	f.BoolVar(&skipPreflight, "skip-preflight", false, "do not have the nodes check DNS and the network first")
	f.StringVar(&wf.failover, "failover", failoverManual, "failover mode: manual (an operator runs `tandem failover`) or automatic (needs --witness; the secondary promotes by itself once the primary's lease is gone)")
	f.StringVar(&wf.witness, "witness", "", "automatic mode: API address of the witness (`tandem-witness` on a third machine): host, host:port or https://host:port")
	f.StringVar(&wf.tokenFile, "witness-token-file", "", "file holding the witness's admin token (default: TANDEM_WITNESS_TOKEN, then the console's tokens)")
	f.StringVar(&wf.fp, "witness-fingerprint", "", "accept the witness, if not pinned yet, only with this certificate fingerprint (default: --fingerprint)")
	f.StringVar(&wf.etcd, "etcd", "", "automatic mode with an external etcd instead of a witness: its client URLs, comma-separated (https://host:port,...); each node reaches it with the TLS files of its quorum.etcd.* settings")
	f.StringVar(&wf.etcdPrefix, "etcd-prefix", "", "with --etcd: the key prefix that is this cluster's alone in that etcd (default /tandem/NAME)")
	return cmd
}

// assemblePreconditions refuses, before anything is sent, what the primary
// would refuse anyway, with the console's own words.
func assemblePreconditions(pc *pairClients) error {
	p, s := pc.pInfo, pc.sInfo
	var probs []string
	if s.Role != roleNone && s.Role != "" {
		what := s.Role
		if s.Cluster != "" {
			what = fmt.Sprintf("%s of cluster %q", s.Role, s.Cluster)
		}
		probs = append(probs, fmt.Sprintf("the secondary %s (%s) already holds a cluster: it is %s. Disassemble it first (`tandem disassemble`, or `tandem disassemble --force --endpoint %s`)", s.Name, pc.s.Addr(), what, pc.s.Addr()))
	}
	if p.Role == rolePrimary || p.Role == roleSecondary {
		probs = append(probs, fmt.Sprintf("the primary %s (%s) already belongs to cluster %q as %s: disassemble it first", p.Name, pc.p.Addr(), p.Cluster, p.Role))
	}
	if p.Name == s.Name {
		probs = append(probs, fmt.Sprintf("both nodes are named %q: give each node its own node.name", p.Name))
	}
	if p.Op != "" {
		probs = append(probs, fmt.Sprintf("the primary %s is in the middle of an operation (%s): wait for it to finish", p.Name, p.Op))
	}
	if s.Op != "" {
		probs = append(probs, fmt.Sprintf("the secondary %s is in the middle of an operation (%s): wait for it to finish", s.Name, s.Op))
	}
	if p.Postgres.State != "running" {
		probs = append(probs, fmt.Sprintf("PostgreSQL on the primary %s is %s: it must run, since its database is the one kept", p.Name, dash(p.Postgres.State)))
	} else if p.Postgres.InRecovery {
		probs = append(probs, fmt.Sprintf("PostgreSQL on the primary %s is in recovery (a standby): the primary must be read-write", p.Name))
	}
	switch {
	case p.Postgres.VersionNum == 0 || s.Postgres.VersionNum == 0:
		for _, n := range []api.NodeInfo{p, s} {
			if n.Postgres.VersionNum == 0 {
				probs = append(probs, fmt.Sprintf("the PostgreSQL version on %s is not known (PostgreSQL is %s): let it start, so the versions can be compared", n.Name, dash(n.Postgres.State)))
			}
		}
	case p.Postgres.VersionNum/10000 != s.Postgres.VersionNum/10000:
		probs = append(probs, fmt.Sprintf("PostgreSQL major versions differ: %s on %s, %s on %s; streaming replication needs the same major version on both",
			pgVersion(p), p.Name, pgVersion(s), s.Name))
	}
	if len(probs) > 0 {
		return exitf(ExitConflict, "cannot assemble; nothing was sent:\n  %s", strings.Join(probs, "\n  "))
	}
	return nil
}

func pgVersion(n api.NodeInfo) string {
	if n.Postgres.Version != "" {
		return n.Postgres.Version
	}
	return fmt.Sprintf("%d", n.Postgres.VersionNum/10000)
}

func printAssemblePlan(w io.Writer, pc *pairClients, req api.AssembleRequest) {
	p, s := pc.pInfo, pc.sInfo
	fmt.Fprintf(w, "\nAssemble cluster %s:\n", req.Name)
	fmt.Fprintf(w, "  primary     %s  (node IP %s, API %s), PostgreSQL %s: keeps its database, takes the endpoint\n", p.Name, p.IP, pc.p.Addr(), pgVersion(p))
	fmt.Fprintf(w, "  secondary   %s  (node IP %s, API %s), PostgreSQL %s: becomes its hot standby\n", s.Name, s.IP, pc.s.Addr(), pgVersion(s))
	if req.Endpoint == endpointDNS {
		fmt.Fprintf(w, "  endpoint    the DNS name %s, pointed at the primary's node IP (no cluster IP)   replication %s\n", req.DNSName, req.Replication)
	} else {
		fmt.Fprintf(w, "  cluster IP  %s   DNS name %s   replication %s\n", req.ClusterIP, req.DNSName, req.Replication)
	}
	if req.Quorum != nil && req.Quorum.External() {
		fmt.Fprintf(w, "  failover    AUTOMATIC: quorum of the external etcd %s, key prefix %s\n", strings.Join(req.Quorum.Etcd, ","), req.Quorum.Prefix)
	} else if req.Quorum != nil {
		w3 := req.Quorum.Members[2]
		fmt.Fprintf(w, "  failover    AUTOMATIC: quorum of %s, %s and the witness %s (etcd members at %s, %s, %s)\n", req.Quorum.Members[0].Name, req.Quorum.Members[1].Name, w3.Name, req.Quorum.Members[0].PeerAddr, req.Quorum.Members[1].PeerAddr, w3.PeerAddr)
	} else {
		fmt.Fprintf(w, "  failover    manual: when the primary is gone, an operator runs `tandem failover`\n")
	}
	if req.SkipPreflight {
		fmt.Fprintf(w, "  preflight   SKIPPED (--skip-preflight)\n")
	} else {
		fmt.Fprintf(w, "  preflight   both nodes check DNS and the network first; any problem stops it\n")
	}
	fmt.Fprintf(w, "\n  The database on %s (PostgreSQL %s, node IP %s) will be REPLACED by a copy of %s's.\n", s.Name, pgVersion(s), s.IP, p.Name)
	fmt.Fprintf(w, "  Whatever %s holds now is moved aside and deleted once the copy streams.\n\n", s.Name)
}

func printAssembled(w io.Writer, res api.AssembleResult, req api.AssembleRequest, pc *pairClients) {
	r := res.Record
	fmt.Fprintf(w, "Cluster %s assembled", clusterNameOf(r, req.Name))
	if res.Took != "" {
		fmt.Fprintf(w, " in %s", res.Took)
	}
	fmt.Fprintln(w, ".")
	if r.Name != "" {
		fmt.Fprintf(w, "  term %d, primary %s, cluster IP %s, DNS name %s, replication %s\n", r.Term, r.Primary, r.ClusterIP, r.DNSName, r.Replication)
	}
	fmt.Fprintf(w, "  primary %s (%s), secondary %s (%s)\n", pc.pInfo.Name, pc.p.Addr(), pc.sInfo.Name, pc.s.Addr())
	fmt.Fprintln(w, "The console now knows this cluster: `tandem status` shows both nodes, no token flags needed.")
}

func clusterNameOf(r api.Record, fallback string) string {
	if r.Name != "" {
		return r.Name
	}
	return fallback
}

// cachedFromAssembly is what the console remembers of a new cluster: the
// record when the primary returned one, else what it asked for.
func cachedFromAssembly(r api.Record, req api.AssembleRequest, pc *pairClients, now time.Time) CachedCluster {
	cc := CachedCluster{
		ClusterIP: req.ClusterIP, DNSName: req.DNSName, Replication: req.Replication,
		Term: 1, Primary: pc.pInfo.Name, AssembledAt: now, UpdatedAt: now,
		Nodes: []CachedNode{
			{Name: pc.pInfo.Name, IP: pc.pInfo.IP, Address: pc.p.Addr(), Role: rolePrimary, LastSeen: now},
			{Name: pc.sInfo.Name, IP: pc.sInfo.IP, Address: pc.s.Addr(), Role: roleSecondary, LastSeen: now},
		},
	}
	if r.Name != "" {
		cc.ClusterIP, cc.DNSName, cc.Replication = r.ClusterIP, r.DNSName, r.Replication
		cc.Term, cc.Primary = r.Term, r.Primary
	}
	return cc
}

func timeoutOf(ctx context.Context) string {
	if d, ok := ctx.Deadline(); ok {
		return time.Until(d).Round(time.Second).String()
	}
	return "none"
}

// showProgress prints the secondary's clone progress, as it changes,
// while a long request runs, so the operator sees it move.
func showProgress(ctx context.Context, w io.Writer, c *Client, name string) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		last := ""
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			var n api.NodeInfo
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			err := c.Get(pctx, "/v1/node", &n)
			cancel()
			if err != nil || n.Progress == nil {
				continue
			}
			if line := progressOf(n.Progress); line != last {
				fmt.Fprintf(w, "  %s:%s\n", name, line)
				last = line
			}
		}
	}()
	return func() { close(done); <-finished }
}
