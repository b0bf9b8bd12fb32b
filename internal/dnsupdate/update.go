package dnsupdate

import (
	"context"
	"crypto/rand"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// fudge is the clock difference the server may allow, as nsupdate and
// BIND use: RFC 8945's recommended 300 seconds.
const fudge = 300

// Point makes name's A and AAAA records exactly addrs, in one update: both
// RRsets are deleted and the new records added, so no client that asks in
// between sees the name without an address or with both primaries'.
func (u *Updater) Point(ctx context.Context, name string, addrs []netip.Addr) error {
	rrs, err := u.pointRecords(name, addrs)
	if err != nil {
		return err
	}
	return u.point(ctx, rrs)
}

// pointRecords checks name and addrs and makes the records Point writes.
func (u *Updater) pointRecords(name string, addrs []netip.Addr) ([]dns.RR, error) {
	fqdn, err := u.inZone(name)
	if err != nil {
		return nil, err
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("no address to point %s at", show(fqdn))
	}
	var rrs []dns.RR
	for _, a := range uniqueAddrs(addrs) {
		if !a.IsValid() || a.IsUnspecified() {
			return nil, fmt.Errorf("%s is not an address to point %s at", a, show(fqdn))
		}
		rrs = append(rrs, addrRecord(fqdn, a, u.ttl))
	}
	return rrs, nil
}

func (u *Updater) point(ctx context.Context, rrs []dns.RR) error {
	name := rrs[0].Header().Name
	if err := u.update(ctx, pointMessage(u.zone, rrs)); err != nil {
		return fmt.Errorf("while pointing %s at %s: %w", show(name), addrList(rrs), err)
	}
	return nil
}

// pointMessage is the UPDATE that replaces name's A and AAAA RRsets with
// rrs. RFC 2136 applies the update section in order, so the deletions
// come first and do not remove what is added.
func pointMessage(zone string, rrs []dns.RR) *dns.Msg {
	name := rrs[0].Header().Name
	m := new(dns.Msg)
	m.SetUpdate(zone)
	m.RemoveRRset([]dns.RR{
		&dns.A{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA}},
		&dns.AAAA{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeAAAA}},
	})
	m.Insert(rrs)
	return m
}

// Remove deletes the one record name → addr, leaving any other address of
// name in place: the old primary takes back its own address, never the
// new primary's. Removing a record that is not there succeeds.
func (u *Updater) Remove(ctx context.Context, name string, addr netip.Addr) error {
	fqdn, err := u.inZone(name)
	if err != nil {
		return err
	}
	if !addr.IsValid() {
		return fmt.Errorf("no address to remove from %s", show(fqdn))
	}
	addr = addr.Unmap()
	if err := u.update(ctx, removeMessage(u.zone, addrRecord(fqdn, addr, 0))); err != nil {
		return fmt.Errorf("while removing %s from %s: %w", addr, show(fqdn), err)
	}
	return nil
}

func removeMessage(zone string, rr dns.RR) *dns.Msg {
	m := new(dns.Msg)
	m.SetUpdate(zone)
	m.Remove([]dns.RR{rr})
	return m
}

// CheckKey proves that the server accepts the key for the zone, without
// changing the zone: it sends an UPDATE with no update section whose one
// prerequisite ("this random name exists") is false. The server checks the
// signature first, then allow-update, and only then the prerequisite.
// What BIND 9.18 answers (seen by the integration test, and in its log):
//
//   - good key, listed in allow-update: NXDOMAIN, signed ("'name in use'
//     prerequisite not satisfied"). CheckKey returns nil.
//   - wrong secret: NOTAUTH with TSIG error BADSIG, not signed.
//   - key name unknown to the server, or known with another algorithm:
//     NOTAUTH with TSIG error BADKEY, not signed.
//   - good key that allow-update does not list: REFUSED, signed ("update
//     denied").
//   - a zone the server does not hold: NOTAUTH with no TSIG error, signed.
//
// update-policy is checked later, per record of the update section (BIND
// answers REFUSED to a Point the policy does not grant), so with
// update-policy CheckKey proves the key, not that the policy lets it change
// the cluster name.
func (u *Updater) CheckKey(ctx context.Context) error {
	probe, err := preflightName(u.zone)
	if err != nil {
		return err
	}
	if err := u.exchangeSigned(ctx, checkKeyMessage(u.zone, probe), dns.RcodeNameError, dns.RcodeSuccess); err != nil {
		return fmt.Errorf("while checking the TSIG key: %w", err)
	}
	return nil
}

// checkKeyMessage's update section is empty, so that even if the name
// did exist (and the prerequisite held) nothing would change.
func checkKeyMessage(zone, probe string) *dns.Msg {
	m := new(dns.Msg)
	m.SetUpdate(zone)
	m.NameUsed([]dns.RR{&dns.ANY{Hdr: dns.RR_Header{Name: probe}}})
	return m
}

// preflightName is a name no zone holds: _tandem-preflight-<random>.ZONE.
func preflightName(zone string) (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return "_tandem-preflight-" + hex.EncodeToString(b) + "." + zone, nil
}

// update sends m and wants NOERROR.
func (u *Updater) update(ctx context.Context, m *dns.Msg) error {
	return u.exchangeSigned(ctx, m, dns.RcodeSuccess)
}

// exchangeSigned signs m, sends it and checks the answer: one of the
// rcodes ok, signed with the key. A success that is not signed is refused:
// anyone on the path could have forged it.
func (u *Updater) exchangeSigned(ctx context.Context, m *dns.Msg, ok ...int) error {
	resp, verr, err := u.exchange(ctx, m)
	if err != nil {
		return err
	}
	if t := resp.IsTsig(); t != nil && t.Error != dns.RcodeSuccess {
		return u.tsigError(resp, t.Error)
	}
	if slices.Contains(ok, resp.Rcode) {
		switch {
		case resp.IsTsig() == nil:
			return errorf(ErrNoAnswer, "%s answered %s without a TSIG signature: is it the zone's primary server?", u.server, answered(resp))
		case verr != nil:
			return errorf(ErrNoAnswer, "%s answered %s, but its TSIG signature does not verify (%v)", u.server, answered(resp), verr)
		}
		return nil
	}
	return u.rcodeError(resp)
}

func (u *Updater) tsigError(resp *dns.Msg, tsigErr uint16) error {
	if tsigErr == dns.RcodeBadTime {
		return errorf(ErrClock, "%s answered %s: the clocks of this host and %s differ by more than %ds: check NTP on both", u.server, answered(resp), u.server, fudge)
	}
	return errorf(ErrKeyRefused, "the TSIG key %s was refused by %s (%s): check key name, algorithm and secret", show(u.key.name), u.server, answered(resp))
}

func (u *Updater) rcodeError(resp *dns.Msg) error {
	switch resp.Rcode {
	case dns.RcodeRefused:
		return errorf(ErrUpdateRefused, "%s refuses updates to %s from this host (%s): check allow-update / update-policy", u.server, show(u.zone), answered(resp))
	case dns.RcodeNotZone:
		return errorf(ErrNotZone, "%s answered that the name is not in zone %s (%s): is it in a zone delegated below?", u.server, show(u.zone), answered(resp))
	case dns.RcodeNotAuth:
		// A TSIG failure came with a TSIG error and was handled before:
		// a plain NOTAUTH is about the zone.
		return errorf(ErrNotAuth, "%s is not a primary server for %s (%s): check the zone and the server", u.server, show(u.zone), answered(resp))
	case dns.RcodeServerFailure:
		return errorf(ErrServer, "%s failed the update (%s): see its log (is the zone loaded?)", u.server, answered(resp))
	}
	return errorf(ErrServer, "%s answered %s to the update of %s", u.server, answered(resp), show(u.zone))
}

// exchange sends m once, signed, over UDP, or TCP when m is too large for
// UDP or the answer was truncated. verr is the answer's TSIG verification
// error, kept apart from err because a refusal is not signed and still
// says what is wrong.
//
// Sending the update again over TCP after a truncated answer is harmless:
// every update this package sends leaves the zone the same when applied
// twice.
func (u *Updater) exchange(ctx context.Context, m *dns.Msg) (resp *dns.Msg, verr, err error) {
	network := u.network(m)
	resp, verr, err = u.send(ctx, network, u.sign(m))
	if err == nil && resp.Truncated && network == "udp" {
		resp, verr, err = u.send(ctx, "tcp", u.sign(m))
	}
	return resp, verr, err
}

// sign returns a copy of m with a TSIG record to be signed as it is sent.
// A copy, because sending strips the record from the message it signs.
func (u *Updater) sign(m *dns.Msg) *dns.Msg {
	c := m.Copy()
	c.Id = dns.Id()
	c.SetTsig(u.key.name, u.alg, fudge, u.now().Unix())
	return c
}

// network is UDP for an update that fits in 512 bytes once signed (the
// most a server must take without EDNS0), TCP for a larger one.
func (u *Updater) network(m *dns.Msg) string {
	if u.signedLen(m) > dns.MinMsgSize {
		return "tcp"
	}
	return "udp"
}

// signedLen is m's size once signed: the TSIG record with the longest MAC.
func (u *Updater) signedLen(m *dns.Msg) int {
	return u.sign(m).Len() + sha512.Size
}

func (u *Updater) send(ctx context.Context, network string, m *dns.Msg) (resp *dns.Msg, verr, err error) {
	c := &dns.Client{Net: network, Timeout: u.timeout, TsigProvider: u.key}
	return exchangeOnce(ctx, c, m, u.server)
}

// exchangeOnce is Client.ExchangeContext, but ends when ctx is cancelled,
// which miekg/dns only does at ctx's deadline. An answer that arrived but
// failed TSIG verification is returned with that failure as verr.
func exchangeOnce(ctx context.Context, c *dns.Client, m *dns.Msg, server string) (resp *dns.Msg, verr, err error) {
	start := time.Now()
	co, err := c.DialContext(ctx, server)
	if err != nil {
		return nil, nil, netError(server, time.Since(start), err)
	}
	defer co.Close()
	stop := context.AfterFunc(ctx, func() { co.Close() })
	defer stop()
	resp, _, err = c.ExchangeWithConnContext(ctx, m, co)
	if cerr := ctxErr(ctx); cerr != nil {
		return nil, nil, netError(server, time.Since(start), cerr)
	}
	if err != nil && resp != nil && resp.Id == m.Id && isTsigFailure(err) {
		return resp, err, nil
	}
	if err != nil {
		return nil, nil, netError(server, time.Since(start), err)
	}
	return resp, nil, nil
}

// ctxErr is ctx.Err(), and DeadlineExceeded as soon as ctx's deadline is
// past: ctx's own timer marks it done a moment later, and a read whose
// deadline was ctx's may fail in between.
func ctxErr(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		return context.DeadlineExceeded
	}
	return nil
}

// isTsigFailure is an answer that arrived but whose signature was not
// verified. miekg/dns does not even try on a NOTAUTH answer (ErrAuth).
func isTsigFailure(err error) bool {
	for _, e := range []error{dns.ErrSig, dns.ErrTime, dns.ErrSecret, dns.ErrKeyAlg, dns.ErrAuth, dns.ErrNoSig} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// inZone is name, absolute and canonical, when it is in the zone.
func (u *Updater) inZone(name string) (string, error) {
	name = strings.TrimSpace(name)
	if _, ok := dns.IsDomainName(name); !ok || name == "" {
		return "", fmt.Errorf("%q is not a DNS name", name)
	}
	fqdn := dns.CanonicalName(name)
	if !dns.IsSubDomain(u.zone, fqdn) {
		return "", fmt.Errorf("%s is not in zone %s", show(fqdn), show(u.zone))
	}
	return fqdn, nil
}

func addrRecord(fqdn string, a netip.Addr, ttl uint32) dns.RR {
	if a.Is4() {
		return &dns.A{Hdr: dns.RR_Header{Name: fqdn, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl}, A: net.IP(a.AsSlice())}
	}
	return &dns.AAAA{Hdr: dns.RR_Header{Name: fqdn, Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: ttl}, AAAA: net.IP(a.AsSlice())}
}

// uniqueAddrs is addrs unmapped (::ffff:192.0.2.1 is an A record), sorted,
// without repeats.
func uniqueAddrs(addrs []netip.Addr) []netip.Addr {
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, a.Unmap())
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}

func addrList(rrs []dns.RR) string {
	var s []string
	for _, rr := range rrs {
		switch r := rr.(type) {
		case *dns.A:
			s = append(s, r.A.String())
		case *dns.AAAA:
			s = append(s, r.AAAA.String())
		}
	}
	return strings.Join(s, ", ")
}

// InZone says whether name is in the zone this Updater updates, so that a
// cluster whose name it could never point is refused at assembly.
func (u *Updater) InZone(name string) error {
	_, err := u.inZone(name)
	return err
}

// TTL is the TTL of the records this Updater writes.
func (u *Updater) TTL() time.Duration { return time.Duration(u.ttl) * time.Second }
