package cluster

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/tandem-ha/tandem/internal/api"
	"github.com/tandem-ha/tandem/internal/dnscheck"
)

// Preflight runs the network checks from this node's point of view: its
// resolver, its interfaces, its path to the peer.
func (n *Node) Preflight(ctx context.Context, req api.PreflightRequest) (api.PreflightResult, error) {
	var p []string
	prefix, err := netip.ParsePrefix(req.ClusterIP)
	if err != nil {
		p = append(p, fmt.Sprintf("cluster IP %q must be an address with its prefix length, such as 10.0.0.10/24", req.ClusterIP))
	}
	peerIP, err := netip.ParseAddr(req.Peer.IP)
	if err != nil {
		p = append(p, fmt.Sprintf("peer IP %q is not an IP address", req.Peer.IP))
	}
	selfIP, _ := netip.ParseAddr(n.cfg.IP)
	if req.DNSName == "" {
		p = append(p, "the cluster DNS name is missing")
	}
	if len(p) > 0 {
		return api.PreflightResult{}, badRequest("%s", strings.Join(p, "; "))
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	in := dnscheck.Input{
		Self:      dnscheck.Node{Name: n.cfg.Name, IP: selfIP, APIPort: n.cfg.APIPort, PostgresPort: n.cfg.PGPort},
		Peer:      dnscheck.Node{Name: req.Peer.Name, IP: peerIP, APIPort: req.Peer.APIPort, PostgresPort: req.Peer.PGPort},
		ClusterIP: prefix,
		DNSName:   req.DNSName,
		DNSServer: req.DNSServer,
	}
	// The primary of this very cluster holds the address already; probing
	// would only find ourselves (or, worse, report our own address as a
	// conflict), so the probe runs only while the address is not ours.
	s := n.State()
	selfHolds := s.Cluster != nil && s.Cluster.ClusterIP == req.ClusterIP && n.vip.Status().Held
	if !selfHolds {
		in.Prober = func(ctx context.Context, ip netip.Addr) (string, bool, error) {
			return n.vip.Probe(ctx, prefix)
		}
	}
	rs := dnscheck.Run(ctx, in)
	n.acceptOwnClusterIP(ctx, rs, prefix, req.Peer.Name, peerIP, selfHolds)
	return api.PreflightResult{Node: n.cfg.Name, Checks: rs, Problems: dnscheck.Problems(rs)}, nil
}

// acceptOwnClusterIP passes the "cluster IP not in use" check when the
// address is in use by the cluster's own primary rather than by a stranger:
// a standalone primary (a disassembled cluster's) keeps the cluster IP and
// may be assembled again. On that node the address is on its own
// interface (selfHolds); on the peer, the probe finds the primary's MAC,
// which is confirmed by probing the primary's node IP.
func (n *Node) acceptOwnClusterIP(ctx context.Context, rs []dnscheck.Result, prefix netip.Prefix, peerName string, peerIP netip.Addr, selfHolds bool) {
	for i, r := range rs {
		if r.ID != dnscheck.IDClusterIPFree || r.Status != dnscheck.StatusProblem {
			continue
		}
		if selfHolds {
			rs[i] = dnscheck.Result{ID: r.ID, Title: r.Title, Status: dnscheck.StatusOK,
				Detail: fmt.Sprintf("%s is held by this node, %s, as its cluster IP already; it keeps it as the primary", prefix.Addr(), n.cfg.Name)}
			continue
		}
		holder, inUse, err := n.vip.Probe(ctx, prefix)
		if err != nil || !inUse || holder == "" {
			continue
		}
		peerMAC, up, err := n.vip.Probe(ctx, netip.PrefixFrom(peerIP, prefix.Bits()))
		if err != nil || !up || !strings.EqualFold(peerMAC, holder) {
			continue
		}
		rs[i] = dnscheck.Result{ID: r.ID, Title: r.Title, Status: dnscheck.StatusOK,
			Detail: fmt.Sprintf("%s is answered by the peer %s itself (MAC %s, the same as its node IP %s): it holds the cluster IP already", prefix.Addr(), peerName, holder, peerIP)}
	}
}

// preflightBoth runs the checks here and on the secondary and refuses the
// assembly on any problem, listing them all.
func (n *Node) preflightBoth(ctx context.Context, req api.AssembleRequest, secondary api.Member, sec *peerClient) error {
	return n.preflightBothAt(ctx, req, secondary, sec, "/v1/preflight")
}

// preflightBothAt is preflightBoth asking the other node at path: the
// admin token's /v1/preflight at assembly, /v1/peer/preflight (the peer's
// certificate) once the two are a cluster.
func (n *Node) preflightBothAt(ctx context.Context, req api.AssembleRequest, secondary api.Member, sec *peerClient, path string) error {
	mine, err := n.Preflight(ctx, api.PreflightRequest{Peer: secondary, ClusterIP: req.ClusterIP, DNSName: req.DNSName})
	if err != nil {
		return err
	}
	var theirs api.PreflightResult
	if err := sec.do(ctx, http.MethodPost, path, api.PreflightRequest{Peer: n.self(""), ClusterIP: req.ClusterIP, DNSName: req.DNSName}, &theirs); err != nil {
		return fmt.Errorf("while running the preflight on the secondary: %w", err)
	}
	var p []string
	for _, r := range []api.PreflightResult{mine, theirs} {
		for _, c := range r.Checks {
			if c.Status == dnscheck.StatusProblem {
				p = append(p, fmt.Sprintf("[%s] %s: %s (fix: %s)", r.Node, c.Title, c.Detail, c.Fix))
			}
		}
	}
	if len(p) > 0 {
		return badRequest("preflight found %d problem(s); nothing was changed. Fix them, or pass --skip-preflight:\n%s", len(p), strings.Join(p, "\n"))
	}
	return nil
}
