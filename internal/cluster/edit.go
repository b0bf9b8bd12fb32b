package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tandem-ha/tandem/internal/api"
	"github.com/tandem-ha/tandem/internal/state"
	"github.com/tandem-ha/tandem/internal/valid"
)

// OpEdit changes a running cluster's cluster IP, DNS name or replication
// mode (not journaled: see the order below).
const OpEdit state.OpKind = "edit"

// EventEdited records an edit.
const EventEdited = "cluster_edited"

// Edit changes the settings of the running cluster, on the primary, with
// the secondary answering. Nothing changes until the new values pass the
// same preflight as an assembly, on both nodes (a new cluster IP must be
// free and in the nodes' subnet; the DNS name must resolve to the cluster
// IP, forward and reverse). Then, in this order:
//
//  1. the secondary takes the new values into its state (it would take
//     the cluster IP from them at a failover);
//  2. this node does, and moves the cluster IP: the old address goes, the
//     new one comes with its announcements (a crash between the two leaves
//     the state naming the new address, which boot takes);
//  3. the record and the event.
//
// The replication mode is applied by the monitor, which sets
// synchronous_standby_names and the sync record from the state's mode
// within a second, as after an assembly. If the new address cannot be
// taken, the old one is taken back and both nodes return to the old
// values.
func (n *Node) Edit(ctx context.Context, req api.EditRequest) (api.EditResult, error) {
	return runOp(n, ctx, OpEdit, byConsole, func(ctx context.Context, _ func(api.EditResult, error)) (api.EditResult, error) {
		return n.edit(ctx, req)
	})
}

// editValues are a cluster's editable settings.
type editValues struct{ clusterIP, dnsName, replication string }

func valuesOf(c *state.Membership) editValues {
	return editValues{c.ClusterIP, c.DNSName, c.Replication}
}

// apply fills what req leaves empty from v, checks the result and says
// what changes, every problem listed.
func (v editValues) apply(req api.EditRequest) (editValues, []string, error) {
	out := v
	var p []string
	if req.ClusterIP != "" {
		pr, err := netip.ParsePrefix(req.ClusterIP)
		if err != nil || pr.Addr().Zone() != "" {
			p = append(p, fmt.Sprintf("cluster IP %q must be an address with its prefix length, such as 10.0.0.10/24", req.ClusterIP))
		} else {
			out.clusterIP = pr.String()
		}
	}
	if req.DNSName != "" {
		name := strings.TrimSuffix(strings.ToLower(req.DNSName), ".")
		if len(name) > 253 || !valid.Name(name, true) {
			p = append(p, fmt.Sprintf("DNS name %q is not a valid host name, such as db.example.net", req.DNSName))
		} else {
			out.dnsName = name
		}
	}
	if req.Replication != "" {
		switch req.Replication {
		case ModeAsync, ModeSync, ModeStrict:
			out.replication = req.Replication
		default:
			p = append(p, fmt.Sprintf("replication mode %q must be async, sync or strict", req.Replication))
		}
	}
	if len(p) > 0 {
		return v, nil, badRequest("nothing was changed: %s", strings.Join(p, "; "))
	}
	var changed []string
	for _, c := range []struct{ what, from, to string }{
		{"cluster IP", v.clusterIP, out.clusterIP},
		{"DNS name", v.dnsName, out.dnsName},
		{"replication", v.replication, out.replication},
	} {
		if c.from != c.to {
			changed = append(changed, fmt.Sprintf("%s %s → %s", c.what, c.from, c.to))
		}
	}
	return out, changed, nil
}

func (v editValues) set(c *state.Membership) {
	c.ClusterIP, c.DNSName, c.Replication = v.clusterIP, v.dnsName, v.replication
}

func (n *Node) edit(ctx context.Context, req api.EditRequest) (api.EditResult, error) {
	s := n.State()
	if s.Role != state.RolePrimary || s.Cluster == nil || s.Cluster.Peer == nil {
		return api.EditResult{}, conflict("%s is not the primary of a cluster (role %s); send the edit to the primary", n.cfg.Name, s.Role)
	}
	if err := n.noPendingJournal(s); err != nil {
		return api.EditResult{}, err
	}
	if endpointOf(s.Cluster) == EndpointDNS && (req.ClusterIP != "" || req.DNSName != "") {
		// The edit moves a cluster IP and preflights one; a cluster whose
		// endpoint is its DNS name has none, and re-pointing the name
		// from one zone to another is not built.
		return api.EditResult{}, badRequest("nothing was changed: cluster %s's endpoint is its DNS name, whose cluster IP and DNS name cannot be edited (only replication); disassemble and assemble again to change them", s.Cluster.Name)
	}
	old := valuesOf(s.Cluster)
	next, changed, err := old.apply(req)
	if err != nil {
		return api.EditResult{}, err
	}
	if len(changed) == 0 {
		return api.EditResult{Record: n.recordNow(ctx), ClusterIP: old.clusterIP, DNSName: old.dnsName, Replication: old.replication}, nil
	}
	peer := memberOf(s.Cluster.Peer)
	hb, err := n.askPeer(ctx, peer, 3*time.Second)
	if err != nil {
		return api.EditResult{}, unavailable("the secondary %s does not answer (%v): an edit changes both nodes together; nothing was changed", peer.Name, err)
	}
	if err := n.peerCompatible(peer.Name, hb); err != nil {
		return api.EditResult{}, err
	}
	if state.Role(hb.Role) != state.RoleSecondary || hb.Term != s.Term || hb.Operation != "" {
		return api.EditResult{}, conflict("the secondary %s is not ready (role %s, term %d, operation %q); nothing was changed", peer.Name, hb.Role, hb.Term, hb.Operation)
	}
	pc := n.peerOf(peer)
	if next.clusterIP != old.clusterIP || next.dnsName != old.dnsName {
		n.run.noteStep("preflight")
		if err := n.preflightBothAt(ctx, api.AssembleRequest{ClusterIP: next.clusterIP, DNSName: next.dnsName}, *peer, pc, "/v1/peer/preflight"); err != nil {
			var ae *api.Error
			if errors.As(err, &ae) && ae.Status == http.StatusBadRequest {
				// The values are well formed; the network or DNS is not
				// ready for them: a refusal by the cluster's state.
				return api.EditResult{}, conflict("%s", strings.Replace(ae.Message, ", or pass --skip-preflight", "", 1))
			}
			return api.EditResult{}, err
		}
	}

	n.run.noteStep("secondary")
	// undoPeer gives the secondary its old values back (idempotent: also
	// after a call whose answer was lost but which the secondary carried
	// out); false when it could not be reached.
	undoPeer := func() bool {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := pc.do(uctx, http.MethodPost, "/v1/peer/edit", api.EditRequest{ClusterIP: old.clusterIP, DNSName: old.dnsName, Replication: old.replication, Term: s.Term}, nil); err != nil {
			n.log.Error("could not give the secondary its old settings back", "err", err)
			return false
		}
		return true
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	err = pc.do(pctx, http.MethodPost, "/v1/peer/edit", api.EditRequest{ClusterIP: next.clusterIP, DNSName: next.dnsName, Replication: next.replication, Term: s.Term}, nil)
	cancel()
	if err != nil {
		if !undoPeer() {
			return api.EditResult{}, fmt.Errorf("the secondary %s did not confirm the edit (%w), and could not be given its old values back: it may hold the new ones; nothing changed on %s. Run the edit again once it answers", peer.Name, err, n.cfg.Name)
		}
		return api.EditResult{}, fmt.Errorf("the secondary %s did not take the edit; nothing was changed: %w", peer.Name, err)
	}

	n.run.noteStep("primary")
	if err := n.set(func(st *state.State) { next.set(st.Cluster) }); err != nil {
		undoPeer()
		return api.EditResult{}, err
	}
	if next.clusterIP != old.clusterIP {
		if err := n.moveClusterIP(ctx, old.clusterIP); err != nil {
			_ = n.set(func(st *state.State) { old.set(st.Cluster) })
			n.setVIPAddress()
			if aerr := n.vip.Acquire(context.WithoutCancel(ctx)); aerr != nil {
				n.log.Error("could not take the old cluster IP back", "err", aerr)
			}
			undoPeer()
			return api.EditResult{}, fmt.Errorf("the new cluster IP could not be taken (%w); the old one is back and nothing was changed", err)
		}
	}

	n.run.noteStep("record")
	// Only the edited columns: the monitor may change synchronized
	// meanwhile, and a read-then-write would put its old value back.
	err = n.withConn(ctx, func(c *pgx.Conn) error {
		return recordTx(ctx, c, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `UPDATE tandem.cluster SET cluster_ip = $1, dns_name = $2, replication = $3, updated_at = now() WHERE id = 1`, next.clusterIP, next.dnsName, next.replication)
			return err
		})
	})
	if err != nil {
		n.log.Error("the edit is in force on both nodes but the cluster record was not rewritten; the next edit or operation rewrites it", "err", err)
	}
	n.event(ctx, EventEdited, n.cfg.Name, fmt.Sprintf("cluster %s edited: %s", s.Cluster.Name, strings.Join(changed, "; ")))
	return api.EditResult{Changed: changed, Record: n.recordNow(ctx), ClusterIP: next.clusterIP, DNSName: next.dnsName, Replication: next.replication}, nil
}

// moveClusterIP gives up old and takes the state's cluster IP, with its
// announcements.
func (n *Node) moveClusterIP(ctx context.Context, old string) error {
	if err := n.vip.Release(ctx); err != nil {
		n.log.Warn("could not drop the old cluster IP", "cluster_ip", old, "err", err)
	}
	n.setVIPAddress()
	return n.vip.Acquire(ctx)
}

// recordNow is the cluster record as this node reads it now (empty when
// PostgreSQL does not answer).
func (n *Node) recordNow(ctx context.Context) api.Record {
	var rec api.Record
	_ = n.withConn(ctx, func(c *pgx.Conn) error {
		r, err := ReadRecord(ctx, c)
		rec = r
		return err
	})
	return rec
}

// PeerEdit is the secondary's side of an edit: the new values go into its
// state; the monitor and a later promotion act on them.
func (n *Node) PeerEdit(ctx context.Context, req api.EditRequest) error {
	_, err := runOp(n, ctx, OpEdit, byPeer, func(ctx context.Context, _ func(struct{}, error)) (struct{}, error) {
		s := n.State()
		if s.Role != state.RoleSecondary || s.Cluster == nil || s.Cluster.Peer == nil {
			return struct{}{}, conflict("%s is not a secondary (role %s)", n.cfg.Name, s.Role)
		}
		if req.Term != s.Term {
			return struct{}{}, conflict("an edit at term %d asked, but %s is at term %d", req.Term, n.cfg.Name, s.Term)
		}
		next, _, err := valuesOf(s.Cluster).apply(req)
		if err != nil {
			return struct{}{}, err
		}
		if err := n.set(func(st *state.State) { next.set(st.Cluster) }); err != nil {
			return struct{}{}, err
		}
		n.setVIPAddress()
		return struct{}{}, nil
	})
	return err
}
