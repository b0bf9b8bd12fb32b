package dnscheck

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"time"
)

func (r *runner) checkSubnet() Result {
	title := "both node IPs and the cluster IP are in one subnet"
	if r.clusterOK {
		title = fmt.Sprintf("both node IPs and the cluster IP are in %s", r.subnet)
	}
	switch {
	case !r.clusterOK:
		return skipped(title, "no valid cluster IP (see "+IDInput+"cluster_ip)")
	case !r.self.ipOK:
		return skipped(title, r.self.ipWhy)
	case !r.peer.ipOK:
		return skipped(title, r.peer.ipWhy)
	}
	var mixed []string
	for _, n := range []*node{&r.self, &r.peer} {
		if n.IP.Is4() != r.cip.Is4() {
			mixed = append(mixed, n.desc())
		}
	}
	if len(mixed) > 0 {
		return problem(title,
			fmt.Sprintf("%s %s %s, the cluster IP %s is %s: they cannot share a subnet",
				strings.Join(mixed, " and "), isAre(len(mixed)), familyName(otherFamily(r.cip)), r.cip, familyName(r.cip)),
			fmt.Sprintf("use one address family for the node IPs and the cluster IP (see %s)", IDFamily))
	}
	var issues, fixes []string
	last := lastAddr(r.subnet)
	edge := func(a netip.Addr) string {
		if !a.Is4() || r.subnet.Bits() > 30 {
			return ""
		}
		switch a {
		case r.subnet.Addr():
			return "the network address"
		case last:
			return "the broadcast address"
		}
		return ""
	}
	for _, n := range []*node{&r.self, &r.peer} {
		switch {
		case !r.subnet.Contains(n.IP):
			issues = append(issues, fmt.Sprintf("%s is outside %s", n.desc(), r.subnet))
			fixes = append(fixes, fmt.Sprintf("give %s a node IP in %s, or choose the cluster IP (and its prefix length) in %s's subnet",
				n.label, r.subnet, n.label))
		case n.IP == r.cip:
			issues = append(issues, fmt.Sprintf("the cluster IP %s is %s's own node IP", r.cip, n.label))
			fixes = append(fixes, fmt.Sprintf("choose a cluster IP that is neither node IP: a free address in %s", r.subnet))
		case edge(n.IP) != "":
			issues = append(issues, fmt.Sprintf("%s is %s of %s", n.desc(), edge(n.IP), r.subnet))
			fixes = append(fixes, fmt.Sprintf("give %s a host address in %s (or check the prefix length /%d)", n.label, r.subnet, r.subnet.Bits()))
		}
	}
	if e := edge(r.cip); e != "" {
		issues = append(issues, fmt.Sprintf("the cluster IP %s is %s of %s", r.cip, e, r.subnet))
		fixes = append(fixes, fmt.Sprintf("choose a host address in %s as the cluster IP (or check the prefix length /%d)", r.subnet, r.subnet.Bits()))
	}
	if len(issues) > 0 {
		return problem(title, strings.Join(issues, "; "), strings.Join(dedupe(fixes), "; "))
	}
	return ok(title, fmt.Sprintf("%s, %s and the cluster IP %s are in %s", r.self.desc(), r.peer.desc(), r.cip, r.subnet))
}

// lastAddr is the highest address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	host := p.Addr().BitLen() - p.Bits()
	for i := len(b) - 1; i >= 0 && host > 0; i-- {
		n := min(host, 8)
		b[i] |= byte(1<<n - 1)
		host -= n
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func dedupe(ss []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range ss {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

func (r *runner) checkSubnetInterface() Result {
	n := &r.self
	title := "this node's interface holding its node IP is in the cluster subnet"
	if n.ipOK && r.clusterOK {
		title = fmt.Sprintf("this node holds %s on an interface in %s", n.IP, r.subnet)
	}
	switch {
	case !n.ipOK:
		return skipped(title, n.ipWhy)
	case !r.clusterOK:
		return skipped(title, "no valid cluster IP (see "+IDInput+"cluster_ip)")
	case n.IP.Is4() != r.cip.Is4():
		return skipped(title, fmt.Sprintf("the node IP and the cluster IP are of different families (see %s)", IDFamily))
	}
	ps, err := r.localPrefixes()
	if err != nil {
		return problem(title, fmt.Sprintf("cannot read this node's interface addresses: %v", err),
			"check that tandemd can list the interfaces (`ip addr` shows them) and run the preflight again")
	}
	for _, p := range ps {
		if p.Addr() != n.IP {
			continue
		}
		if p.Masked() == r.subnet {
			return ok(title, fmt.Sprintf("%s is configured here as %s", n.IP, p))
		}
		return problem(title,
			fmt.Sprintf("%s is configured here as %s (subnet %s), but the cluster subnet is %s", n.IP, p, p.Masked(), r.subnet),
			fmt.Sprintf("make them agree: configure %s/%d on this node's interface (and in its network configuration), or pass --cluster-ip %s/%d if %s is the real subnet",
				n.IP, r.subnet.Bits(), r.cip, p.Bits(), p.Masked()))
	}
	var have []string
	for _, p := range ps {
		if p.Addr().IsLoopback() || p.Addr().IsLinkLocalUnicast() {
			continue
		}
		have = append(have, p.String())
	}
	if len(have) > 10 {
		have = append(have[:10], "…")
	}
	haveS := "none besides loopback and link-local"
	if len(have) > 0 {
		haveS = strings.Join(have, ", ")
	}
	return problem(title,
		fmt.Sprintf("%s is not configured on any interface of this node (it has: %s)", n.IP, haveS),
		fmt.Sprintf("configure %s/%d on this node's interface in the cluster subnet (e.g. `ip addr add %s/%d dev IFACE`, and in its network configuration), or give this node's real IP as its node address",
			n.IP, r.subnet.Bits(), n.IP, r.subnet.Bits()))
}

func (r *runner) checkFamily() Result {
	title := "one address family (IPv4 only or IPv6 only)"
	if r.clusterOK {
		title = fmt.Sprintf("%s only: node IPs, cluster IP and their DNS records", familyName(r.cip))
	}
	if !r.clusterOK {
		return skipped(title, "no valid cluster IP (see "+IDInput+"cluster_ip)")
	}
	fam := familyName(r.cip)
	var mixed []string
	for _, n := range []*node{&r.self, &r.peer} {
		if n.ipOK && n.IP.Is4() != r.cip.Is4() {
			mixed = append(mixed, n.desc())
		}
	}
	if len(mixed) > 0 {
		other := familyName(otherFamily(r.cip))
		return problem(title,
			fmt.Sprintf("the cluster IP %s is %s; %s %s %s", r.cip, fam, strings.Join(mixed, " and "), isAre(len(mixed)), other),
			fmt.Sprintf("use one family for all three addresses: either a free %s address in the nodes' subnet as the cluster IP (--cluster-ip IP/PREFIX), or %s node IPs for both nodes",
				other, fam))
	}
	var issues, fixes []string
	var clean []string
	var names []string
	if r.nameOK {
		names = append(names, r.name)
	}
	for _, n := range []*node{&r.self, &r.peer} {
		if nm := r.nodeName(n); nm != "" {
			names = append(names, nm)
		}
	}
	if r.serverOK {
		ot := otherType(typeFor(r.cip))
		for _, nm := range dedupe(names) {
			a := r.lookup(nm, ot)
			switch {
			case a.found():
				var xs []string
				for _, x := range a.addrs() {
					xs = append(xs, x.String())
				}
				issues = append(issues, fmt.Sprintf("%s%s also has %s %s", nm, a.via(), typeName(ot), strings.Join(xs, ", ")))
				fixes = append(fixes, fmt.Sprintf("remove the %s record(s) of %s (%s): the cluster is %s only", typeName(ot), a.canonical(), strings.Join(xs, ", "), fam))
			case a.usable():
				clean = append(clean, nm)
			default:
				d, f := r.failure(a, "no "+typeName(ot)+" record")
				issues = append(issues, "could not check for "+typeName(ot)+" records: "+d)
				fixes = append(fixes, f)
			}
		}
	}
	if len(issues) > 0 {
		return problem(title, strings.Join(issues, "; "), strings.Join(dedupe(fixes), "; "))
	}
	detail := fmt.Sprintf("the cluster IP %s", r.cip)
	for _, n := range []*node{&r.self, &r.peer} {
		if n.ipOK {
			detail += fmt.Sprintf(", %s's %s", n.label, n.IP)
		}
	}
	detail += " are " + fam
	if len(clean) > 0 {
		detail += fmt.Sprintf("; no %s records for %s", typeName(otherType(typeFor(r.cip))), strings.Join(clean, ", "))
	}
	return ok(title, detail)
}

// otherFamily returns an address of the other family (for its name).
func otherFamily(a netip.Addr) netip.Addr {
	if a.Is4() {
		return netip.IPv6Unspecified()
	}
	return netip.IPv4Unspecified()
}

func isAre(n int) string {
	if n == 1 {
		return "is"
	}
	return "are"
}

// probeTimeout bounds one call of the Prober.
func (r *runner) probeTimeout() time.Duration {
	return max(5*time.Second, 5*r.timeout)
}

func (r *runner) checkClusterIPFree() Result {
	title := "the cluster IP is not in use"
	if r.clusterOK {
		title = fmt.Sprintf("the cluster IP %s is not in use", r.cip)
	}
	if !r.clusterOK {
		return skipped(title, "no valid cluster IP (see "+IDInput+"cluster_ip)")
	}
	if ps, err := r.localPrefixes(); err == nil {
		for _, p := range ps {
			if p.Addr() == r.cip {
				return problem(title,
					fmt.Sprintf("%s is already configured on an interface of this node (as %s)", r.cip, p),
					fmt.Sprintf("remove %s from this node's interface (`ip addr del %s dev IFACE`) and from its network configuration: tandemd adds it on the primary itself", r.cip, p))
			}
		}
	}
	proto := "ARP"
	if r.cip.Is6() {
		proto = "NDP"
	}
	if r.in.Prober == nil {
		return skipped(title, fmt.Sprintf("not probed: no %s prober on this node", proto))
	}
	type res struct {
		mac   string
		inUse bool
		err   error
	}
	ctx, cancel := context.WithTimeout(r.ctx, r.probeTimeout())
	defer cancel()
	ch := make(chan res, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				ch <- res{err: fmt.Errorf("prober panicked: %v", p)}
			}
		}()
		mac, inUse, err := r.in.Prober(ctx, r.cip)
		ch <- res{mac, inUse, err}
	}()
	var got res
	select {
	case got = <-ch:
	case <-ctx.Done():
		got = res{err: fmt.Errorf("no result within %s: %w", r.probeTimeout(), ctx.Err())}
	}
	switch {
	case got.err != nil:
		return problem(title,
			fmt.Sprintf("the %s probe of %s failed: %v", proto, r.cip, got.err),
			fmt.Sprintf("the probe needs root (or CAP_NET_RAW) and an interface in %s on this node: run tandemd so, then run the preflight again", r.subnet))
	case got.inUse:
		holder := "another host"
		find := ""
		if got.mac != "" {
			holder = "the host with MAC " + got.mac
			find = fmt.Sprintf(" (find it by its MAC %s in `ip neigh` or the switch's MAC table)", got.mac)
		}
		return problem(title,
			fmt.Sprintf("%s answers for %s (%s probe)", holder, r.cip, proto),
			fmt.Sprintf("choose a free address in %s as the cluster IP, or remove %s from %s%s", r.subnet, r.cip, holder, find))
	}
	return ok(title, fmt.Sprintf("no host answered an %s probe for %s", proto, r.cip))
}

func (r *runner) checkPort(id string) Result {
	n := &r.peer
	what, port, portOK := "node API", n.APIPort, n.apiOK
	if id == IDPortPostgres {
		what, port, portOK = "PostgreSQL", n.PostgresPort, n.pgOK
	}
	title := fmt.Sprintf("%s's %s port is reachable from this node", n.label, what)
	if n.ipOK && portOK {
		title = fmt.Sprintf("%s's %s at %s accepts TCP connections from this node", n.label, what, netip.AddrPortFrom(n.IP, uint16(port)))
	}
	switch {
	case !n.ipOK:
		return skipped(title, n.ipWhy)
	case !portOK:
		return skipped(title, "no valid port (see "+IDInput+id+")")
	}
	ap := netip.AddrPortFrom(n.IP, uint16(port))
	ctx, cancel := context.WithTimeout(r.ctx, r.timeout)
	defer cancel()
	dial := r.in.dial
	if dial == nil {
		dial = func(ctx context.Context, ap netip.AddrPort) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", ap.String())
		}
	}
	start := time.Now()
	conn, err := dial(ctx, ap)
	if err == nil {
		conn.Close()
		return ok(title, fmt.Sprintf("connected to %s in %s", ap, time.Since(start).Round(time.Millisecond)))
	}
	from := "this node"
	if r.self.ipOK {
		from = fmt.Sprintf("this node (%s)", r.self.IP)
	}
	detail := fmt.Sprintf("TCP connect to %s: %s", ap, describeNetErr(err, r.timeout))
	var fix string
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		detail += " — nothing listens there, or a firewall rejects it"
		if id == IDPortPostgres {
			fix = fmt.Sprintf("start PostgreSQL on %s and make it listen on %s port %d (listen_addresses in postgresql.conf must include %s or '*'; restart it after changing it), and allow TCP %d from %s in %s's firewall",
				n.label, n.IP, port, n.IP, port, from, n.label)
		} else {
			fix = fmt.Sprintf("start tandemd on %s (systemctl start tandemd) with its node API on %s port %d, and allow TCP %d from %s in %s's firewall",
				n.label, n.IP, port, port, from, n.label)
		}
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		fix = fmt.Sprintf("this node has no route to %s: check that %s is up and that both nodes are in one subnet (see %s)", n.IP, n.label, IDSubnet)
	default:
		fix = fmt.Sprintf("allow TCP port %d from %s to %s in %s's firewall (e.g. `nft`, `firewall-cmd --add-port=%d/tcp`) and in any firewall between the nodes; check that %s is up",
			port, from, n.IP, n.label, port, n.label)
	}
	return problem(title, detail, fix)
}
