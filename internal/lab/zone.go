package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Zone is what the lab's DNS server answers: forward records (a name's
// A/AAAA addresses) and reverse records (an address's PTR names), kept
// apart so that a test can break one without the other. `lab up` fills it
// with DNSRecords; `tandem lab dns` edits it. It is stored as JSON in the
// lab directory and rendered into dnsmasq's configuration.
type Zone struct {
	Forward map[string][]string `json:"forward"` // name → addresses
	Reverse map[string][]string `json:"reverse"` // address → names
}

// DefaultZone is the lab's zone as up builds it.
func (l *Layout) DefaultZone() *Zone {
	z := &Zone{Forward: map[string][]string{}, Reverse: map[string][]string{}}
	for _, r := range l.DNSRecords() {
		z.Forward[r.Name] = append(z.Forward[r.Name], r.IP)
		z.Reverse[r.IP] = append(z.Reverse[r.IP], r.Name)
	}
	return z
}

// LoadZone reads the lab's zone; a lab without one has the default zone.
func (l *Layout) LoadZone() (*Zone, error) {
	b, err := os.ReadFile(l.DNSZonePath())
	if errors.Is(err, os.ErrNotExist) {
		return l.DefaultZone(), nil
	}
	if err != nil {
		return nil, err
	}
	z := &Zone{}
	if err := json.Unmarshal(b, z); err != nil {
		return nil, fmt.Errorf("the DNS records of lab %s (%s) are damaged: %w; `tandem lab dns reset --name %s` restores them", l.Name, l.DNSZonePath(), err, l.Name)
	}
	if z.Forward == nil {
		z.Forward = map[string][]string{}
	}
	if z.Reverse == nil {
		z.Reverse = map[string][]string{}
	}
	return z, nil
}

// SaveZone writes the zone and what the DNS server reads of it: dnsmasq's
// configuration, or BIND's zone files. A zone BIND cannot serve (a record
// outside the lab's zones) is refused before anything is written.
func (l *Layout) SaveZone(z *Zone) error {
	if !l.CrossSubnet {
		if err := writeJSON(l.DNSZonePath(), z); err != nil {
			return fmt.Errorf("while writing the lab's DNS records: %w", err)
		}
		if err := writeFileAtomic(l.DNSConfPath(), []byte(z.DnsmasqConf(l.Name))); err != nil {
			return fmt.Errorf("while writing the DNS server's configuration: %w", err)
		}
		return nil
	}
	files, err := z.BINDZones(l, zoneSerial())
	if err != nil {
		return err
	}
	if err := writeJSON(l.DNSZonePath(), z); err != nil {
		return fmt.Errorf("while writing the lab's DNS records: %w", err)
	}
	for _, f := range files {
		if err := writeFileAtomic(f.Path, []byte(f.Text)); err != nil {
			return fmt.Errorf("while writing zone %s: %w", f.Zone, err)
		}
		// named's journal holds the dynamic updates made to the old file;
		// applied to the new one it would be refused as out of step.
		if err := os.Remove(f.Path + ".jnl"); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("while removing the journal of zone %s: %w", f.Zone, err)
		}
	}
	return nil
}

// CheckZone tells whether the lab's DNS server can serve z.
func (l *Layout) CheckZone(z *Zone) error {
	if !l.CrossSubnet {
		return nil
	}
	_, err := z.BINDZones(l, 1)
	return err
}

// zoneSerial is a SOA serial that grows with each rewrite of the zone
// files: the time in seconds, as many sites number theirs.
func zoneSerial() uint32 { return uint32(time.Now().Unix()) }

// QualifyName turns a name given by an operator into the fully qualified,
// lower-case name the zone holds: a name without a dot is in the lab's
// domain ("b" → "b.lab.test"), a trailing dot is dropped.
func (l *Layout) QualifyName(name string) (string, error) {
	n := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(name), "."))
	if n != "" && !strings.Contains(n, ".") {
		n += "." + l.Domain
	}
	if !validHostName(n) {
		return "", fmt.Errorf("%q is not a host name: labels of letters, digits, '-' and '_' joined by dots, such as b or db.%s", name, l.Domain)
	}
	return n, nil
}

func validHostName(n string) bool {
	if n == "" || len(n) > 253 {
		return false
	}
	for _, label := range strings.Split(n, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// ParseRecordIP checks an address given for a record and returns its
// canonical form. Any address of either family is accepted, so that a test
// can give a lab a record of the wrong family on purpose.
func ParseRecordIP(s string) (string, error) {
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil || a.Zone() != "" {
		return "", fmt.Errorf("%q is not an IP address (such as 10.77.0.12 or fd00:77::12)", s)
	}
	return a.Unmap().String(), nil
}

// Set gives name exactly the addresses ips (forward records). With ptr,
// each of those addresses' PTR names name (replacing what it named), and
// PTRs of name's former addresses that named it are removed; without ptr,
// reverse records are left as they are.
func (z *Zone) Set(name string, ips []string, ptr bool) {
	old := z.Forward[name]
	z.Forward[name] = sortedUnique(ips)
	if !ptr {
		return
	}
	for _, ip := range old {
		z.dropPTR(ip, name)
	}
	for _, ip := range ips {
		z.Reverse[ip] = []string{name}
	}
}

// Remove deletes name's forward records and every PTR that names it. It
// reports whether there was anything to delete.
func (z *Zone) Remove(name string) bool {
	_, had := z.Forward[name]
	delete(z.Forward, name)
	for ip, names := range z.Reverse {
		if slices.Contains(names, name) {
			had = true
			z.dropPTR(ip, name)
		}
	}
	return had
}

// SetPTR makes ip's reverse record name name; an empty name removes it.
func (z *Zone) SetPTR(ip, name string) {
	if name == "" {
		delete(z.Reverse, ip)
		return
	}
	z.Reverse[ip] = []string{name}
}

func (z *Zone) dropPTR(ip, name string) {
	names := slices.DeleteFunc(slices.Clone(z.Reverse[ip]), func(n string) bool { return n == name })
	if len(names) == 0 {
		delete(z.Reverse, ip)
		return
	}
	z.Reverse[ip] = names
}

func sortedUnique(ss []string) []string {
	out := slices.Clone(ss)
	slices.Sort(out)
	return slices.Compact(out)
}

// DnsmasqConf renders the zone as dnsmasq configuration. dnsmasq has no
// forward-only or reverse-only host record, so:
//   - a name whose every address has a reverse record becomes host-record
//     lines (A/AAAA, and NODATA for the other family); their automatic PTR
//     is always overridden, because every such address also gets explicit
//     ptr-record lines, which dnsmasq answers instead;
//   - a name with an address lacking a reverse record becomes address=
//     lines, which give no PTR. dnsmasq then answers NXDOMAIN for the other
//     family and also answers names below it: an edited record, not a
//     healthy one;
//   - every reverse record becomes a ptr-record line.
func (z *Zone) DnsmasqConf(lab string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# DNS records of tandem lab %s, rendered from dns.json; change them with `tandem lab dns`.\n", lab)
	names := make([]string, 0, len(z.Forward))
	for n := range z.Forward {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		ips := z.Forward[n]
		hostRecord := true
		for _, ip := range ips {
			if len(z.Reverse[ip]) == 0 {
				hostRecord = false
			}
		}
		for _, ip := range ips {
			if hostRecord {
				fmt.Fprintf(&b, "host-record=%s,%s\n", n, ip)
			} else {
				fmt.Fprintf(&b, "address=/%s/%s\n", n, ip)
			}
		}
	}
	ips := make([]string, 0, len(z.Reverse))
	for ip := range z.Reverse {
		ips = append(ips, ip)
	}
	sort.Strings(ips)
	for _, ip := range ips {
		arpa, err := dns.ReverseAddr(ip)
		if err != nil {
			continue
		}
		for _, n := range z.Reverse[ip] {
			fmt.Fprintf(&b, "ptr-record=%s,%s\n", strings.TrimSuffix(arpa, "."), n)
		}
	}
	return b.String()
}

// Lines lists the zone for people: one "NAME A|AAAA IP" line per forward
// record and one "IP PTR NAME" line per reverse record, sorted.
func (z *Zone) Lines() []string {
	var fwd, rev []string
	for n, ips := range z.Forward {
		for _, ip := range ips {
			t := "A"
			if strings.Contains(ip, ":") {
				t = "AAAA"
			}
			fwd = append(fwd, fmt.Sprintf("%s\t%s\t%s", n, t, ip))
		}
	}
	for ip, names := range z.Reverse {
		for _, n := range names {
			rev = append(rev, fmt.Sprintf("%s\tPTR\t%s", ip, n))
		}
	}
	sort.Strings(fwd)
	sort.Strings(rev)
	return append(fwd, rev...)
}
