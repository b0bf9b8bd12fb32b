package console

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tandem-ha/tandem/internal/api"
	"github.com/tandem-ha/tandem/internal/config"
	"github.com/tandem-ha/tandem/internal/identity"
	"github.com/tandem-ha/tandem/internal/version"
)

// NodeStatus is one node as the console saw it. An unreachable node is
// listed all the same, with what the cache knows of it and role "unknown".
type NodeStatus struct {
	Address   string `json:"address"`
	Reachable bool   `json:"reachable"`
	Error     string `json:"error,omitempty"`
	// LastKnownRole and LastSeen come from the cache, for a node that did
	// not answer now.
	LastKnownRole string     `json:"last_known_role,omitempty"`
	LastSeen      *time.Time `json:"last_seen,omitempty"`
	api.NodeInfo
	// Replication and ClusterIP are as this node sees them.
	Replication *api.ReplicationInfo `json:"replication,omitempty"`
	ClusterIP   *api.ClusterIPInfo   `json:"cluster_ip,omitempty"`
}

// ClusterStatus is the cluster as the console pieced it together from
// what both nodes said (and, failing them, from its cache).
type ClusterStatus struct {
	Name         string `json:"name"`
	State        string `json:"state,omitempty"` // assembled or standalone, from the record
	Term         int64  `json:"term"`            // the highest term seen
	Primary      string `json:"primary"`
	ClusterIP    string `json:"cluster_ip"`
	DNSName      string `json:"dns_name"`
	Replication  string `json:"replication"`
	Synchronized bool   `json:"synchronized"`
	// Degraded: a node did not answer, or the secondary does not stream.
	Degraded bool `json:"degraded"`
	// RecordFrom names the node whose copy of the cluster record is shown
	// (the primary's when it answers), or "cache" when no node answered.
	RecordFrom string `json:"record_from"`
	// ClusterIPAnswer and DNSNameAnswer say which node answers on the
	// cluster IP and the DNS name, as told by its certificate.
	ClusterIPAnswer *EndpointAnswer `json:"cluster_ip_answer,omitempty"`
	DNSNameAnswer   *EndpointAnswer `json:"dns_name_answer,omitempty"`
	// Endpoint is how clients find the primary: vip (the cluster IP) or
	// dns (the DNS name, pointed at the primary's node IP); DNS says more
	// in dns mode.
	Endpoint string         `json:"endpoint"`
	DNS      *DNSNameStatus `json:"dns,omitempty"`
}

// DNSNameStatus is the cluster DNS name of a DNS-endpoint cluster: what
// this console's resolver answers, what the zone's primary server answers
// (asked by a node, the primary's answer first), its TTL, and whether the
// primary's update is stale.
type DNSNameStatus struct {
	Name          string   `json:"name"`
	Resolver      []string `json:"resolver"`
	ResolverError string   `json:"resolver_error,omitempty"`
	// Authority is the zone server's answer as node AskedBy got it.
	Server         string     `json:"server,omitempty"`
	Authority      []string   `json:"authority"`
	AuthorityError string     `json:"authority_error,omitempty"`
	AskedBy        string     `json:"asked_by,omitempty"`
	TTL            int        `json:"ttl_seconds"`
	StaleSince     *time.Time `json:"stale_since,omitempty"`
	Error          string     `json:"error,omitempty"`
}

// EndpointAnswer is who answered on an address that either node may hold.
type EndpointAnswer struct {
	Address   string `json:"address"`
	Reachable bool   `json:"reachable"`
	Node      string `json:"node,omitempty"`
	Error     string `json:"error,omitempty"`
}

// StatusOutput is `tandem status -o json`.
type StatusOutput struct {
	Cluster  *ClusterStatus `json:"cluster,omitempty"`
	Nodes    []NodeStatus   `json:"nodes"`
	Warnings []string       `json:"warnings,omitempty"`
}

// NewStatusCommand shows a cluster, or one node.
func NewStatusCommand(g *globals) *cobra.Command {
	var (
		cluster  string
		watch    bool
		interval time.Duration
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the cluster and both nodes: roles, term, PostgreSQL, replication, cluster IP",
		Long: `Show the cluster this console knows (the only one in its cache, or --cluster
NAME): its name, term, primary, cluster IP, DNS name and replication mode,
and each node as it sees itself: role, PostgreSQL state and WAL position,
replication state and lag, WAL kept for the secondary, whether it holds the
cluster IP. Both nodes are asked at once, a few seconds each; a node that
does not answer is still listed, from the cache, with role "unknown". The
console also checks which node answers on the cluster IP and DNS name.

The failover line says what the cluster's mode promises. manual: nothing
promotes by itself; when the primary is gone an operator runs 'tandem
failover'. automatic: only the holder of the leader key (in the etcd quorum
of both nodes and the witness) may be primary; it fences itself when it
cannot renew its lease in time, and the secondary promotes by itself once
the lease is gone, if it holds every acknowledged commit. Status shows who
holds the key, each quorum member's health, what the sync record names,
and whether the secondary would fail over by itself (and if not, why).

With --endpoint, show that node (token from --token-file, TANDEM_TOKEN or
the console's tokens), and its peer too when the console has its token.

--watch shows it again every --interval until interrupted: a second console
can follow a long operation (assembly, re-seed, rejoin) with its phase and
bytes copied.

Exit status: 0 when at least one node answered, 3 when none could be
reached, 4 when certificates or tokens were refused.`,
		Example: `  tandem status
  tandem status --cluster db.example.net -o json
  TANDEM_TOKEN=$(cat /var/lib/tandem/state/admin-token) tandem status --endpoint 10.0.0.11`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := g.validateOutput(); err != nil {
				return err
			}
			once := func() error {
				if g.endpoint != "" {
					return statusOfEndpoint(cmd, g)
				}
				return statusOfCluster(cmd, g, cluster)
			}
			if !watch {
				return once()
			}
			if interval < 100*time.Millisecond {
				return exitf(ExitUsage, "--interval %s is too short; use 100ms or more", interval)
			}
			out := cmd.OutOrStdout()
			f, isFile := out.(*os.File)
			clear := isFile && isTerminal(f) && g.output == "table"
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			for {
				if clear {
					fmt.Fprint(out, "\033[H\033[2J")
				}
				if g.output == "table" {
					fmt.Fprintf(out, "%s (every %s; Ctrl-C to stop)\n", time.Now().Format("15:04:05"), interval)
				}
				if err := once(); err != nil && ExitCode(err) != ExitUnreachable {
					return err
				} else if err != nil {
					fmt.Fprintln(cmd.ErrOrStderr(), "tandem:", err)
				}
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(interval):
				}
			}
		},
	}
	cmd.Flags().StringVar(&cluster, "cluster", "", "which cached cluster to show, when the console knows several")
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "show the status again every --interval until interrupted")
	cmd.Flags().DurationVar(&interval, "interval", 2*time.Second, "how often --watch refreshes")
	return cmd
}

// endpointToken is the token for a single node: --token-file or
// TANDEM_TOKEN first, else what the console kept for that address.
func (g *globals) endpointToken(addr string) (string, error) {
	tok, err := g.token()
	if err != nil || tok != "" {
		return tok, err
	}
	toks, err := LoadTokens()
	if err != nil {
		return "", err
	}
	if tok = toks.ByAddress[addr]; tok == "" {
		return "", exitf(ExitUsage, "no admin token for %s: set TANDEM_TOKEN or pass --token-file (the token is in the node's state dir, file admin-token)", addr)
	}
	return tok, nil
}

func statusOfEndpoint(cmd *cobra.Command, g *globals) error {
	addr, err := NormalizeEndpoint(g.endpoint)
	if err != nil {
		return exitf(ExitUsage, "%v", err)
	}
	token, err := g.endpointToken(addr)
	if err != nil {
		return err
	}
	tr, err := g.trust(cmd)
	if err != nil {
		return err
	}
	ctx, cancel := g.context(cmd.Context())
	defer cancel()

	p := &probe{node: CachedNode{Address: addr}}
	p.c, p.err = Dial(ctx, addr, token, tr)
	if p.err == nil {
		p.viewd, p.err = fetchView(ctx, p.c, &p.view)
	}
	if p.err != nil && ExitCode(p.err) != ExitUnreachable {
		return p.err
	}
	probes := []*probe{p}
	now := time.Now().UTC()
	if p.reachable() {
		if err := rememberNode(tr.cache, addr, p.view.Node, now); err != nil {
			return err
		}
		if peer := peerProbe(ctx, tr, p); peer != nil {
			probes = append(probes, peer)
			if peer.reachable() {
				if err := rememberNode(tr.cache, peer.node.Address, peer.view.Node, now); err != nil {
					return err
				}
			}
		}
	}
	out := StatusOutput{}
	for _, q := range probes {
		out.Nodes = append(out.Nodes, nodeStatus(q))
	}
	if p.reachable() && p.view.Record != nil {
		out.Cluster = summarize(p.view.Record.Name, tr.cache.Clusters[p.view.Record.Name], probes, &out)
	}
	if err := printStatus(cmd.OutOrStdout(), g.output, out); err != nil {
		return err
	}
	if !p.reachable() {
		return &ExitError{Code: ExitUnreachable, Err: p.err}
	}
	return nil
}

// peerProbe asks the peer of a node that reports a cluster, when the
// console holds the peer's token; nil otherwise.
func peerProbe(ctx context.Context, tr *trust, p *probe) *probe {
	m := p.view.Peer
	if m == nil || p.view.Node.Cluster == "" {
		return nil
	}
	tr.mu.Lock()
	addr := peerAddress(tr.cache, p.view.Node.Cluster, *m)
	tr.mu.Unlock()
	toks, err := LoadTokens()
	if err != nil || addr == "" || toks.ByAddress[addr] == "" {
		return nil
	}
	q := &probe{node: CachedNode{Name: m.Name, IP: m.IP, Address: addr}}
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	// The node we trust vouches for its peer's certificate: it pinned it
	// itself at assembly.
	q.c, q.err = dialWant(pctx, addr, toks.ByAddress[addr], tr, m.Fingerprint)
	if q.err == nil {
		q.viewd, q.err = fetchView(pctx, q.c, &q.view)
	}
	return q
}

func statusOfCluster(cmd *cobra.Command, g *globals, name string) error {
	tr, err := g.trust(cmd)
	if err != nil {
		return err
	}
	name, cc, err := pickCluster(tr.cache, name)
	if err != nil {
		return err
	}
	toks, err := LoadTokens()
	if err != nil {
		return err
	}
	ctx, cancel := g.context(cmd.Context())
	defer cancel()

	// Both nodes, the cluster IP and the DNS name, all at once.
	var probes []*probe
	var ipAnswer, dnsAnswer *EndpointAnswer
	known := knownFingerprints(tr, cc)
	port := apiPortOf(cc)
	var wg sync.WaitGroup
	wg.Go(func() { probes = probeNodes(ctx, tr, toks, cc.Nodes) })
	if pfx, err := netip.ParsePrefix(cc.ClusterIP); err == nil {
		wg.Go(func() { ipAnswer = identify(ctx, net.JoinHostPort(pfx.Addr().String(), port), known) })
	}
	if cc.DNSName != "" {
		wg.Go(func() { dnsAnswer = identify(ctx, net.JoinHostPort(cc.DNSName, port), known) })
	}
	var resolved []string
	var resolveErr error
	if cc.DNSName != "" && cc.ClusterIP == "" {
		// A DNS-endpoint cluster: what this console's own resolver says.
		wg.Go(func() {
			rctx, rcancel := context.WithTimeout(ctx, probeTimeout)
			defer rcancel()
			resolved, resolveErr = net.DefaultResolver.LookupHost(rctx, cc.DNSName)
		})
	}
	wg.Wait()

	out := StatusOutput{}
	for _, p := range probes {
		out.Nodes = append(out.Nodes, nodeStatus(p))
	}
	out.Cluster = summarize(name, cc, probes, &out)
	out.Cluster.ClusterIPAnswer, out.Cluster.DNSNameAnswer = ipAnswer, dnsAnswer
	if out.Cluster.Endpoint == endpointDNS {
		out.Cluster.DNS = dnsNameStatus(out.Cluster.DNSName, probes, resolved, resolveErr)
		if d := out.Cluster.DNS; d.StaleSince != nil {
			out.Warnings = append(out.Warnings, fmt.Sprintf("the cluster DNS name %s is STALE since %s: the primary's update has not landed (%s); it is retried until it does", d.Name, d.StaleSince.Local().Format("2006-01-02 15:04:05"), dash(d.Error)))
		}
	}
	if ipAnswer != nil && ipAnswer.Reachable && ipAnswer.Node != "" && out.Cluster.Primary != "" && ipAnswer.Node != out.Cluster.Primary {
		out.Warnings = append(out.Warnings, fmt.Sprintf("the cluster IP is answered by %s, but the primary is %s", ipAnswer.Node, out.Cluster.Primary))
	}
	if err := remember(tr.cache, name, probes, time.Now().UTC()); err != nil {
		return err
	}
	if err := printStatus(cmd.OutOrStdout(), g.output, out); err != nil {
		return err
	}
	for _, p := range probes {
		if p.reachable() {
			return nil
		}
	}
	return noneAnswered(name, probes)
}

func nodeStatus(p *probe) NodeStatus {
	ns := NodeStatus{Address: p.node.Address}
	if p.reachable() {
		ns.Reachable = true
		ns.NodeInfo = p.view.Node
		ns.Replication = p.view.Replication
		if p.viewd {
			ci := p.view.ClusterIP
			ns.ClusterIP = &ci
		}
		return ns
	}
	ns.Error = p.err.Error()
	ns.Name, ns.IP = p.node.Name, p.node.IP
	ns.Role = roleUnknown
	ns.LastKnownRole = p.node.Role
	if !p.node.LastSeen.IsZero() {
		t := p.node.LastSeen
		ns.LastSeen = &t
	}
	return ns
}

// summarize pieces the cluster together: the record of the highest term
// (the primary's copy on a tie), the highest term any node reports, the
// node that says it is primary; the cache fills what no node said.
func summarize(name string, cc CachedCluster, ps []*probe, out *StatusOutput) *ClusterStatus {
	cs := &ClusterStatus{Name: name, Term: cc.Term, Primary: cc.Primary, ClusterIP: cc.ClusterIP, DNSName: cc.DNSName, Replication: cc.Replication, RecordFrom: "cache"}
	defer func() {
		// The record keeps no mode of its own: a cluster without a
		// cluster IP is one whose endpoint is its DNS name.
		cs.Endpoint = endpointVIP
		if cs.ClusterIP == "" {
			cs.Endpoint = endpointDNS
		}
	}()
	var rec *api.Record
	var from *probe
	live := false
	var term int64
	var primaries []string
	for _, p := range ps {
		if !p.reachable() {
			cs.Degraded = true
			continue
		}
		if r := p.view.Replication; r != nil && r.State != "" && r.State != "streaming" {
			cs.Degraded = true
		}
		n := p.view.Node
		if !live || n.Term > term {
			term = n.Term
		}
		live = true
		if n.Role == rolePrimary {
			primaries = append(primaries, fmt.Sprintf("%s (term %d)", n.Name, n.Term))
		}
		r := p.view.Record
		if r == nil {
			continue
		}
		if rec == nil || r.Term > rec.Term || (r.Term == rec.Term && n.Role == rolePrimary) {
			rec, from = r, p
		}
	}
	if rec != nil {
		cs.Name, cs.State, cs.Primary = rec.Name, rec.State, rec.Primary
		cs.ClusterIP, cs.DNSName, cs.Replication, cs.Synchronized = rec.ClusterIP, rec.DNSName, rec.Replication, rec.Synchronized
		cs.RecordFrom = from.view.Node.Name
		if rec.Term > term {
			term = rec.Term
		}
		if from.view.Node.Role != rolePrimary {
			cs.RecordFrom += " (replicated copy)"
		}
	}
	if live {
		cs.Term = term
	}
	if p := primaryOf(ps); p != nil {
		cs.Primary = p.view.Node.Name
	} else if live && len(ps) > 1 {
		cs.Degraded = true // both asked, neither is primary
	}
	if len(primaries) > 1 {
		out.Warnings = append(out.Warnings, fmt.Sprintf("MORE THAN ONE NODE SAYS IT IS PRIMARY: %s; the one at the lower term must fence itself", strings.Join(primaries, ", ")))
	}
	return cs
}

// knownFingerprints maps the pinned certificates of a cluster's nodes to
// their names, to tell who answers on the cluster IP.
func knownFingerprints(tr *trust, cc CachedCluster) map[string]string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	m := map[string]string{}
	for _, n := range cc.Nodes {
		if fp := tr.cache.Pins[n.Address]; fp != "" {
			m[fp] = n.Name
		}
		if fp := tr.cache.Rotating[n.Address]; fp != "" {
			m[fp] = n.Name
		}
	}
	return m
}

// apiPortOf is the API port to try on the cluster IP: the primary's.
func apiPortOf(cc CachedCluster) string {
	port := ""
	for _, n := range cc.Nodes {
		if _, p, err := net.SplitHostPort(n.Address); err == nil && (port == "" || n.Name == cc.Primary) {
			port = p
		}
	}
	if port == "" {
		port = fmt.Sprint(config.DefaultAPIPort)
	}
	return port
}

// identify opens a TLS connection to addr and names the node by its
// certificate. It sends nothing, so no token goes to whoever holds the
// address.
func identify(ctx context.Context, addr string, known map[string]string) *EndpointAnswer {
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(pctx, "tcp", addr)
	if err != nil {
		return &EndpointAnswer{Address: addr, Error: err.Error()}
	}
	return identifyOver(pctx, conn, addr, known)
}

// identifyOver is identify over a TCP connection already open to addr; it
// closes conn.
func identifyOver(ctx context.Context, conn net.Conn, addr string, known map[string]string) *EndpointAnswer {
	defer conn.Close()
	a := &EndpointAnswer{Address: addr}
	var stranger string
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, //nolint:gosec // identified by fingerprint below
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("no certificate")
			}
			fp := identity.Fingerprint(cs.PeerCertificates[0].Raw)
			if n, ok := known[fp]; ok {
				a.Node = n
				return nil
			}
			stranger = fp
			return errors.New("unknown certificate")
		},
	}
	err := tls.Client(conn, cfg).HandshakeContext(ctx)
	switch {
	case stranger != "":
		a.Reachable = true
		a.Error = fmt.Sprintf("answered with certificate %s, which is neither node's", stranger)
	case err != nil:
		a.Error = err.Error()
	default:
		a.Reachable = true
	}
	return a
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func printStatus(w io.Writer, format string, s StatusOutput) error {
	if format == "json" {
		return printJSON(w, s)
	}
	if c := s.Cluster; c != nil {
		synced := "not synchronized"
		if c.Synchronized {
			synced = "synchronized"
		}
		fmt.Fprintf(w, "Cluster %s  term %d  primary %s  replication %s, %s", c.Name, c.Term, dash(c.Primary), dash(c.Replication), synced)
		if c.Degraded {
			fmt.Fprint(w, "  DEGRADED")
		}
		fmt.Fprintf(w, "  (record from %s)\n", c.RecordFrom)
		if d := c.DNS; d != nil {
			for _, l := range dnsLines(d, c.DNSNameAnswer) {
				fmt.Fprintln(w, "  "+l)
			}
		} else {
			fmt.Fprintf(w, "  cluster IP %s%s   DNS name %s%s\n", dash(c.ClusterIP), answerOf(c.ClusterIPAnswer), dash(c.DNSName), answerOf(c.DNSNameAnswer))
		}
		for _, l := range maintenanceLines(s.Nodes) {
			fmt.Fprintln(w, "  "+l)
		}
		for _, l := range failoverLines(s.Nodes) {
			fmt.Fprintln(w, "  "+l)
		}
		fmt.Fprintln(w)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tADDRESS\tREACHABLE\tROLE\tTERM\tPOSTGRES\tLSN\tPG\tREPLICATION\tLAG\tWAL KEPT\tCLUSTER IP")
	for _, n := range s.Nodes {
		if !n.Reachable {
			fmt.Fprintf(tw, "%s\t%s\tNO\t%s\t-\t-\t-\t-\t-\t-\t-\t-\n", dash(n.Name), n.Address, n.Role)
			continue
		}
		role := n.Role
		if n.Postgres.InRecovery && role != roleSecondary {
			role += " (in recovery)"
		}
		fmt.Fprintf(tw, "%s\t%s\tyes\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n.Name, n.Address, dash(role), termOf(n.Term),
			n.Postgres.State, dash(n.Postgres.LSN), dash(n.Postgres.Version), replState(n.Replication), lagOf(n.Replication), keptOf(n), heldOf(n.ClusterIP))
	}
	tw.Flush()
	var notes []string
	for _, n := range s.Nodes {
		name := dash(n.Name)
		if !n.Reachable {
			note := fmt.Sprintf("%s: not reachable: %s", name, n.Error)
			if n.LastKnownRole != "" {
				note += fmt.Sprintf(" (last known role %s", n.LastKnownRole)
				if n.LastSeen != nil {
					note += ", seen " + n.LastSeen.Local().Format("2006-01-02 15:04:05")
				}
				note += ")"
			}
			notes = append(notes, note)
			continue
		}
		notes = append(notes, operationNotes(name, n.NodeInfo)...)
		if n.Postgres.Error != "" {
			notes = append(notes, fmt.Sprintf("%s: PostgreSQL: %s", name, n.Postgres.Error))
		}
		if r := n.Replication; r != nil && r.ReceiverStatus != "" {
			notes = append(notes, fmt.Sprintf("%s: WAL receiver %s, received up to %s, last message from the primary %s", name, r.ReceiverStatus, dash(r.ReceivedLSN), dash(r.LastMessage)))
		}
		if r := n.Replication; r != nil && (r.SlotWALStatus == "unreserved" || r.SlotWALStatus == "lost") {
			notes = append(notes, fmt.Sprintf("%s: the slot for the secondary is %s: past the WAL cap, the secondary will be re-seeded", name, r.SlotWALStatus))
		}
		if ci := n.ClusterIP; ci != nil && ci.Conflict != "" {
			notes = append(notes, fmt.Sprintf("%s: cluster IP conflict: %s", name, ci.Conflict))
		}
		if ci := n.ClusterIP; ci != nil && ci.Error != "" {
			notes = append(notes, fmt.Sprintf("%s: cluster IP: %s", name, ci.Error))
		}
	}
	if c := s.Cluster; c != nil {
		for _, a := range []*EndpointAnswer{c.ClusterIPAnswer, c.DNSNameAnswer} {
			if a != nil && a.Error != "" {
				notes = append(notes, fmt.Sprintf("%s: %s", a.Address, a.Error))
			}
		}
	}
	for _, warn := range s.Warnings {
		notes = append(notes, "WARNING: "+warn)
	}
	notes = append(notes, versionsNote(s.Nodes)...)
	if len(notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range notes {
			fmt.Fprintln(w, n)
		}
	}
	return nil
}

// versionsNote names each reachable node's tandem version, loudly when
// they differ (a rolling update half done, or one forgotten), and a node's
// upgrade in flight or failed.
func versionsNote(nodes []NodeStatus) []string {
	var vs []string
	seen := map[string]bool{}
	var out []string
	for _, n := range nodes {
		if !n.Reachable || n.TandemdVersion == "" {
			continue
		}
		vs = append(vs, n.Name+" "+n.TandemdVersion)
		seen[n.TandemdVersion] = true
		if u := n.Upgrade; u != nil && u.State != "done" {
			line := fmt.Sprintf("%s: upgrade to tandem %s %s", n.Name, u.Version, u.State)
			if u.Error != "" {
				line += ": " + u.Error
			}
			out = append(out, line)
		}
	}
	if len(vs) == 0 {
		return out
	}
	line := "tandem: " + strings.Join(vs, ", ")
	if len(seen) > 1 {
		line += " (the nodes run DIFFERENT versions: finish the update with `tandem upgrade --version V`)"
	}
	if msg := protocolGap(nodes); msg != "" {
		out = append([]string{msg}, out...)
	}
	return append([]string{line}, out...)
}

// protocolGap says, loudly, when the reachable nodes speak protocols more
// than one apart (version.Compatible): operations are then refused until
// the older node is upgraded. "" when they work together.
func protocolGap(nodes []NodeStatus) string {
	var lo, hi *NodeStatus
	for i := range nodes {
		n := &nodes[i]
		if !n.Reachable || n.Protocol <= 0 {
			continue
		}
		if lo == nil || n.Protocol < lo.Protocol {
			lo = n
		}
		if hi == nil || n.Protocol > hi.Protocol {
			hi = n
		}
	}
	if lo == nil || version.WorkTogether(lo.Protocol, hi.Protocol) {
		return ""
	}
	return fmt.Sprintf("INCOMPATIBLE VERSIONS: %s speaks protocol %d, %s protocol %d; operations are refused until %s is upgraded (tandem upgrade --version %s)",
		lo.Name, lo.Protocol, hi.Name, hi.Protocol, lo.Name, hi.TandemdVersion)
}

func answerOf(a *EndpointAnswer) string {
	switch {
	case a == nil:
		return ""
	case a.Node != "":
		return " (answered by " + a.Node + ")"
	case a.Reachable:
		return " (answered by a stranger)"
	}
	return " (no answer)"
}

func termOf(t int64) string {
	if t == 0 {
		return "-"
	}
	return fmt.Sprint(t)
}

func replState(r *api.ReplicationInfo) string {
	switch {
	case r == nil:
		return "-"
	case r.State != "" && r.SyncState != "":
		return r.State + " (" + r.SyncState + ")"
	case r.State != "":
		return r.State
	}
	return dash(r.ReceiverStatus)
}

func lagOf(r *api.ReplicationInfo) string {
	if r == nil || (r.State == "" && r.LagBytes == 0 && r.LagSeconds == 0) {
		return "-"
	}
	return fmt.Sprintf("%s, %.1fs", bytesOf(r.LagBytes), r.LagSeconds)
}

func keptOf(n NodeStatus) string {
	if n.Replication == nil || n.Role != rolePrimary {
		return "-"
	}
	return bytesOf(n.Replication.RetainedBytes)
}

func heldOf(ci *api.ClusterIPInfo) string {
	switch {
	case ci == nil:
		return "-"
	case ci.Held:
		return "held"
	}
	return "not held"
}

func bytesOf(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// progressOf renders a long operation's progress: " (clone: 1.2 GiB of 4.0 GiB, 30%, 42s)".
// recentOperation is how long a finished operation stays in the notes.
const recentOperation = 10 * time.Minute

// operationNotes says what the node is doing (the operation in flight,
// with its steps so far) and how its last operation ended, when that was
// recent: a console that lost its operation finds it here.
func operationNotes(name string, n api.NodeInfo) []string {
	var notes []string
	switch op := n.Running; {
	case op != nil:
		what := op.Kind
		if op.Step != "" {
			what += ":" + op.Step
		}
		notes = append(notes, fmt.Sprintf("%s: operation in progress: %s%s, started by %s %s ago%s", name, what, progressOf(n.Progress),
			op.By, time.Since(op.StartedAt).Round(100*time.Millisecond), stepsOf(op.Steps)))
	case n.Op != "":
		notes = append(notes, fmt.Sprintf("%s: interrupted operation being settled: %s%s", name, n.Op, progressOf(n.Progress)))
	}
	if op := n.Last; op != nil && op.FinishedAt != nil && time.Since(*op.FinishedAt) < recentOperation && op.Kind != "boot" {
		took := op.FinishedAt.Sub(op.StartedAt).Round(time.Millisecond)
		ago := time.Since(*op.FinishedAt).Round(time.Second)
		if op.Outcome == api.OutcomeFailed {
			notes = append(notes, fmt.Sprintf("%s: last operation: %s (by %s) FAILED after %s, %s ago: %s", name, op.Kind, op.By, took, ago, op.Error))
		} else {
			notes = append(notes, fmt.Sprintf("%s: last operation: %s (by %s) %s in %s, %s ago", name, op.Kind, op.By, op.Outcome, took, ago))
		}
	}
	return notes
}

func stepsOf(steps []api.Step) string {
	if len(steps) == 0 {
		return ""
	}
	parts := make([]string, len(steps))
	for i, s := range steps {
		parts[i] = fmt.Sprintf("%s %.0f ms", s.Name, s.MS)
	}
	return "; done: " + strings.Join(parts, ", ")
}

func progressOf(p *api.Progress) string {
	if p == nil {
		return ""
	}
	took := time.Since(p.Since).Round(time.Second)
	if p.TotalBytes > 0 {
		pct := float64(p.DoneBytes) * 100 / float64(p.TotalBytes)
		return fmt.Sprintf(" (%s: %s of %s, %.0f%%, %s)", p.Phase, bytesOf(p.DoneBytes), bytesOf(p.TotalBytes), min(pct, 100), took)
	}
	return fmt.Sprintf(" (%s: %s, %s)", p.Phase, bytesOf(p.DoneBytes), took)
}

// failoverLines say what the failover mode promises and, in automatic
// mode, the quorum as the nodes see it: who holds the leader key and how
// long before it must fence unless it renews, each member's health, what
// the sync record names, and whether the secondary would fail over by
// itself (and if not, why).
func failoverLines(nodes []NodeStatus) []string {
	mode := ""
	for _, n := range nodes {
		if n.Reachable && n.Failover != "" {
			mode = n.Failover
			break
		}
	}
	switch mode {
	case "":
		return nil
	case failoverManual:
		return []string{"failover manual: nothing promotes by itself; when the primary is gone, an operator runs `tandem failover`"}
	}
	var out []string
	var view *api.QuorumInfo
	for _, n := range nodes {
		if n.Reachable && n.Quorum != nil && (view == nil || n.Role == rolePrimary) {
			view = n.Quorum
		}
	}
	if view == nil {
		return []string{"failover automatic: no node reports the quorum yet"}
	}
	line := "failover automatic: "
	switch {
	case !view.Reachable:
		line += "the QUORUM DOES NOT ANSWER (" + view.Error + "); nothing fails over by itself, and a primary without it fences itself"
	case view.Holder == "":
		line += "the leader key is VACANT"
	default:
		line += "leader key held by " + view.Holder
		for _, n := range nodes {
			if n.Reachable && n.Name == view.Holder && n.Quorum != nil && n.Quorum.FenceInMS > 0 {
				line += fmt.Sprintf(" (it fences itself in %.1fs unless a renewal succeeds)", float64(n.Quorum.FenceInMS)/1000)
			}
		}
	}
	out = append(out, line)
	var members []string
	for _, m := range view.Members {
		st := "ok"
		if !m.Healthy {
			st = "DOWN"
		}
		if m.EtcdLeader {
			st += ", etcd leader"
		}
		members = append(members, fmt.Sprintf("%s %s", m.Name, st))
	}
	rec := view.SyncRecord
	if rec == "" {
		rec = "none"
	}
	if view.External {
		out = append(out, fmt.Sprintf("quorum: external etcd, key prefix %s; endpoints: %s; sync record names %s", view.Prefix, strings.Join(members, ", "), rec))
	} else {
		out = append(out, fmt.Sprintf("quorum members: %s; sync record names %s", strings.Join(members, ", "), rec))
	}
	for _, n := range nodes {
		if !n.Reachable || n.Role != roleSecondary || n.Quorum == nil {
			continue
		}
		if n.Quorum.Eligible {
			out = append(out, fmt.Sprintf("%s fails over by itself if the primary's lease runs out", n.Name))
		} else {
			out = append(out, fmt.Sprintf("%s does NOT fail over by itself: %s", n.Name, dash(n.Quorum.Why)))
		}
	}
	for _, n := range nodes {
		if n.Reachable && n.Quorum != nil && n.Quorum.Failsafe {
			out = append(out, fmt.Sprintf("FAILSAFE: etcd does not renew %s's lease; it stays primary only on its secondary's promise not to take over", n.Name))
		}
	}
	for _, n := range nodes {
		if n.Reachable && n.Quorum != nil && strings.HasPrefix(n.Quorum.Error, "this node fenced itself") {
			out = append(out, fmt.Sprintf("%s: %s", n.Name, n.Quorum.Error))
		}
	}
	return append(out, watchdogLines(nodes)...)
}

// watchdogLines say whether the primary's watchdog is armed (it resets
// the primary should its tandemd freeze), and why a node's is not where
// it should be.
func watchdogLines(nodes []NodeStatus) []string {
	var out []string
	for _, n := range nodes {
		if !n.Reachable || n.Quorum == nil || n.Quorum.Watchdog == nil {
			continue
		}
		w := n.Quorum.Watchdog
		switch {
		case w.Armed:
			out = append(out, fmt.Sprintf("%s: watchdog armed (%s, %s, timeout %s, mode %s): should its tandemd freeze, the machine resets before the lease can expire", n.Name, w.Device, dash(w.Identity), time.Duration(w.TimeoutMS)*time.Millisecond, w.Mode))
		case w.Error != "":
			out = append(out, fmt.Sprintf("%s: watchdog NOT armed (mode %s): %s", n.Name, w.Mode, w.Error))
		case n.Role == rolePrimary:
			out = append(out, fmt.Sprintf("%s: watchdog NOT armed (mode %s, %s)", n.Name, w.Mode, w.Device))
		}
	}
	return out
}

// dnsNameStatus pieces the DNS name's status together: the primary's view
// of it first (it points the name), else the other node's.
func dnsNameStatus(name string, ps []*probe, resolved []string, resolveErr error) *DNSNameStatus {
	d := &DNSNameStatus{Name: name, Resolver: resolved, Authority: []string{}}
	if d.Resolver == nil {
		d.Resolver = []string{}
	}
	if resolveErr != nil {
		d.ResolverError = resolveErr.Error()
	}
	slices.Sort(d.Resolver)
	var from *probe
	if p := primaryOf(ps); p != nil && p.view.DNS != nil {
		from = p
	} else {
		for _, p := range ps {
			if p.reachable() && p.view.DNS != nil {
				from = p
				break
			}
		}
	}
	if from == nil {
		return d
	}
	v := from.view.DNS
	d.AskedBy, d.Server, d.Authority, d.AuthorityError = from.view.Node.Name, v.Server, v.Authority, v.AuthorityError
	d.TTL, d.StaleSince, d.Error = v.TTL, v.StaleSince, v.Error
	if v.AuthorityTTL > 0 {
		d.TTL = v.AuthorityTTL
	}
	return d
}

// dnsLines shows a DNS-endpoint cluster's name: the mode, both answers,
// the TTL, and staleness.
func dnsLines(d *DNSNameStatus, ans *EndpointAnswer) []string {
	addrs := func(as []string, err string) string {
		switch {
		case err != "":
			return "nothing (" + err + ")"
		case len(as) == 0:
			return "no address"
		}
		return strings.Join(as, ", ")
	}
	lines := []string{
		fmt.Sprintf("endpoint dns: %s (no cluster IP; the primary points the name at its node IP)%s", d.Name, answerOf(ans)),
		fmt.Sprintf("  this console's resolver answers %s", addrs(d.Resolver, d.ResolverError)),
	}
	if d.AskedBy != "" {
		lines = append(lines, fmt.Sprintf("  the zone's primary server %s answers %s (asked by %s), TTL %ds", dash(d.Server), addrs(d.Authority, d.AuthorityError), d.AskedBy, d.TTL))
	}
	if d.StaleSince != nil {
		lines = append(lines, fmt.Sprintf("  STALE since %s: %s", d.StaleSince.Local().Format("2006-01-02 15:04:05"), dash(d.Error)))
	} else if d.Error != "" {
		lines = append(lines, "  last update error: "+d.Error)
	}
	return lines
}
