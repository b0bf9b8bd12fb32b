package dnsupdate

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Answer is what a server answers for a name's addresses.
type Answer struct {
	Addrs []netip.Addr // A and AAAA, sorted; none when the name has none
	// TTL is the smallest TTL among the records: how long a resolver may
	// keep serving the answer. Zero when there are none.
	TTL time.Duration
	// Authoritative is the AA bit of both answers: the server holds the
	// zone, rather than a copy it cached.
	Authoritative bool
}

// Lookup asks server (IP or IP:port) for name's A and AAAA records,
// without recursion: the answer is the server's own, not one it fetched or
// cached from elsewhere. A name with no address is an Answer with no
// Addrs, not an error. Each query is bounded by ctx and DefaultTimeout.
func Lookup(ctx context.Context, server, name string) (Answer, error) {
	hp, err := parseServer(server)
	if err != nil {
		return Answer{}, err
	}
	return lookup(ctx, hp, dns.CanonicalName(name), DefaultTimeout)
}

func lookup(ctx context.Context, server, fqdn string, timeout time.Duration) (Answer, error) {
	ans := Answer{Authoritative: true}
	for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
		resp, err := query(ctx, server, fqdn, qtype, timeout)
		if err != nil {
			return Answer{}, fmt.Errorf("while asking for %s %s: %w", show(fqdn), dns.TypeToString[qtype], err)
		}
		if resp.Rcode != dns.RcodeSuccess && resp.Rcode != dns.RcodeNameError {
			return Answer{}, errorf(ErrServer, "%s answered %s for %s %s", server, answered(resp), show(fqdn), dns.TypeToString[qtype])
		}
		ans.Authoritative = ans.Authoritative && resp.Authoritative
		ans.add(fqdn, resp.Answer)
	}
	slices.SortFunc(ans.Addrs, netip.Addr.Compare)
	return ans, nil
}

// add takes the addresses of name, and of the names its CNAMEs point to,
// from an answer section.
func (a *Answer) add(name string, rrs []dns.RR) {
	owners := map[string]bool{name: true}
	for _, rr := range rrs {
		if c, ok := rr.(*dns.CNAME); ok && owners[dns.CanonicalName(c.Hdr.Name)] {
			owners[dns.CanonicalName(c.Target)] = true
		}
	}
	for _, rr := range rrs {
		h := rr.Header()
		if !owners[dns.CanonicalName(h.Name)] {
			continue
		}
		var ip netip.Addr
		switch r := rr.(type) {
		case *dns.A:
			ip, _ = netip.AddrFromSlice(r.A.To4())
		case *dns.AAAA:
			ip, _ = netip.AddrFromSlice(r.AAAA.To16())
		default:
			continue
		}
		ttl := time.Duration(h.Ttl) * time.Second
		if len(a.Addrs) == 0 || ttl < a.TTL {
			a.TTL = ttl
		}
		a.Addrs = append(a.Addrs, ip.Unmap())
	}
}

// query asks one question without recursion over UDP, then TCP when the
// answer is truncated.
func query(ctx context.Context, server, fqdn string, qtype uint16, timeout time.Duration) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(fqdn, qtype)
	m.RecursionDesired = false
	m.SetEdns0(1232, false)
	resp, _, err := exchangeOnce(ctx, &dns.Client{Net: "udp", Timeout: timeout}, m, server)
	if err == nil && resp.Truncated {
		resp, _, err = exchangeOnce(ctx, &dns.Client{Net: "tcp", Timeout: timeout}, m, server)
	}
	return resp, err
}

// WaitAnswer asks the zone's primary server, every so often, for name's
// addresses until they are exactly want, and says how long that took. It
// is how a switchover knows that the update is served, and when.
func (u *Updater) WaitAnswer(ctx context.Context, name string, want []netip.Addr, every time.Duration) (time.Duration, error) {
	fqdn, err := u.inZone(name)
	if err != nil {
		return 0, err
	}
	if every <= 0 {
		every = 100 * time.Millisecond
	}
	want = uniqueAddrs(want)
	start := time.Now()
	t := time.NewTicker(every)
	defer t.Stop()
	var lastErr error
	var lastAddrs []netip.Addr
	for {
		a, err := lookup(ctx, u.server, fqdn, u.timeout)
		if err == nil && slices.Equal(a.Addrs, want) {
			return time.Since(start), nil
		}
		// A lookup cut short by ctx says nothing new about the server.
		if err == nil || ctxErr(ctx) == nil || (lastErr == nil && lastAddrs == nil) {
			lastErr, lastAddrs = err, a.Addrs
		}
		select {
		case <-ctx.Done():
			waited := time.Since(start).Round(time.Millisecond)
			if lastErr != nil {
				return waited, fmt.Errorf("after %s, still no answer for %s (want %s): %w", waited, show(fqdn), showAddrs(want), lastErr)
			}
			return waited, fmt.Errorf("after %s, %s still answers %s for %s, not %s: %w",
				waited, u.server, showAddrs(lastAddrs), show(fqdn), showAddrs(want), ctx.Err())
		case <-t.C:
		}
	}
}

func showAddrs(addrs []netip.Addr) string {
	if len(addrs) == 0 {
		return "no address"
	}
	s := make([]string, len(addrs))
	for i, a := range addrs {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}
