//go:build linux

package lab

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// startNamed starts named in the dns host, supervised as dnsmasq is (in
// the foreground of a session of its own, its pid in its pid file, its
// output in the lab's log), and waits until it answers for the lab's
// domain with authority.
func startNamed(ctx context.Context, log *slog.Logger, l *Layout) error {
	bin, err := lookTool(NamedBinary)
	if err != nil {
		return fmt.Errorf("--cross-subnet runs BIND 9 as the lab's DNS server: %w", err)
	}
	h, _ := l.Host("dns")
	// named writes its own pid file (pid-file in named.conf).
	pid, err := startDetached(log, h.Netns, l.DNSLogPath(), "", bin, l.NamedArgs()...)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if !alive(pid) {
			return fmt.Errorf("named exited at once%s; the end of %s:\n%s", appArmorHint(), l.DNSLogPath(), tailFile(l.DNSLogPath(), 15))
		}
		err := askAuthority(ctx, h.Netns, l.DNSServer, l.Domain)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("named at %s did not answer for %s within 10s (%v)%s; the end of %s:\n%s", l.DNSServer, l.Domain, err, appArmorHint(), l.DNSLogPath(), tailFile(l.DNSLogPath(), 15))
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// askAuthority asks server, from namespace ns, for zone's SOA and wants an
// authoritative answer: named answers SERVFAIL while it is still loading.
func askAuthority(ctx context.Context, ns, server, zone string) error {
	resp, err := querySOA(ctx, ns, server, zone)
	if err != nil {
		return err
	}
	if resp.Rcode != dns.RcodeSuccess || !resp.Authoritative {
		return fmt.Errorf("answered %s (authoritative %v)", dns.RcodeToString[resp.Rcode], resp.Authoritative)
	}
	return nil
}

// appArmorHint explains a named that cannot read the lab's files: Debian's
// bind9 confines named with an AppArmor profile to /etc/bind, /var/lib/bind
// and /var/cache/bind, so where AppArmor enforces it, the lab's directory
// must be allowed first.
func appArmorHint() string {
	b, err := os.ReadFile("/sys/kernel/security/apparmor/profiles")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, "named") && strings.Contains(line, "(enforce)") {
			return fmt.Sprintf(" — AppArmor confines named on this machine (profile %q) and may keep it out of %s: allow it with `echo '%s/** rwk,' >> /etc/apparmor.d/local/usr.sbin.named && apparmor_parser -r /etc/apparmor.d/usr.sbin.named`", strings.TrimSpace(line), BaseDir, BaseDir)
		}
	}
	return ""
}
