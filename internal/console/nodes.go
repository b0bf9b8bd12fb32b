package console

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/tandem-ha/tandem/internal/api"
	"github.com/tandem-ha/tandem/internal/valid"
)

// Shared by the commands that reach two nodes or a cached cluster.

// probeTimeout bounds how long one node may take to answer a look, so
// that a node that is gone costs seconds, not the command's whole timeout.
const probeTimeout = 3 * time.Second

// Node roles as the node API reports them, and the console's own word for
// a node it could not ask.
const (
	roleNone       = "none"
	rolePrimary    = "primary"
	roleSecondary  = "secondary"
	roleStandalone = "standalone"
	roleUnknown    = "unknown"
)

// pairFlags are the flags of the commands that name both nodes before a
// cluster exists: assemble and preflight.
type pairFlags struct {
	primary, secondary                   string
	primaryTokenFile, secondaryTokenFile string
	primaryFP, secondaryFP               string
	clusterIP, dnsName, dnsServer        string
	endpoint                             string
}

func (p *pairFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&p.primary, "primary", "", "API address of the node whose database is kept: host, host:port or https://host:port")
	f.StringVar(&p.secondary, "secondary", "", "API address of the node that becomes the hot standby (its database is replaced)")
	f.StringVar(&p.endpoint, "endpoint", endpointVIP, "how clients find the primary: vip (the cluster IP, nodes in one subnet) or dns (no cluster IP: the primary points the DNS name at its node IP with a TSIG-signed update; nodes in different subnets, each with dns_update.* in its tandemd config)")
	f.StringVar(&p.clusterIP, "cluster-ip", "", "the cluster IP with the cluster subnet's prefix length, e.g. 10.0.0.10/24 (not with --endpoint dns)")
	f.StringVar(&p.dnsName, "dns-name", "", "the cluster DNS name, resolving forward and reverse to the cluster IP")
	f.StringVar(&p.dnsServer, "dns-server", "", "DNS server the nodes ask in the preflight (ip or ip:port; default: each node's resolver)")
	f.StringVar(&p.primaryTokenFile, "primary-token-file", "", "file holding the primary's admin token (default: TANDEM_PRIMARY_TOKEN, then the console's tokens)")
	f.StringVar(&p.secondaryTokenFile, "secondary-token-file", "", "file holding the secondary's admin token (default: TANDEM_SECONDARY_TOKEN, then the console's tokens)")
	f.StringVar(&p.primaryFP, "primary-fingerprint", "", "accept the primary, if not pinned yet, only with this certificate fingerprint (default: --fingerprint)")
	f.StringVar(&p.secondaryFP, "secondary-fingerprint", "", "accept the secondary, if not pinned yet, only with this certificate fingerprint (default: --fingerprint)")
}

// pair is the two nodes as resolved from pairFlags, before any contact.
type pair struct {
	primaryAddr, secondaryAddr   string
	primaryToken, secondaryToken string
	primaryFP, secondaryFP       string
	// Set when a node's token is one the console kept under another
	// spelling of that node: it goes only to the certificate pinned there.
	primaryKept, secondaryKept keptToken
	clusterIP                  netip.Prefix // invalid with endpoint dns
	dnsName                    string
	endpoint                   string
}

// Endpoint modes (--endpoint), as the nodes spell them.
const (
	endpointVIP = "vip"
	endpointDNS = "dns"
)

var (
	clusterNameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]*$`)
)

// resolve checks the flags without touching the network and returns every
// problem, as a usage error.
func (p *pairFlags) resolve() (pair, []string) {
	var r pair
	var probs []string
	var err error
	switch {
	case p.primary == "":
		probs = append(probs, "--primary is missing: the API address of the node whose database is kept")
	default:
		if r.primaryAddr, err = NormalizeEndpoint(p.primary); err != nil {
			probs = append(probs, "--primary: "+err.Error())
		}
	}
	switch {
	case p.secondary == "":
		probs = append(probs, "--secondary is missing: the API address of the node that becomes the hot standby")
	default:
		if r.secondaryAddr, err = NormalizeEndpoint(p.secondary); err != nil {
			probs = append(probs, "--secondary: "+err.Error())
		}
	}
	if r.primaryAddr != "" && r.primaryAddr == r.secondaryAddr {
		probs = append(probs, fmt.Sprintf("--primary and --secondary are both %s: name two different nodes", r.primaryAddr))
	}
	// The vip default is sent as "", as from a console before the mode
	// existed, so that a node of that time still takes the request.
	if p.endpoint == endpointDNS {
		r.endpoint = endpointDNS
	}
	switch {
	case p.endpoint == endpointDNS && p.clusterIP != "":
		probs = append(probs, fmt.Sprintf("--cluster-ip %s with --endpoint dns: the DNS name is the endpoint and there is no cluster IP; drop --cluster-ip, or use --endpoint vip", p.clusterIP))
	case p.endpoint == endpointDNS:
	case p.endpoint != endpointVIP:
		probs = append(probs, fmt.Sprintf("--endpoint %q: use vip (a cluster IP, nodes in one subnet) or dns (the DNS name points at the primary, nodes in different subnets)", p.endpoint))
	case p.clusterIP == "":
		probs = append(probs, "--cluster-ip is missing: the cluster IP with its prefix length, e.g. 10.0.0.10/24 (or --endpoint dns, for nodes in different subnets)")
	default:
		if r.clusterIP, err = parseClusterIP(p.clusterIP); err != nil {
			probs = append(probs, err.Error())
		}
	}
	r.dnsName = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(p.dnsName)), ".")
	switch {
	case p.dnsName == "":
		probs = append(probs, "--dns-name is missing: the cluster DNS name, e.g. db.example.net")
	case len(r.dnsName) > 253 || !valid.Name(r.dnsName, true):
		probs = append(probs, fmt.Sprintf("--dns-name %q is not a valid host name, such as db.example.net", p.dnsName))
	}
	if p.dnsServer != "" {
		if _, err := netip.ParseAddr(p.dnsServer); err != nil {
			if _, err := netip.ParseAddrPort(p.dnsServer); err != nil {
				probs = append(probs, fmt.Sprintf("--dns-server %q must be ip or ip:port, e.g. 10.0.0.2 or [fd00::2]:53", p.dnsServer))
			}
		}
	}
	if r.primaryFP, err = parseFingerprint("--primary-fingerprint", p.primaryFP); err != nil {
		probs = append(probs, err.Error())
	}
	if r.secondaryFP, err = parseFingerprint("--secondary-fingerprint", p.secondaryFP); err != nil {
		probs = append(probs, err.Error())
	}
	var toks *Tokens
	if toks, err = LoadTokens(); err != nil {
		probs = append(probs, err.Error())
		toks = &Tokens{ByAddress: map[string]string{}}
	}
	// The cache knows each assembled node's name, IP and address, so a
	// token kept under one spelling is found under another.
	cache, err := LoadCache()
	if err != nil {
		probs = append(probs, err.Error())
	}
	var prob string
	r.primaryToken, r.primaryKept, prob = pairToken("primary", p.primaryTokenFile, "TANDEM_PRIMARY_TOKEN", toks.lookup(cache, r.primaryAddr))
	if prob != "" {
		probs = append(probs, prob)
	}
	r.secondaryToken, r.secondaryKept, prob = pairToken("secondary", p.secondaryTokenFile, "TANDEM_SECONDARY_TOKEN", toks.lookup(cache, r.secondaryAddr))
	if prob != "" {
		probs = append(probs, prob)
	}
	return r, probs
}

// pairToken reads one node's token: its file, else its variable, else what
// the console kept from an earlier assembly (then also returned, to say
// where it was kept).
func pairToken(which, file, env string, kept keptToken) (string, keptToken, string) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", keptToken{}, fmt.Sprintf("while reading --%s-token-file: %v", which, err)
		}
		if t := strings.TrimSpace(string(b)); t != "" {
			return t, keptToken{}, ""
		}
		return "", keptToken{}, fmt.Sprintf("--%s-token-file %s is empty", which, file)
	}
	if t := strings.TrimSpace(os.Getenv(env)); t != "" {
		return t, keptToken{}, ""
	}
	if kept.token != "" {
		return kept.token, kept, ""
	}
	return "", keptToken{}, fmt.Sprintf("no admin token for the %s: pass --%s-token-file or set %s (the token is in that node's state dir, file admin-token)", which, which, env)
}

func parseClusterIP(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(strings.TrimSpace(s))
	if err != nil {
		return p, fmt.Errorf("--cluster-ip %q must be an address with the cluster subnet's prefix length, such as 10.0.0.10/24", s)
	}
	a := p.Addr()
	switch {
	case a.Zone() != "":
		return p, fmt.Errorf("--cluster-ip %q: leave out the zone", s)
	case a.IsUnspecified() || a.IsLoopback() || a.IsMulticast() || a.IsLinkLocalUnicast():
		return p, fmt.Errorf("--cluster-ip %q is not a unicast address other hosts can reach", s)
	case p.Bits() == 0 || p.Bits() >= a.BitLen()-1:
		return p, fmt.Errorf("--cluster-ip %q: the prefix length is the cluster subnet's, such as /24; /%d names no subnet", s, p.Bits())
	case p.Masked().Addr() == a:
		return p, fmt.Errorf("--cluster-ip %q is the subnet's network address; pick a free host address in it", s)
	case a.Is4() && a == lastAddr(p):
		return p, fmt.Errorf("--cluster-ip %q is the subnet's broadcast address; pick a free host address in it", s)
	}
	return p, nil
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// pairClients are both nodes after contact.
type pairClients struct {
	p, s         *Client
	pInfo, sInfo api.NodeInfo
}

// dialPair reaches both nodes, one after the other so that trust questions
// do not interleave, and asks each who it is.
func dialPair(ctx context.Context, tr *trust, r pair) (*pairClients, error) {
	dial := func(which, addr, token, fp string, kept keptToken) (*Client, error) {
		want := fp
		if want == "" {
			want = tr.fingerprint
		}
		if want == "" {
			want = kept.pin
		}
		c, err := dialWant(ctx, addr, token, tr, want)
		switch {
		case err == nil:
			return c, nil
		case kept.under != "" && want == kept.pin && ExitCode(err) == ExitRefused:
			return nil, fmt.Errorf("%s: the console kept this node's token under %s, so %s must present the certificate pinned there: %w", which, kept.under, addr, err)
		}
		return nil, fmt.Errorf("%s: %w", which, err)
	}
	var pc pairClients
	var err error
	if pc.p, err = dial("primary", r.primaryAddr, r.primaryToken, r.primaryFP, r.primaryKept); err != nil {
		return nil, err
	}
	if pc.s, err = dial("secondary", r.secondaryAddr, r.secondaryToken, r.secondaryFP, r.secondaryKept); err != nil {
		return nil, err
	}
	if err := pc.p.Get(ctx, "/v1/node", &pc.pInfo); err != nil {
		return nil, fmt.Errorf("primary: %w", err)
	}
	if err := pc.s.Get(ctx, "/v1/node", &pc.sInfo); err != nil {
		return nil, fmt.Errorf("secondary: %w", err)
	}
	if pc.pInfo.Fingerprint != "" && pc.pInfo.Fingerprint == pc.sInfo.Fingerprint {
		return nil, exitf(ExitUsage, "%s and %s are the same node (%s, certificate %s): name two different nodes", r.primaryAddr, r.secondaryAddr, pc.pInfo.Name, pc.pInfo.Fingerprint)
	}
	return &pc, nil
}

// member is a node as its peer needs to know it for the preflight.
func member(n api.NodeInfo) api.Member {
	return api.Member{Name: n.Name, IP: n.IP, APIPort: n.APIPort, PGPort: n.Postgres.Port, Fingerprint: n.Fingerprint}
}

// pickCluster returns the cached cluster named by --cluster, or the only
// one.
func pickCluster(c *Cache, name string) (string, CachedCluster, error) {
	if name != "" {
		cc, ok := c.Clusters[name]
		if !ok {
			known := "none"
			if len(c.Clusters) > 0 {
				known = strings.Join(c.ClusterNames(), ", ")
			}
			return "", cc, exitf(ExitUsage, "--cluster %q is not in the console's cache (known: %s)", name, known)
		}
		return name, cc, nil
	}
	switch len(c.Clusters) {
	case 0:
		return "", CachedCluster{}, exitf(ExitUsage, "this console knows no cluster: pass --endpoint with a node's address (and its token), or assemble one with `tandem assemble`")
	case 1:
		for n, cc := range c.Clusters {
			return n, cc, nil
		}
	}
	return "", CachedCluster{}, exitf(ExitUsage, "this console knows several clusters (%s): choose one with --cluster NAME", strings.Join(c.ClusterNames(), ", "))
}

// probe is one cached node as a look at it found it.
type probe struct {
	node  CachedNode
	view  api.ClusterView
	c     *Client
	err   error
	viewd bool // /v1/cluster answered (an older tandemd answers only /v1/node)
	// dialed is how long the TCP connection and TLS handshake took: about
	// two round trips from this console to the node.
	dialed time.Duration
}

func (p *probe) reachable() bool { return p.err == nil }

// probeNodes asks every node of a cached cluster for its view of the
// cluster, all at once, each bounded by probeTimeout.
func probeNodes(ctx context.Context, tr *trust, toks *Tokens, nodes []CachedNode) []*probe {
	out := make([]*probe, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		out[i] = &probe{node: n}
		wg.Go(func() { out[i].look(ctx, tr, toks) })
	}
	wg.Wait()
	return out
}

// look asks p's node for its view, bounded by probeTimeout.
func (p *probe) look(ctx context.Context, tr *trust, toks *Tokens) {
	n := p.node
	tok := toks.ByAddress[n.Address]
	if tok == "" {
		p.err = exitf(ExitRefused, "the console has no admin token for %s (%s): it keeps the tokens given at `tandem assemble`", n.Name, n.Address)
		return
	}
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	start := time.Now()
	p.c, p.err = Dial(pctx, n.Address, tok, tr)
	p.dialed = time.Since(start)
	if p.err == nil {
		p.viewd, p.err = fetchView(pctx, p.c, &p.view)
	}
}

// fetchView asks a node for GET /v1/cluster, falling back to GET /v1/node
// for a tandemd that predates clusters.
func fetchView(ctx context.Context, c *Client, v *api.ClusterView) (bool, error) {
	err := c.Get(ctx, "/v1/cluster", v)
	if notFound(err) {
		return false, c.Get(ctx, "/v1/node", &v.Node)
	}
	return err == nil, err
}

// primaryOf returns the reachable node that says it is primary, at the
// highest term; nil when none does.
func primaryOf(ps []*probe) *probe {
	var best *probe
	for _, p := range ps {
		if p.reachable() && p.view.Node.Role == rolePrimary && (best == nil || p.view.Node.Term > best.view.Node.Term) {
			best = p
		}
	}
	return best
}

// primaryAndOther is primaryOf and the other node's probe (nil when the
// cluster has no second node, or no primary answered).
func primaryAndOther(ps []*probe) (primary, other *probe) {
	primary = primaryOf(ps)
	if primary == nil {
		return nil, nil
	}
	for _, p := range ps {
		if p != primary {
			other = p
		}
	}
	return primary, other
}

// remember writes what the probes saw into the cached cluster: roles, when
// each node was last seen, the highest term and its primary.
func remember(c *Cache, name string, ps []*probe, now time.Time) error {
	cc, ok := c.Clusters[name]
	if !ok {
		return nil
	}
	for i := range cc.Nodes {
		for _, p := range ps {
			if p.reachable() && p.node.Address == cc.Nodes[i].Address {
				cc.Nodes[i].Role = p.view.Node.Role
				cc.Nodes[i].LastSeen = now
				c.settleRotation(p.node.Address, p.view.Node.Fingerprint, p.view.Node.NextFingerprint)
				if p.view.Node.IP != "" {
					cc.Nodes[i].IP = p.view.Node.IP
				}
			}
		}
	}
	for _, p := range ps {
		if !p.reachable() {
			continue
		}
		if r := p.view.Record; r != nil && r.Term >= cc.Term {
			cc.Term, cc.Primary, cc.Replication = r.Term, r.Primary, r.Replication
		}
		if p.view.Node.Role == rolePrimary && p.view.Node.Term >= cc.Term {
			cc.Term, cc.Primary = p.view.Node.Term, p.view.Node.Name
		}
	}
	cc.UpdatedAt = now
	c.Clusters[name] = cc
	return c.Save()
}

// rememberNode updates the cached cluster, if any, that holds the node a
// single-node look saw.
func rememberNode(c *Cache, addr string, n api.NodeInfo, now time.Time) error {
	changed := c.settleRotation(addr, n.Fingerprint, n.NextFingerprint)
	cc, ok := c.Clusters[n.Cluster]
	if n.Cluster == "" || !ok {
		if changed {
			return c.Save()
		}
		return nil
	}
	for i := range cc.Nodes {
		if cc.Nodes[i].Address == addr || cc.Nodes[i].Name == n.Name {
			cc.Nodes[i].Role, cc.Nodes[i].LastSeen = n.Role, now
			changed = true
		}
	}
	if n.Role == rolePrimary && n.Term >= cc.Term {
		cc.Term, cc.Primary = n.Term, n.Name
	}
	if !changed {
		return nil
	}
	cc.UpdatedAt = now
	c.Clusters[n.Cluster] = cc
	return c.Save()
}

// peerAddress finds how to reach a node's peer: the address the cache has
// for it (where its pin and token are), else its IP and API port.
func peerAddress(c *Cache, cluster string, m api.Member) string {
	if cc, ok := c.Clusters[cluster]; ok {
		for _, n := range cc.Nodes {
			if n.Name == m.Name {
				return n.Address
			}
		}
	}
	if m.IP == "" || m.APIPort == 0 {
		return ""
	}
	return net.JoinHostPort(m.IP, fmt.Sprint(m.APIPort))
}

// confirmOrRefuse asks the operator to confirm on a terminal; off a
// terminal only --yes confirms.
func confirmOrRefuse(tr *trust, yes bool, question string) error {
	if yes {
		return nil
	}
	if !tr.interactive {
		return exitf(ExitUsage, "not confirmed: this console is not on a terminal, so it cannot ask; pass --yes to confirm in scripts. Nothing was changed")
	}
	if !tr.confirm(question) {
		return exitf(ExitFailure, "not confirmed; nothing was changed")
	}
	return nil
}

// clusterIPText is the cluster IP as the nodes take it: "" with endpoint dns.
func (r pair) clusterIPText() string {
	if !r.clusterIP.IsValid() {
		return ""
	}
	return r.clusterIP.String()
}
