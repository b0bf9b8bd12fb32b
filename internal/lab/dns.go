package lab

import (
	"fmt"
	"net/netip"
	"strings"
)

// Dnsmasq is the DNS server's executable.
const Dnsmasq = "dnsmasq"

// DNSRecord is one name and its address, forward and reverse.
type DNSRecord struct {
	Name string
	IP   string
}

// DNSRecords lists the names the lab's DNS server answers for after up:
// every host and the cluster DNS name, forward (A or AAAA) and reverse (PTR).
// The cluster name is there only with a cluster IP.
func (l *Layout) DNSRecords() []DNSRecord {
	var out []DNSRecord
	for _, h := range l.Hosts {
		out = append(out, DNSRecord{Name: h.FQDN, IP: h.IP})
	}
	if l.ClusterIP == "" {
		// A cross-subnet lab: the name has no address until a primary
		// points it at itself by dynamic update.
		return out
	}
	return append(out, DNSRecord{Name: l.DNSName, IP: l.ClusterIP})
}

// ReverseZone is the reverse zone that covers the lab subnet, rounded out
// to a whole octet in IPv4 (10.77.0.0/24 → 0.77.10.in-addr.arpa) and a
// whole nibble in IPv6 (fd00:77::/64 → 0.0.0.0.7.7.0.0.0.0.d.f.ip6.arpa).
func (l *Layout) ReverseZone() string {
	return reverseZoneOf(netip.MustParsePrefix(l.Subnet))
}

// DnsmasqArgs is the command line of the lab's DNS server. Its only
// configuration file is the one rendered from the lab's zone (DNSConfPath);
// it reads no host files and has no upstream server, so it answers the
// lab's names (forward and reverse), says NXDOMAIN for other names in the
// lab's zones, and refuses everything else: nothing is ever forwarded out
// of the lab.
func (l *Layout) DnsmasqArgs() []string {
	return []string{
		"--keep-in-foreground",
		"--conf-file=" + l.DNSConfPath(),
		"--no-resolv",
		"--no-hosts",
		"--no-poll",
		"--bind-interfaces",
		"--listen-address=" + l.DNSServer,
		"--pid-file=" + l.DNSPidPath(),
		"--log-facility=" + l.DNSLogPath(),
		"--log-queries",
		"--domain=" + l.Domain,
		"--local=/" + l.Domain + "/",
		"--local=/" + l.ReverseZone() + "/",
		"--bogus-priv",
		"--domain-needed",
	}
}

// ResolvConf is /etc/resolv.conf as every lab host sees it.
func (l *Layout) ResolvConf() string {
	return fmt.Sprintf("# tandem lab %s: the lab's own DNS server\nnameserver %s\nsearch %s\noptions timeout:2 attempts:2\n",
		l.Name, l.DNSServer, l.Domain)
}

// HostsFile is /etc/hosts as every lab host sees it: localhost only, so
// that every other name comes from the lab's DNS server.
func HostsFile() string {
	return "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
}

// NsswitchConf returns the machine's nsswitch.conf with the hosts line
// replaced by "files dns", so lab hosts resolve names only from their
// localhost-only hosts file and the lab's DNS server (no mDNS, no
// systemd-resolved, no myhostname). Every other database is kept as is.
func NsswitchConf(orig string) string {
	const hosts = "hosts:          files dns"
	var out []string
	found := false
	for _, line := range strings.Split(strings.TrimRight(orig, "\n"), "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == "hosts:" {
			if !found {
				out = append(out, hosts)
			}
			found = true
			continue
		}
		out = append(out, line)
	}
	if !found {
		if len(out) == 1 && out[0] == "" {
			out = nil
		}
		out = append(out, hosts)
	}
	return strings.Join(out, "\n") + "\n"
}
