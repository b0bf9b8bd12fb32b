package console

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tandem-ha/tandem/internal/api"
)

// rotateCertTimeout bounds the whole rotation (two quick calls and the
// checks after).
const rotateCertTimeout = time.Minute

// RotateCertOutput is `tandem rotate-cert -o json`.
type RotateCertOutput struct {
	Cluster string `json:"cluster"`
	Node    string `json:"node"`
	Old     string `json:"old_fingerprint"`
	New     string `json:"fingerprint"`
	Peer    string `json:"peer,omitempty"`
	// PeerPinsNew: the peer, asked afterwards, pins the new certificate
	// and no longer the old one.
	PeerPinsNew   bool     `json:"peer_pins_new"`
	RecordUpdated bool     `json:"record_updated"`
	Notes         []string `json:"notes,omitempty"`
}

// NewRotateCertCommand replaces a node's TLS certificate in place.
func NewRotateCertCommand(g *globals) *cobra.Command {
	var (
		yes     bool
		cluster string
	)
	cmd := &cobra.Command{
		Use:   "rotate-cert NODE",
		Short: "Give a node a new TLS certificate, re-pinned by its peer and this console, with no outage",
		Long: `Replace the TLS certificate of NODE (its name in the cluster, or its
address as this console knows it) with a new key and certificate, and
re-pin it everywhere, without reassembling, without restarting tandemd or
PostgreSQL, and without interrupting writes or replication:

  1. NODE makes a new key and certificate beside its current ones
     (state_dir/node.next.key, node.next.crt) and tells its peer, which
     from then on accepts both; this console pins both.
  2. NODE switches to the new one (node.crt and node.key are replaced;
     new connections get it, connections already open carry on), and
     tells its peer over the new certificate: the peer drops the old one
     and refuses it from then on. The primary updates the cluster record.
  3. This console pins only the new certificate (under every address it
     had pinned the old one at) and checks that NODE presents it and that
     the peer pins it.

Both nodes must answer: the peer has to learn the new certificate before
NODE presents it, or it would refuse NODE. A rotation with the peer down is
refused, with nothing changed; if the peer is gone for good, disassemble
(--force) first. Needs the admin tokens this console keeps.

Interrupted anywhere (this console or tandemd killed), NODE stays reachable
with the old or the new certificate, since its peer and this console
accept both until they see the new one; run the same command again to
finish (it resumes the prepared certificate).

Other consoles that pinned NODE refuse the new certificate as CHANGED: on
each, 'tandem trust forget ADDRESS' and pin it again (--fingerprint, the
new fingerprint this command prints). Anything else that checks node.crt
(Prometheus's ca_file) needs the new node.crt.

Exit status: 0 done; 2 bad arguments (unknown node) or not confirmed off
a terminal; 3 a node could not be reached (nothing was changed); 4
certificate or token refused; 5 refused by the cluster's state (an
operation in progress); 6 the console stopped waiting; 1 anything else.`,
		Example: `  tandem rotate-cert a
  tandem rotate-cert b --yes -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			op, err := g.startOperation(cmd, "rotate-cert", yes, cluster, rotateCertTimeout)
			if err != nil {
				return err
			}
			defer op.cancel()
			return rotateCert(cmd, g, op, args[0], yes)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&yes, "yes", false, "confirm without asking (scripts)")
	f.StringVar(&cluster, "cluster", "", "which cached cluster, when the console knows several")
	return cmd
}

// findNode picks a cached node by name, address or IP.
func findNode(cc CachedCluster, which string) *CachedNode {
	w := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(which)), ".")
	for i, n := range cc.Nodes {
		host, _, _ := net.SplitHostPort(n.Address)
		if w != "" && (w == strings.ToLower(n.Name) || w == strings.ToLower(n.Address) || w == n.IP || w == strings.ToLower(host)) {
			return &cc.Nodes[i]
		}
	}
	return nil
}

func rotateCert(cmd *cobra.Command, g *globals, op *operation, which string, yes bool) error {
	tr, name, cc, toks, ctx := op.tr, op.name, op.cc, op.toks, op.ctx
	target := findNode(cc, which)
	if target == nil {
		var known []string
		for _, n := range cc.Nodes {
			known = append(known, fmt.Sprintf("%s (%s)", n.Name, n.Address))
		}
		return exitf(ExitUsage, "cluster %s has no node %q: its nodes are %s. Nothing was sent", name, which, strings.Join(known, ", "))
	}
	probes := probeNodes(ctx, tr, toks, cc.Nodes)
	var tp, pp *probe
	for _, p := range probes {
		if p.node.Address == target.Address {
			tp = p
		} else {
			pp = p
		}
	}
	if !tp.reachable() {
		return &ExitError{Code: ExitCode(tp.err), Err: fmt.Errorf("%s: %w. Nothing was sent", target.Name, tp.err)}
	}
	if tp.view.Peer != nil && (pp == nil || !pp.reachable()) {
		why := "it is not in this console's cache"
		code := ExitUnreachable
		if pp != nil {
			why, code = pp.err.Error(), ExitCode(pp.err)
		}
		return &ExitError{Code: code, Err: fmt.Errorf("the peer of %s, %s, does not answer this console (%s): it must learn the new certificate before %s presents it. Rotate once both nodes answer (if %s is gone for good, `tandem disassemble --force` first). Nothing was sent", target.Name, tp.view.Peer.Name, why, target.Name, tp.view.Peer.Name)}
	}
	node := tp.view.Node
	errw := cmd.ErrOrStderr()
	fmt.Fprintf(errw, "\nCertificate rotation of %s in cluster %s:\n", node.Name, name)
	fmt.Fprintf(errw, "  %s makes a new key and certificate to replace %s", node.Name, node.Fingerprint)
	if node.NextFingerprint != "" {
		fmt.Fprintf(errw, " (one is prepared already, %s: it is used)", node.NextFingerprint)
	}
	fmt.Fprintln(errw, ".")
	if tp.view.Peer != nil {
		fmt.Fprintf(errw, "  %s learns it and accepts both; then %s switches to it and %s drops the old one.\n", tp.view.Peer.Name, node.Name, tp.view.Peer.Name)
	} else {
		fmt.Fprintf(errw, "  %s has no peer; it switches to the new certificate at once.\n", node.Name)
	}
	fmt.Fprintf(errw, "  Nothing restarts: writes and replication carry on. This console re-pins %s.\n\n", node.Name)
	if err := confirmOrRefuse(tr, yes, fmt.Sprintf("Rotate the certificate of %s?", node.Name)); err != nil {
		return err
	}

	var prep api.CertPrepareResult
	if err := tp.c.Post(ctx, "/v1/cert/prepare", nil, &prep); err != nil {
		return rotationFailed(ctx, node.Name, "preparing the new certificate", err)
	}
	// Both pinned before the switch: whatever stops this console from
	// here on, the node is reachable with either certificate.
	tr.mu.Lock()
	tr.cache.beginRotation(prep.Fingerprint, prep.NextFingerprint)
	err := tr.cache.Save()
	tr.mu.Unlock()
	if err != nil {
		return fmt.Errorf("while pinning the next certificate of %s in the cache (nothing was switched; run again): %w", node.Name, err)
	}

	var sw api.CertSwitchResult
	if err := tp.c.Post(ctx, "/v1/cert/switch", api.CertSwitchRequest{Fingerprint: prep.NextFingerprint}, &sw); err != nil {
		return rotationFailed(ctx, node.Name, "switching to the new certificate", err)
	}
	tr.mu.Lock()
	tr.cache.finishRotation(sw.Old, sw.Fingerprint)
	err = tr.cache.Save()
	tr.mu.Unlock()
	if err != nil {
		return fmt.Errorf("%s switched to certificate %s, but the console's cache could not be written (%w): pin it with `tandem trust forget %s` and --fingerprint %s", node.Name, sw.Fingerprint, err, target.Address, sw.Fingerprint)
	}
	tp.c.api.Close()

	out := RotateCertOutput{Cluster: name, Node: node.Name, Old: sw.Old, New: sw.Fingerprint, Peer: sw.Peer, RecordUpdated: sw.RecordUpdated, Notes: sw.Notes}
	if err := checkRotated(ctx, tr, toks, target, pp, &out); err != nil {
		return err
	}
	_ = remember(tr.cache, name, probeNodes(ctx, tr, toks, cc.Nodes), time.Now().UTC())
	if g.output == "json" {
		return printJSON(cmd.OutOrStdout(), out)
	}
	printRotateCert(cmd.OutOrStdout(), out)
	return nil
}

// checkRotated connects to the node anew, pinned to the new certificate
// only, and asks the peer what it pins.
func checkRotated(ctx context.Context, tr *trust, toks *Tokens, target *CachedNode, pp *probe, out *RotateCertOutput) error {
	c, err := Dial(ctx, target.Address, toks.ByAddress[target.Address], tr)
	if err != nil {
		return fmt.Errorf("%s switched to %s, but a new connection pinned to it fails: %w", out.Node, out.New, err)
	}
	defer c.api.Close()
	var v api.ClusterView
	if _, err := fetchView(ctx, c, &v); err != nil {
		return fmt.Errorf("%s switched to %s, but does not answer over it: %w", out.Node, out.New, err)
	}
	if v.Node.Fingerprint != out.New {
		return fmt.Errorf("%s switched, but reports certificate %s, not %s", out.Node, v.Node.Fingerprint, out.New)
	}
	if pp == nil || out.Peer == "" {
		return nil
	}
	// The peer drops the old pin at the node's confirmation, or else at
	// its next call (the heartbeat, every second).
	deadline := time.Now().Add(5 * time.Second)
	for {
		var pv api.ClusterView
		_, err := fetchView(ctx, pp.c, &pv)
		if err == nil && pv.Peer != nil && pv.Peer.Fingerprint == out.New && pv.Peer.NextFingerprint == "" {
			out.PeerPinsNew = true
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			what := "no answer"
			if err != nil {
				what = err.Error()
			} else if pv.Peer != nil {
				what = fmt.Sprintf("it pins %s (next %q)", pv.Peer.Fingerprint, pv.Peer.NextFingerprint)
			}
			out.Notes = append(out.Notes, fmt.Sprintf("%s does not pin the new certificate alone yet (%s); it accepts both until %s next calls it", out.Peer, what, out.Node))
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// rotationFailed explains a rotation step that did not go through: the
// node and its peer accept the certificate in force either way.
func rotationFailed(ctx context.Context, node, what string, err error) error {
	if ctx.Err() != nil {
		return &ExitError{Code: ExitDetached, Err: fmt.Errorf("rotate-cert: the console stopped waiting while %s (%v); %s keeps a certificate its peer and this console accept. Run `tandem rotate-cert %s` again to finish", what, ctx.Err(), node, node)}
	}
	return fmt.Errorf("rotate-cert: while %s: %w", what, err)
}

func printRotateCert(w io.Writer, o RotateCertOutput) {
	fmt.Fprintf(w, "Certificate of %s rotated: %s replaces %s.\n", o.Node, o.New, o.Old)
	if o.Peer != "" {
		if o.PeerPinsNew {
			fmt.Fprintf(w, "  %s pins the new certificate and refuses the old one.\n", o.Peer)
		} else {
			fmt.Fprintf(w, "  %s still accepts both certificates for now.\n", o.Peer)
		}
	}
	fmt.Fprintf(w, "  This console pins the new certificate. Other consoles: `tandem trust forget` and --fingerprint %s.\n", o.New)
	for _, n := range o.Notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
}
