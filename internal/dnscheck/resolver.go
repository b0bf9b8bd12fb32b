package dnscheck

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

// DefaultResolvConf is where the system resolver's servers are read from
// when Input.DNSServer is empty.
const DefaultResolvConf = "/etc/resolv.conf"

// maxCNAMEHops bounds how many CNAMEs a lookup follows.
const maxCNAMEHops = 8

// resolver asks DNS servers directly, in order: the first one, then the
// next when it does not answer (or answers SERVFAIL / REFUSED).
type resolver struct {
	servers []string // host:port
	timeout time.Duration

	mu   sync.Mutex
	dead map[string]bool // servers that gave no answer at all: asked last
}

// order is the servers to try: those that have answered (or not been
// tried) first, in their configured order, then those that did not.
func (r *resolver) order() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var live, dead []string
	for _, s := range r.servers {
		if r.dead[s] {
			dead = append(dead, s)
		} else {
			live = append(live, s)
		}
	}
	return append(live, dead...)
}

func (r *resolver) mark(server string, dead bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.dead == nil {
		r.dead = map[string]bool{}
	}
	r.dead[server] = dead
}

// newResolver picks the servers: the given one, or those of resolvConf
// (DefaultResolvConf when empty). from says where they came from.
func newResolver(server, resolvConf string, timeout time.Duration) (r *resolver, from string, err error) {
	if s := strings.TrimSpace(server); s != "" {
		hp, err := parseServer(s)
		if err != nil {
			return nil, "--dns-server", err
		}
		return &resolver{servers: []string{hp}, timeout: timeout}, "--dns-server", nil
	}
	if resolvConf == "" {
		resolvConf = DefaultResolvConf
	}
	servers, err := systemServers(resolvConf)
	if err != nil {
		return nil, resolvConf, err
	}
	return &resolver{servers: servers, timeout: timeout}, resolvConf, nil
}

// parseServer turns "ip", "ip:port" or "[ip6]:port" into host:port.
func parseServer(s string) (string, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		if ap.Port() == 0 {
			return "", fmt.Errorf("port 0 in %q", s)
		}
		if !ap.Addr().IsValid() || ap.Addr().IsUnspecified() {
			return "", fmt.Errorf("%q is not a server address", s)
		}
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String(), nil
	}
	if a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")); err == nil {
		if a.IsUnspecified() {
			return "", fmt.Errorf("%q is not a server address", s)
		}
		return netip.AddrPortFrom(a.Unmap(), 53).String(), nil
	}
	return "", fmt.Errorf("%q is not an IP address or IP:port (a host name cannot be used: it would need DNS itself)", s)
}

// systemServers reads the nameservers of a resolv.conf file.
func systemServers(path string) ([]string, error) {
	conf, err := dns.ClientConfigFromFile(path)
	if err != nil {
		return nil, err
	}
	port := conf.Port
	if port == "" {
		port = "53"
	}
	var out []string
	for _, s := range conf.Servers {
		a, err := netip.ParseAddr(strings.TrimSpace(s))
		if err != nil || a.IsUnspecified() {
			continue // resolv.conf takes addresses only; glibc ignores the rest too
		}
		out = append(out, net.JoinHostPort(a.Unmap().String(), port))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s lists no nameserver", path)
	}
	return out, nil
}

// answer is the outcome of one lookup (name, type), CNAMEs followed.
type answer struct {
	name   string // asked name, lower case, no trailing dot
	qtype  uint16
	server string // server that gave the final answer
	rcode  int
	rrs    []dns.RR // records of qtype for the name (after CNAMEs)
	cnames []string // names the CNAME chain went through, in order
	// err is set when no server gave a usable answer at all (timeouts,
	// refused connections...); failures names each server's failure.
	err      error
	failures []string
}

// found reports whether the lookup gave at least one record.
func (a *answer) found() bool {
	return a.err == nil && a.rcode == dns.RcodeSuccess && len(a.rrs) > 0
}

// canonical is the name the records belong to (last CNAME target).
func (a *answer) canonical() string {
	if len(a.cnames) > 0 {
		return a.cnames[len(a.cnames)-1]
	}
	return a.name
}

// via is " (via CNAME x)" or "".
func (a *answer) via() string {
	if len(a.cnames) == 0 {
		return ""
	}
	return " (via CNAME " + strings.Join(a.cnames, " → ") + ")"
}

func (a *answer) addrs() []netip.Addr {
	var out []netip.Addr
	seen := map[netip.Addr]bool{}
	for _, rr := range a.rrs {
		var ip net.IP
		switch v := rr.(type) {
		case *dns.A:
			ip = v.A
		case *dns.AAAA:
			ip = v.AAAA
		default:
			continue
		}
		addr, ok := netip.AddrFromSlice(ip)
		if !ok {
			continue
		}
		if _, isA := rr.(*dns.A); isA {
			addr = addr.Unmap()
		}
		if !seen[addr] {
			seen[addr] = true
			out = append(out, addr)
		}
	}
	return out
}

func (a *answer) ptrs() []string {
	var out []string
	seen := map[string]bool{}
	for _, rr := range a.rrs {
		if p, ok := rr.(*dns.PTR); ok {
			n := normName(p.Ptr)
			if !seen[n] {
				seen[n] = true
				out = append(out, n)
			}
		}
	}
	return out
}

// normName lower-cases a name and drops its trailing dot.
func normName(s string) string {
	return strings.TrimSuffix(strings.ToLower(s), ".")
}

// lookup asks for (name, qtype), following CNAMEs the server leaves
// unresolved in its answer.
func (r *resolver) lookup(ctx context.Context, name string, qtype uint16) answer {
	a := answer{name: normName(name), qtype: qtype}
	cur := dns.Fqdn(a.name)
	seen := map[string]bool{cur: true}
	for hop := 0; hop <= maxCNAMEHops; hop++ {
		msg, server, fails, err := r.exchange(ctx, cur, qtype)
		a.failures = append(a.failures, fails...)
		if err != nil {
			a.err = err
			return a
		}
		a.server, a.rcode = server, msg.Rcode
		// Walk the CNAME chain inside this answer.
		target := cur
		for {
			next := ""
			for _, rr := range msg.Answer {
				if c, ok := rr.(*dns.CNAME); ok && qtype != dns.TypeCNAME && strings.EqualFold(c.Hdr.Name, target) {
					next = dns.Fqdn(strings.ToLower(c.Target))
					break
				}
			}
			if next == "" {
				break
			}
			if seen[next] {
				a.err = fmt.Errorf("CNAME loop at %s", normName(next))
				return a
			}
			seen[next] = true
			a.cnames = append(a.cnames, normName(next))
			if len(a.cnames) > maxCNAMEHops {
				a.err = fmt.Errorf("CNAME chain of %s is longer than %d", a.name, maxCNAMEHops)
				return a
			}
			target = next
		}
		if msg.Rcode != dns.RcodeSuccess {
			return a
		}
		for _, rr := range msg.Answer {
			if rr.Header().Rrtype == qtype && strings.EqualFold(rr.Header().Name, target) {
				a.rrs = append(a.rrs, rr)
			}
		}
		if len(a.rrs) > 0 || target == cur {
			return a
		}
		// The answer stops at a CNAME: ask for its target.
		cur = target
	}
	a.err = fmt.Errorf("CNAME chain of %s is longer than %d", a.name, maxCNAMEHops)
	return a
}

// exchange sends one question to the servers in turn until one answers
// with something other than SERVFAIL or REFUSED. When every server fails
// but one answered with an rcode, that answer is returned; when none
// answered at all, err says so and failures names each server's failure.
func (r *resolver) exchange(ctx context.Context, fqdn string, qtype uint16) (msg *dns.Msg, server string, failures []string, err error) {
	var last *dns.Msg
	var lastServer string
	servers := r.order()
	for i, s := range servers {
		if ctx.Err() != nil {
			failures = append(failures, fmt.Sprintf("%s: %s", s, describeNetErr(ctx.Err(), r.timeout)))
			break
		}
		m, err := r.one(ctx, s, fqdn, qtype)
		if err != nil {
			failures = append(failures, fmt.Sprintf("%s: %s", s, describeNetErr(err, r.timeout)))
			if ctx.Err() == nil {
				r.mark(s, true)
			}
			continue
		}
		r.mark(s, false)
		if (m.Rcode == dns.RcodeServerFailure || m.Rcode == dns.RcodeRefused) && i < len(servers)-1 {
			failures = append(failures, fmt.Sprintf("%s: %s", s, dns.RcodeToString[m.Rcode]))
			last, lastServer = m, s
			continue
		}
		return m, s, failures, nil
	}
	if last != nil {
		return last, lastServer, failures, nil
	}
	return nil, "", failures, errNoAnswer
}

var errNoAnswer = errors.New("no DNS server answered")

// one asks one server: UDP with EDNS0, TCP when the answer is truncated,
// plain DNS when the server does not know EDNS0.
func (r *resolver) one(ctx context.Context, server, fqdn string, qtype uint16) (*dns.Msg, error) {
	q := func(network string, edns bool) (*dns.Msg, error) {
		m := new(dns.Msg)
		m.SetQuestion(fqdn, qtype)
		m.RecursionDesired = true
		if edns {
			m.SetEdns0(1232, false)
		}
		c := &dns.Client{Net: network, Timeout: r.timeout}
		resp, _, err := c.ExchangeContext(ctx, m, server)
		return resp, err
	}
	resp, err := q("udp", true)
	if err == nil && (resp.Rcode == dns.RcodeFormatError || resp.Rcode == dns.RcodeNotImplemented) && resp.IsEdns0() == nil {
		resp, err = q("udp", false)
	}
	if err == nil && resp.Truncated {
		resp, err = q("tcp", true)
	}
	return resp, err
}

// describeNetErr names a network failure in words an operator knows.
func describeNetErr(err error, timeout time.Duration) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.Canceled):
		return "cancelled"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, syscall.ETIMEDOUT),
		errors.As(err, &ne) && ne.Timeout():
		return fmt.Sprintf("timeout (no answer within %s)", timeout)
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.EHOSTUNREACH):
		return "host unreachable"
	case errors.Is(err, syscall.ENETUNREACH):
		return "network unreachable"
	}
	return err.Error()
}

// typeFor is A for an IPv4 address, AAAA for IPv6.
func typeFor(a netip.Addr) uint16 {
	if a.Is4() {
		return dns.TypeA
	}
	return dns.TypeAAAA
}

func otherType(t uint16) uint16 {
	if t == dns.TypeA {
		return dns.TypeAAAA
	}
	return dns.TypeA
}

func typeName(t uint16) string { return dns.TypeToString[t] }

func familyName(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}

// memoized lookups shared by the checks.

type memoKey struct {
	name  string
	qtype uint16
}

type memoEntry struct {
	done chan struct{}
	a    answer
}

// lookup returns the (memoized) answer for (name, qtype): concurrent checks
// asking the same question share one query.
func (r *runner) lookup(name string, qtype uint16) answer {
	k := memoKey{normName(name), qtype}
	r.memoMu.Lock()
	e, found := r.memo[k]
	if !found {
		e = &memoEntry{done: make(chan struct{})}
		e.a = answer{name: k.name, qtype: qtype, err: errors.New("lookup did not finish")}
		r.memo[k] = e
	}
	r.memoMu.Unlock()
	if found {
		<-e.done
		return e.a
	}
	defer close(e.done)
	e.a = r.res.lookup(r.ctx, k.name, qtype)
	return e.a
}

// failure explains a lookup that found no record, and says what to do.
// record is the zone-file line that should exist, e.g.
// "db.lab.test. IN A 10.77.0.10".
func (r *runner) failure(a answer, record string) (detail, fix string) {
	what := fmt.Sprintf("%s %s", a.name, typeName(a.qtype))
	create := fmt.Sprintf("create the record %s in the DNS zone that holds %s", record, a.canonical())
	if a.err != nil {
		if errors.Is(a.err, errNoAnswer) {
			detail = fmt.Sprintf("%s: no answer from any DNS server: %s", what, strings.Join(a.failures, "; "))
			if len(a.failures) == 1 {
				detail = fmt.Sprintf("%s: no answer from %s", what, a.failures[0])
			}
			return detail, r.serverFix()
		}
		detail = fmt.Sprintf("%s: %v", what, a.err)
		if len(a.failures) > 0 {
			detail += " (" + strings.Join(a.failures, "; ") + ")"
		}
		return detail, fmt.Sprintf("fix the records of %s (%v); the record needed: %s", a.name, a.err, record)
	}
	prior := ""
	if len(a.failures) > 0 {
		prior = " (before that: " + strings.Join(a.failures, "; ") + ")"
	}
	switch a.rcode {
	case dns.RcodeSuccess:
		return fmt.Sprintf("no %s record for %s%s: the name exists but has no %s record (NOERROR, no data, from %s)%s",
			typeName(a.qtype), a.name, a.via(), typeName(a.qtype), a.server, prior), create
	case dns.RcodeNameError:
		return fmt.Sprintf("NXDOMAIN from %s: %s does not exist%s%s", a.server, a.canonical(), a.via(), prior), create
	case dns.RcodeServerFailure:
		return fmt.Sprintf("SERVFAIL from %s for %s: the server failed to resolve it%s", a.server, what, prior),
			fmt.Sprintf("the DNS server %s failed on %s: check that it serves or can reach the zone holding %s and that the zone loads without errors (see the server's log); the record needed: %s",
				a.server, a.name, a.canonical(), record)
	case dns.RcodeRefused:
		return fmt.Sprintf("REFUSED from %s for %s: the server will not answer this node%s", a.server, what, prior),
			fmt.Sprintf("allow queries and recursion from this node on the DNS server %s (e.g. allow-query / allow-recursion), or pass --dns-server with a server that answers it", a.server)
	}
	rc := dns.RcodeToString[a.rcode]
	if rc == "" {
		rc = fmt.Sprintf("rcode %d", a.rcode)
	}
	return fmt.Sprintf("%s from %s for %s%s", rc, a.server, what, prior),
		fmt.Sprintf("make the DNS server %s answer %s normally; the record needed: %s", a.server, what, record)
}

// usable reports whether a lookup gave a real answer (records, NXDOMAIN or
// no data): false for timeouts, SERVFAIL, REFUSED and the like.
func (a *answer) usable() bool {
	return a.err == nil && (a.rcode == dns.RcodeSuccess || a.rcode == dns.RcodeNameError)
}

func (r *runner) serverFix() string {
	port := "port 53"
	for _, s := range r.res.servers {
		if _, p, err := net.SplitHostPort(s); err != nil || p != "53" {
			port = "its port"
		}
	}
	return fmt.Sprintf("make the DNS server answer this node: %s must be running and reachable over UDP and TCP on %s through any firewall; or pass --dns-server with a server that is",
		strings.Join(r.res.servers, ", "), port)
}
