package dnscheck

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/miekg/dns"
)

// dnsSkip returns the reason DNS checks cannot run, or "".
func (r *runner) dnsSkip() string {
	if !r.serverOK {
		return "no DNS server to ask (see " + IDDNSServer + ")"
	}
	return ""
}

func (r *runner) checkDNSServer() Result {
	title := "this node has a DNS server that answers"
	if !r.serverOK {
		fix := fmt.Sprintf("list this node's DNS server in %s (a line \"nameserver 10.77.0.2\"), or pass --dns-server IP", r.resFrom)
		if r.resFrom == "--dns-server" {
			fix = "pass --dns-server as ip or ip:port (e.g. 10.77.0.2 or [fd00::2]:53), or leave it out to use /etc/resolv.conf"
		}
		return problem(title, fmt.Sprintf("%s: %v", r.resFrom, r.resErr), fix)
	}
	list := strings.Join(r.res.servers, ", then ")
	if r.in.NoClusterIP {
		// No cluster IP to look the name up for: the node checks below
		// ask this server for the nodes' records.
		return ok(title, fmt.Sprintf("asking %s (from %s); the node checks below ask it", list, r.resFrom))
	}
	if !r.nameOK || !r.clusterOK {
		return ok(title, fmt.Sprintf("asking %s (from %s); not probed: the cluster name or IP is not valid", list, r.resFrom))
	}
	a := r.lookup(r.name, typeFor(r.cip))
	switch {
	case errors.Is(a.err, errNoAnswer):
		return problem(title, fmt.Sprintf("asking %s (from %s): no answer: %s", list, r.resFrom, strings.Join(a.failures, "; ")), r.serverFix())
	case a.err == nil && a.rcode == dns.RcodeRefused:
		d, f := r.failure(a, "")
		return problem(title, d, f)
	}
	detail := fmt.Sprintf("asking %s (from %s); %s answered", list, r.resFrom, a.server)
	if a.server == "" {
		detail = fmt.Sprintf("asking %s (from %s)", list, r.resFrom)
	}
	if len(a.failures) > 0 {
		detail += " (before that: " + strings.Join(a.failures, "; ") + ")"
	}
	return ok(title, detail)
}

func (r *runner) checkForwardCluster() Result {
	title := "the cluster DNS name resolves to the cluster IP"
	if r.nameOK && r.clusterOK {
		title = fmt.Sprintf("%s resolves to %s", r.name, r.cip)
	}
	switch {
	case !r.nameOK:
		return skipped(title, "no valid cluster DNS name (see "+IDInput+"dns_name)")
	case !r.clusterOK:
		return skipped(title, "no valid cluster IP (see "+IDInput+"cluster_ip)")
	case r.dnsSkip() != "":
		return skipped(title, r.dnsSkip())
	}
	t := typeFor(r.cip)
	record := fmt.Sprintf("%s. IN %s %s", r.name, typeName(t), r.cip)
	a := r.lookup(r.name, t)
	if !a.found() {
		d, f := r.failure(a, record)
		return problem(title, d, f)
	}
	return r.judgeAddrs(title, a, r.cip, "the cluster IP")
}

// judgeAddrs checks that a forward lookup gave exactly want.
func (r *runner) judgeAddrs(title string, a answer, want netip.Addr, wantDesc string) Result {
	addrs := a.addrs()
	t := typeName(a.qtype)
	owner := a.canonical()
	var list []string
	hasWant := false
	var others []string
	for _, x := range addrs {
		list = append(list, r.describeAddr(x))
		if x == want {
			hasWant = true
		} else {
			others = append(others, x.String())
		}
	}
	switch {
	case len(addrs) == 1 && hasWant:
		return ok(title, fmt.Sprintf("%s %s%s, from %s", t, want, a.via(), a.server))
	case !hasWant:
		return problem(title,
			fmt.Sprintf("%s%s has %s %s, not %s %s (from %s)", a.name, a.via(), t, strings.Join(list, ", "), wantDesc, want, a.server),
			fmt.Sprintf("change the %s record of %s to %s: %s. IN %s %s, and remove %s %s",
				t, owner, want, owner, t, want, t, strings.Join(others, ", ")))
	default:
		return problem(title,
			fmt.Sprintf("%s%s has %d %s records: %s; clients would reach any of them (from %s)", a.name, a.via(), len(addrs), t, strings.Join(list, ", "), a.server),
			fmt.Sprintf("keep only %s. IN %s %s: remove the %s record(s) %s of %s", owner, t, want, t, strings.Join(others, ", "), owner))
	}
}

// describeAddr is "10.77.0.11 (node a's IP)" when the address is known.
func (r *runner) describeAddr(x netip.Addr) string {
	switch {
	case r.clusterOK && x == r.cip:
		return x.String() + " (the cluster IP)"
	case r.self.ipOK && x == r.self.IP:
		return fmt.Sprintf("%s (%s's node IP)", x, r.self.label)
	case r.peer.ipOK && x == r.peer.IP:
		return fmt.Sprintf("%s (%s's node IP)", x, r.peer.label)
	}
	return x.String()
}

func (r *runner) checkReverseCluster() Result {
	title := "the cluster IP's PTR record names the cluster DNS name"
	if r.nameOK && r.clusterOK {
		title = fmt.Sprintf("%s has PTR %s", r.cip, r.name)
	}
	switch {
	case !r.clusterOK:
		return skipped(title, "no valid cluster IP (see "+IDInput+"cluster_ip)")
	case !r.nameOK:
		return skipped(title, "no valid cluster DNS name (see "+IDInput+"dns_name)")
	case r.dnsSkip() != "":
		return skipped(title, r.dnsSkip())
	}
	arpa, err := dns.ReverseAddr(r.cip.String())
	if err != nil {
		return problem(title, fmt.Sprintf("cannot build the reverse name of %s: %v", r.cip, err), "choose a valid cluster IP")
	}
	record := fmt.Sprintf("%s IN PTR %s.", arpa, r.name)
	a := r.lookup(arpa, dns.TypePTR)
	if !a.found() {
		d, f := r.failure(a, record)
		return problem(title, d, f)
	}
	names := a.ptrs()
	has := false
	var others []string
	for _, n := range names {
		if n == r.name {
			has = true
		} else {
			others = append(others, n)
		}
	}
	owner := dns.Fqdn(a.canonical())
	switch {
	case has && len(names) == 1:
		return ok(title, fmt.Sprintf("PTR %s%s, from %s", r.name, a.via(), a.server))
	case !has:
		return problem(title,
			fmt.Sprintf("the PTR of %s (%s%s) is %s, not %s (from %s)", r.cip, normName(arpa), a.via(), strings.Join(names, ", "), r.name, a.server),
			fmt.Sprintf("change the PTR record to the cluster name: %s IN PTR %s. (remove PTR %s)", owner, r.name, strings.Join(others, ", ")))
	default:
		return problem(title,
			fmt.Sprintf("%s has %d PTR records: %s; a reverse lookup returns any of them (from %s)", r.cip, len(names), strings.Join(names, ", "), a.server),
			fmt.Sprintf("keep only %s IN PTR %s.: remove PTR %s", owner, r.name, strings.Join(others, ", ")))
	}
}

// nodeNames returns the PTR names of a node's IP ("" answer when unknown).
func (r *runner) nodeNames(n *node) []string {
	if !n.ipOK || !r.serverOK {
		return nil
	}
	arpa, err := dns.ReverseAddr(n.IP.String())
	if err != nil {
		return nil
	}
	a := r.lookup(arpa, dns.TypePTR)
	if !a.found() {
		return nil
	}
	return a.ptrs()
}

// nodeName is the node's host name from its PTR record, or "".
func (r *runner) nodeName(n *node) string {
	names := r.nodeNames(n)
	if len(names) == 0 {
		return ""
	}
	return names[0]
}

// domainOf is the name without its first label ("" for a single label).
func domainOf(name string) string {
	_, rest, found := strings.Cut(name, ".")
	if !found {
		return ""
	}
	return rest
}

func firstLabel(name string) string {
	l, _, _ := strings.Cut(name, ".")
	return l
}

// suggestedName is a host name for the node in the cluster's domain.
func (r *runner) suggestedName(n *node) string {
	host := "<host name of " + n.label + ">"
	if cur := r.nodeName(n); cur != "" && cur != r.name {
		host = firstLabel(cur)
	}
	if d := domainOf(r.name); r.nameOK && d != "" {
		return host + "." + d
	}
	return host + ".<cluster domain>"
}

func (r *runner) checkReverseNode(n *node) Result {
	title := fmt.Sprintf("%s has a PTR record (reverse DNS)", n.desc())
	switch {
	case !n.ipOK:
		return skipped(title, n.ipWhy)
	case r.dnsSkip() != "":
		return skipped(title, r.dnsSkip())
	}
	arpa, err := dns.ReverseAddr(n.IP.String())
	if err != nil {
		return problem(title, fmt.Sprintf("cannot build the reverse name of %s: %v", n.IP, err), "give a valid node IP")
	}
	want := r.suggestedName(n)
	record := fmt.Sprintf("%s IN PTR %s. (with %s. IN %s %s back to it)", arpa, want, want, typeName(typeFor(n.IP)), n.IP)
	a := r.lookup(arpa, dns.TypePTR)
	if !a.found() {
		d, f := r.failure(a, record)
		return problem(title, d, f)
	}
	names := a.ptrs()
	owner := dns.Fqdn(a.canonical())
	if r.nameOK {
		for _, nm := range names {
			if nm == r.name {
				return problem(title,
					fmt.Sprintf("the PTR of %s is the cluster name %s (from %s)", n.IP, r.name, a.server),
					fmt.Sprintf("point the PTR of %s at %s's own host name, not the cluster name: %s IN PTR %s.", n.IP, n.label, owner, want))
			}
		}
	}
	if len(names) > 1 {
		return problem(title,
			fmt.Sprintf("%s has %d PTR records: %s; a reverse lookup returns any of them (from %s)", n.IP, len(names), strings.Join(names, ", "), a.server),
			fmt.Sprintf("keep one PTR record for %s, the node's host name (%s IN PTR %s.), and remove the others", n.IP, owner, names[0]))
	}
	return ok(title, fmt.Sprintf("PTR %s%s, from %s", names[0], a.via(), a.server))
}

func (r *runner) checkForwardNode(n *node) Result {
	name := r.nodeName(n)
	title := fmt.Sprintf("the PTR name of %s resolves back to it", n.desc())
	if name != "" {
		title = fmt.Sprintf("%s (PTR name of %s) resolves to %s", name, n.label, n.IP)
	}
	switch {
	case !n.ipOK:
		return skipped(title, n.ipWhy)
	case r.dnsSkip() != "":
		return skipped(title, r.dnsSkip())
	case name == "":
		return skipped(title, fmt.Sprintf("no PTR name for %s (see %s)", n.IP, n.reverseID()))
	case r.nameOK && name == r.name:
		return skipped(title, fmt.Sprintf("the PTR name of %s is the cluster name (see %s)", n.IP, n.reverseID()))
	}
	t := typeFor(n.IP)
	record := fmt.Sprintf("%s. IN %s %s", name, typeName(t), n.IP)
	a := r.lookup(name, t)
	if !a.found() {
		d, f := r.failure(a, record)
		return problem(title, d, f)
	}
	return r.judgeAddrs(title, a, n.IP, n.label+"'s node IP")
}

func (r *runner) checkSuffix() Result {
	title := "both nodes and the cluster name are in one DNS domain"
	if d := domainOf(r.name); r.nameOK && d != "" {
		title = fmt.Sprintf("both nodes and the cluster name are in %s", d)
	}
	switch {
	case !r.nameOK:
		return skipped(title, "no valid cluster DNS name (see "+IDInput+"dns_name)")
	case r.dnsSkip() != "":
		return skipped(title, r.dnsSkip())
	}
	dc := domainOf(r.name)
	if dc == "" {
		sugg := "db.example.com"
		if sn := domainOf(r.nodeName(&r.self)); sn != "" {
			sugg = r.name + "." + sn
		}
		return problem(title,
			fmt.Sprintf("the cluster name %s has no domain part", r.name),
			fmt.Sprintf("use a fully qualified cluster name in the nodes' domain, e.g. --dns-name %s", sugg))
	}
	type nn struct {
		n    *node
		name string
	}
	var nodes []nn
	var missing []string
	for _, n := range []*node{&r.self, &r.peer} {
		name := r.nodeName(n)
		if name == "" {
			missing = append(missing, n.reverseID())
			continue
		}
		nodes = append(nodes, nn{n, name})
	}
	if len(missing) > 0 {
		return skipped(title, "needs the PTR names of both nodes (see "+strings.Join(missing, ", ")+")")
	}
	ds, dp := domainOf(nodes[0].name), domainOf(nodes[1].name)
	found := fmt.Sprintf("%s is in %s, %s is in %s, the cluster name %s is in %s",
		nodes[0].name, orNone(ds), nodes[1].name, orNone(dp), r.name, dc)
	if ds == dc && dp == dc {
		return ok(title, fmt.Sprintf("%s, %s and %s", nodes[0].name, nodes[1].name, r.name))
	}
	if ds == dp && ds != "" {
		return problem(title, found,
			fmt.Sprintf("put the cluster name in the nodes' domain (e.g. --dns-name %s.%s, with its A/AAAA and PTR records), or move both nodes' names to %s",
				firstLabel(r.name), ds, dc))
	}
	var fixes []string
	for _, x := range nodes {
		if domainOf(x.name) == dc {
			continue
		}
		want := firstLabel(x.name) + "." + dc
		arpa, _ := dns.ReverseAddr(x.n.IP.String())
		fixes = append(fixes, fmt.Sprintf("give %s a name in %s: %s IN PTR %s. and %s. IN %s %s (now %s)",
			x.n.label, dc, arpa, want, want, typeName(typeFor(x.n.IP)), x.n.IP, x.name))
	}
	return problem(title, found, strings.Join(fixes, "; "))
}

func orNone(d string) string {
	if d == "" {
		return "no domain"
	}
	return d
}
