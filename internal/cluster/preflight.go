package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/tandem-ha/tandem/internal/api"
	"github.com/tandem-ha/tandem/internal/dnscheck"
	"github.com/tandem-ha/tandem/internal/dnsupdate"
)

// Preflight runs the network checks from this node's point of view: its
// resolver, its interfaces, its path to the peer.
func (n *Node) Preflight(ctx context.Context, req api.PreflightRequest) (api.PreflightResult, error) {
	var p []string
	dnsEndpoint := req.Endpoint == EndpointDNS
	prefix, err := netip.ParsePrefix(req.ClusterIP)
	switch {
	case dnsEndpoint && req.ClusterIP != "":
		p = append(p, fmt.Sprintf("endpoint dns has no cluster IP, but cluster IP %s was given", req.ClusterIP))
	case !dnsEndpoint && err != nil:
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
		Self:        dnscheck.Node{Name: n.cfg.Name, IP: selfIP, APIPort: n.cfg.APIPort, PostgresPort: n.cfg.PGPort},
		Peer:        dnscheck.Node{Name: req.Peer.Name, IP: peerIP, APIPort: req.Peer.APIPort, PostgresPort: req.Peer.PGPort},
		ClusterIP:   prefix,
		DNSName:     req.DNSName,
		DNSServer:   req.DNSServer,
		NoClusterIP: dnsEndpoint,
	}
	// The primary of this very cluster holds the address already; probing
	// would only find ourselves (or, worse, report our own address as a
	// conflict), so the probe runs only while the address is not ours.
	s := n.State()
	selfHolds := s.Cluster != nil && s.Cluster.ClusterIP == req.ClusterIP && n.vip.Status().Held
	if !selfHolds && !dnsEndpoint {
		in.Prober = func(ctx context.Context, ip netip.Addr) (string, bool, error) {
			return n.vip.Probe(ctx, prefix)
		}
	}
	var dnsRes dnscheck.Result
	var wg sync.WaitGroup
	if dnsEndpoint {
		wg.Go(func() { dnsRes = n.checkDNSUpdate(ctx, req.DNSName) })
	}
	rs := dnscheck.Run(ctx, in)
	wg.Wait()
	if dnsEndpoint {
		rs = append(rs, dnsRes)
	} else {
		n.acceptOwnClusterIP(ctx, rs, prefix, req.Peer.Name, peerIP, selfHolds)
	}
	return api.PreflightResult{Node: n.cfg.Name, Checks: rs, Problems: dnscheck.Problems(rs)}, nil
}

// IDDNSUpdate is the preflight check of a DNS-endpoint cluster that this
// node can point the name at itself: its dns_update settings, the zone's
// primary server answering, and the TSIG key accepted.
const IDDNSUpdate = "dns_update"

// checkDNSUpdate proves the key with dnsupdate.CheckKey: a signed update
// whose prerequisite fails on purpose, so the zone is not changed.
func (n *Node) checkDNSUpdate(ctx context.Context, name string) dnscheck.Result {
	res := dnscheck.Result{ID: IDDNSUpdate, Title: "this node can update the cluster DNS name (zone primary server reachable, TSIG key accepted)"}
	up := n.cfg.DNSUpdater
	fail := func(detail, fix string) dnscheck.Result {
		res.Status, res.Detail, res.Fix = dnscheck.StatusProblem, detail, fix
		return res
	}
	if up == nil {
		return fail("no dns_update settings in this node's tandemd config",
			"set dns_update.server, dns_update.zone, dns_update.key_name and dns_update.secret_file in tandemd's config on "+n.cfg.Name+" and restart tandemd (docs/config.md)")
	}
	res.Title = fmt.Sprintf("%s can update %s at %s", n.cfg.Name, name, up.Server())
	if err := up.InZone(name); err != nil {
		return fail(err.Error(), fmt.Sprintf("set dns_update.zone on %s to the zone that holds %s, or choose a cluster DNS name in zone %s", n.cfg.Name, name, up.Zone()))
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := up.CheckKey(cctx); err != nil {
		fix := "see the detail; the server's log says more"
		switch {
		case errors.Is(err, dnsupdate.ErrNoAnswer):
			fix = fmt.Sprintf("make the zone's primary server %s reachable from %s (UDP and TCP port 53), or correct dns_update.server", up.Server(), n.cfg.Name)
		case errors.Is(err, dnsupdate.ErrKeyRefused):
			fix = fmt.Sprintf("give %s the key the server knows: dns_update.key_name, dns_update.algorithm and the secret in dns_update.secret_file must match the server's key statement", n.cfg.Name)
		case errors.Is(err, dnsupdate.ErrClock):
			fix = fmt.Sprintf("synchronise the clocks of %s and the DNS server (NTP): TSIG allows 5 minutes", n.cfg.Name)
		case errors.Is(err, dnsupdate.ErrUpdateRefused):
			fix = fmt.Sprintf("let the key update zone %s on the server (BIND: allow-update { key ...; } or update-policy)", up.Zone())
		case errors.Is(err, dnsupdate.ErrNotAuth), errors.Is(err, dnsupdate.ErrNotZone):
			fix = fmt.Sprintf("point dns_update.server at the primary server of zone %s", up.Zone())
		}
		return fail(err.Error(), fix)
	}
	res.Status, res.Detail = dnscheck.StatusOK, fmt.Sprintf("%s accepted a signed update, one whose prerequisite fails on purpose so that nothing changed (%s)", up.Server(), up)
	return res
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
	mine, err := n.Preflight(ctx, api.PreflightRequest{Peer: secondary, ClusterIP: req.ClusterIP, DNSName: req.DNSName, Endpoint: req.Endpoint})
	if err != nil {
		return err
	}
	var theirs api.PreflightResult
	if err := sec.do(ctx, http.MethodPost, path, api.PreflightRequest{Peer: n.self(""), ClusterIP: req.ClusterIP, DNSName: req.DNSName, Endpoint: req.Endpoint}, &theirs); err != nil {
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
