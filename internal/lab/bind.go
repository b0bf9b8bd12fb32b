package lab

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/miekg/dns"
)

// The DNS server of a cross-subnet lab: BIND 9 (Debian's bind9), because
// the cluster's DNS name there is moved by RFC 2136 dynamic updates, which
// dnsmasq does not take. The lab writes named.conf, one zone file for its
// domain and one reverse zone per segment, all rendered from the same Zone
// (dns.json) as dnsmasq's records, so `lab dns` edits work alike; and a
// TSIG key that may update the forward zone, copied to each node as the
// secret file tandemd will read.

const (
	// NamedBinary is BIND 9's server.
	NamedBinary = "named"
	// TSIGAlgorithm is the lab key's algorithm, as BIND writes it.
	TSIGAlgorithm = "hmac-sha256"
	// DNSKeyFile is the name of the key file in each node's directory.
	DNSKeyFile = "dns-update.key"
	// zoneTTL is the TTL of the records the lab writes; dynamic updates
	// bring their own (tandem's are short).
	zoneTTL = 60
	// negativeTTL is the SOA minimum: how long a resolver may remember
	// that a name does not exist, short so that a cluster name added by an
	// update is seen soon by whoever asked before.
	negativeTTL = 5
)

// Paths of the BIND server's files: all in <lab>/named.
func (l *Layout) NamedDir() string      { return filepath.Join(l.Dir, "named") }
func (l *Layout) NamedConfPath() string { return filepath.Join(l.NamedDir(), "named.conf") }
func (l *Layout) namedPidPath() string  { return filepath.Join(l.NamedDir(), "named.pid") }
func (l *Layout) namedLogPath() string  { return filepath.Join(l.NamedDir(), "named.log") }

// NamedKeyPath is the TSIG key named.conf includes; DNSKeyPath is the copy
// in node's directory, for its tandemd. Both hold the key statement
// (key "NAME" { algorithm …; secret "…"; };), mode 0600.
func (l *Layout) NamedKeyPath() string          { return filepath.Join(l.NamedDir(), "update.key") }
func (l *Layout) DNSKeyPath(node string) string { return filepath.Join(l.NodeDir(node), DNSKeyFile) }

// TSIGKeyName is the name of the lab's update key: the key tandemd signs
// with, named after the lab.
func (l *Layout) TSIGKeyName() string { return "tandemd-" + l.Name }

// zoneFilePath is where the zone called zone is kept.
func (l *Layout) zoneFilePath(zone string) string {
	return filepath.Join(l.NamedDir(), zone+".zone")
}

// ReverseZones are the reverse zones the lab's BIND serves: one per segment.
func (l *Layout) ReverseZones() []string {
	var out []string
	for _, s := range l.Segments {
		out = append(out, reverseZoneOf(netip.MustParsePrefix(s.Subnet)))
	}
	return out
}

// TSIGKey is a key as named.conf and the secret file hold it.
type TSIGKey struct {
	Name      string
	Algorithm string
	Secret    string // base64
}

// newTSIGKey makes a key with a random 256-bit secret, the size
// tsig-keygen gives hmac-sha256.
func newTSIGKey(name string) (TSIGKey, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return TSIGKey{}, fmt.Errorf("while making the lab's TSIG key: %w", err)
	}
	return TSIGKey{Name: name, Algorithm: TSIGAlgorithm, Secret: base64.StdEncoding.EncodeToString(b)}, nil
}

// Statement is the key as tsig-keygen prints it, which named.conf
// includes and internal/dnsupdate reads.
func (k TSIGKey) Statement() string {
	return fmt.Sprintf("key %q {\n\talgorithm %s;\n\tsecret %q;\n};\n", k.Name, k.Algorithm, k.Secret)
}

// NamedConf is named.conf: it answers for the lab's zones only, on the dns
// host's address only, recursing for no one and sending nothing (no
// notify, no transfers, no control channel), with every file it writes in
// NamedDir. The lab's key may update the forward zone; the reverse zones
// take no updates.
func (l *Layout) NamedConf() string {
	dir := l.NamedDir()
	var b strings.Builder
	fmt.Fprintf(&b, `// BIND 9 configuration of tandem lab %[1]s; written by `+"`tandem lab up --cross-subnet`"+`.
options {
	directory %[2]q;
	pid-file %[3]q;
	session-keyfile %[4]q;
	managed-keys-directory %[2]q;
	listen-on port 53 { %[5]s; };
	listen-on-v6 { none; };
	recursion no;
	notify no;
	allow-transfer { none; };
	dnssec-validation no;
	querylog yes;
};
controls { };
include %[6]q;
zone %[7]q {
	type primary;
	file %[8]q;
	allow-update { key %[9]q; };
	// `+"`tandem lab dns rm dns`"+` removes the name server's own address;
	// the zone must still load, as a broken site's would.
	check-integrity no;
};
`, l.Name, dir, l.namedPidPath(), filepath.Join(dir, "session.key"), l.DNSServer,
		l.NamedKeyPath(), l.Domain, l.zoneFilePath(l.Domain), l.TSIGKeyName())
	for _, z := range l.ReverseZones() {
		fmt.Fprintf(&b, "zone %q {\n\ttype primary;\n\tfile %q;\n};\n", z, l.zoneFilePath(z))
	}
	return b.String()
}

// NamedArgs is named's command line: in the foreground (-g, which also
// logs to stderr, into the lab's log file, as dnsmasq's --keep-in-foreground
// lets the lab supervise it), IPv4 only, one worker (-n 1: the lab shares
// its machine) and the lab's configuration. Run as root without -u, named
// stays root, which the lab directory (root's) needs.
func (l *Layout) NamedArgs() []string {
	return []string{"-g", "-4", "-n", "1", "-c", l.NamedConfPath()}
}

// writeNamedFiles makes the lab's TSIG key and writes it, named.conf and
// the key's copy for each node. The key is new on every `up`, as a site's
// would be for a new cluster; the zone files come from SaveZone.
func writeNamedFiles(l *Layout) error {
	if err := os.MkdirAll(l.NamedDir(), 0o700); err != nil {
		return fmt.Errorf("while creating %s: %w", l.NamedDir(), err)
	}
	key, err := newTSIGKey(l.TSIGKeyName())
	if err != nil {
		return err
	}
	paths := []string{l.NamedKeyPath()}
	for _, h := range l.Nodes() {
		if err := os.MkdirAll(l.NodeDir(h.Name), 0o755); err != nil {
			return fmt.Errorf("while creating %s: %w", l.NodeDir(h.Name), err)
		}
		paths = append(paths, l.DNSKeyPath(h.Name))
	}
	for _, p := range paths {
		if err := writeSecretFile(p, key.Statement()); err != nil {
			return fmt.Errorf("while writing the lab's TSIG key to %s: %w", p, err)
		}
	}
	if err := writeFileAtomic(l.NamedConfPath(), []byte(l.NamedConf())); err != nil {
		return fmt.Errorf("while writing %s: %w", l.NamedConfPath(), err)
	}
	return nil
}

// writeSecretFile writes a file only root may read, never briefly
// readable by others on the way (the file is created 0600, then renamed).
func writeSecretFile(path, content string) error {
	tmp := path + ".tmp"
	_ = os.Remove(tmp)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(content); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// ZoneFile is one zone file of the lab's BIND.
type ZoneFile struct {
	Zone string // lab.test, 1.77.10.in-addr.arpa
	Path string
	Text string
}

// BINDZones renders the zone as BIND zone files with the given SOA serial:
// the lab's domain with every forward record, and each segment's reverse
// zone with the PTRs of its addresses. BIND serves only zones it holds, so
// a record outside them is an error naming what it can serve, where
// dnsmasq answers any name it is given.
func (z *Zone) BINDZones(l *Layout, serial uint32) ([]ZoneFile, error) {
	soa := func(zone string) string {
		return fmt.Sprintf("$TTL %d\n%s.\tIN\tSOA\tdns.%s. hostmaster.%s. %d 60 30 600 %d\n%s.\tIN\tNS\tdns.%s.\n",
			zoneTTL, zone, l.Domain, l.Domain, serial, negativeTTL, zone, l.Domain)
	}
	head := func(zone string) string {
		how := "`tandem lab dns`"
		if zone == l.Domain {
			how += " (which discards dynamic updates)\n; or with an update signed by key " + l.TSIGKeyName()
		}
		return fmt.Sprintf("; zone %s of tandem lab %s, rendered from dns.json: change it with %s.\n", zone, l.Name, how)
	}
	var problems []string
	fwd := head(l.Domain) + soa(l.Domain)
	names := make([]string, 0, len(z.Forward))
	for n := range z.Forward {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if n != l.Domain && !strings.HasSuffix(n, "."+l.Domain) {
			problems = append(problems, fmt.Sprintf("%s is outside the lab's zone %s", n, l.Domain))
			continue
		}
		for _, ip := range z.Forward[n] {
			t := "A"
			if strings.Contains(ip, ":") {
				t = "AAAA"
			}
			fwd += fmt.Sprintf("%s.\tIN\t%s\t%s\n", n, t, ip)
		}
	}
	files := []ZoneFile{{Zone: l.Domain, Path: l.zoneFilePath(l.Domain), Text: fwd}}

	reverse := map[string][]string{} // zone → lines
	ips := make([]string, 0, len(z.Reverse))
	for ip := range z.Reverse {
		ips = append(ips, ip)
	}
	sort.Strings(ips)
	zones := l.ReverseZones()
	for _, ip := range ips {
		zone, arpa, ok := l.reverseZoneFor(ip)
		if !ok {
			problems = append(problems, fmt.Sprintf("the PTR of %s is outside the lab's reverse zones (%s)", ip, strings.Join(zones, ", ")))
			continue
		}
		for _, n := range z.Reverse[ip] {
			reverse[zone] = append(reverse[zone], fmt.Sprintf("%s\tIN\tPTR\t%s.\n", arpa, n))
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("BIND serves only the lab's own zones, so it cannot hold: %s", strings.Join(problems, "; "))
	}
	for _, zone := range zones {
		files = append(files, ZoneFile{Zone: zone, Path: l.zoneFilePath(zone), Text: head(zone) + soa(zone) + strings.Join(reverse[zone], "")})
	}
	return files, nil
}

// reverseZoneFor finds the reverse zone that holds ip's PTR, and the PTR's
// owner name (absolute).
func (l *Layout) reverseZoneFor(ip string) (zone, arpa string, ok bool) {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return "", "", false
	}
	for _, s := range l.Segments {
		p := netip.MustParsePrefix(s.Subnet)
		if p.Contains(a) {
			arpa, err := dns.ReverseAddr(a.String())
			if err != nil {
				return "", "", false
			}
			return reverseZoneOf(p), arpa, true
		}
	}
	return "", "", false
}

// reverseZoneOf is the in-addr.arpa or ip6.arpa zone of prefix p, rounded
// out to a whole octet (IPv4) or nibble (IPv6).
func reverseZoneOf(p netip.Prefix) string {
	b := p.Addr().AsSlice()
	var labels []string
	if p.Addr().Is4() {
		for i := p.Bits()/8 - 1; i >= 0; i-- {
			labels = append(labels, fmt.Sprint(b[i]))
		}
		return strings.Join(append(labels, "in-addr.arpa"), ".")
	}
	for i := p.Bits()/4 - 1; i >= 0; i-- {
		nib := b[i/2] >> 4
		if i%2 == 1 {
			nib = b[i/2] & 0xf
		}
		labels = append(labels, fmt.Sprintf("%x", nib))
	}
	return strings.Join(append(labels, "ip6.arpa"), ".")
}

// DNSProgram is the DNS server the lab runs: dnsmasq, or named in a
// cross-subnet lab.
func (l *Layout) DNSProgram() string {
	if l.CrossSubnet {
		return NamedBinary
	}
	return Dnsmasq
}
