//go:build linux

package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

// startDNSServer starts the lab's DNS server in the dns host with the
// lab's rendered zone and waits until it answers there: dnsmasq, or named
// in a cross-subnet lab.
func startDNSServer(ctx context.Context, log *slog.Logger, l *Layout) error {
	if l.CrossSubnet {
		return startNamed(ctx, log, l)
	}
	dnsmasq, err := lookTool(Dnsmasq)
	if err != nil {
		return err
	}
	h, _ := l.Host("dns")
	stderr := filepath.Join(l.Dir, "dnsmasq.stderr")
	// dnsmasq writes its own pid file (--pid-file); its stderr gets startup errors.
	pid, err := startDetached(log, h.Netns, stderr, "", dnsmasq, l.DnsmasqArgs()...)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if !alive(pid) {
			return fmt.Errorf("dnsmasq exited at once:\n%s\n%s", tailFile(stderr, 10), tailFile(l.DNSLogPath(), 10))
		}
		err := askDNS(ctx, h.Netns, l.DNSServer, l.Domain)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the lab DNS server at %s did not answer within 10s (%v); see %s", l.DNSServer, err, l.DNSLogPath())
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// askDNS sends one query to server from namespace ns; any answer will do.
func askDNS(ctx context.Context, ns, server, domain string) error {
	_, err := querySOA(ctx, ns, server, domain)
	return err
}

// querySOA asks server, from namespace ns, for zone's SOA (one UDP query,
// bounded by a second) and returns the answer.
func querySOA(ctx context.Context, ns, server, zone string) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	c, err := dialerIn(ns)(ctx, "udp", net.JoinHostPort(server, "53"))
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(d)
	}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(zone), dns.TypeSOA)
	co := &dns.Conn{Conn: c}
	if err := co.WriteMsg(m); err != nil {
		return nil, err
	}
	return co.ReadMsg()
}

// stopDNSServer stops the lab's DNS server, if it runs.
func stopDNSServer(log *slog.Logger, l *Layout) error {
	pid, ok := readPid(l.DNSPidPath(), l.Dir+"/")
	if !ok {
		return nil
	}
	if left := stop(log, []int{pid}, syscall.SIGTERM, 5*time.Second); len(left) > 0 {
		if left = stop(log, left, syscall.SIGKILL, 5*time.Second); len(left) > 0 {
			return fmt.Errorf("%s (pid %d) would not stop", l.DNSProgram(), pid)
		}
	}
	return nil
}

// EditDNS changes the lab's DNS records: edit gets the zone and returns
// what it did, for the operator. The zone is saved and the DNS server
// restarted with it (dnsmasq reads its records only at start; named is
// stopped before its zone files and journals are replaced, so that no
// update lands in between); while the dns host is powered off the records
// are only saved, and apply when it comes back.
func EditDNS(ctx context.Context, log *slog.Logger, name string, out io.Writer, edit func(l *Layout, z *Zone) (string, error)) error {
	l, unlock, err := openLab(name)
	if err != nil {
		return err
	}
	defer unlock()
	z, err := l.LoadZone()
	if err != nil {
		return err
	}
	msg, err := edit(l, z)
	if err != nil {
		return err
	}
	if err := l.CheckZone(z); err != nil {
		return err
	}
	f, err := l.LoadFaults()
	if err != nil {
		return err
	}
	if f.IsOff("dns") {
		if err := l.SaveZone(z); err != nil {
			return err
		}
		fmt.Fprintf(out, "lab %s: %s (saved; the dns host is powered off, so it applies at `tandem lab power-on dns`)\n", l.Name, msg)
		return nil
	}
	if err := stopDNSServer(log, l); err != nil {
		return err
	}
	saveErr := l.SaveZone(z)
	// Started again even when the save failed: with the old records, then.
	if err := startDNSServer(ctx, log, l); err != nil {
		return errors.Join(saveErr, err)
	}
	if saveErr != nil {
		return saveErr
	}
	fmt.Fprintf(out, "lab %s: %s\n", l.Name, msg)
	return nil
}

// DNSZone returns the lab's current DNS records.
func DNSZone(name string) (*Zone, error) {
	if err := CheckHost(); err != nil {
		return nil, err
	}
	l, err := Load(name)
	if err != nil {
		return nil, err
	}
	return l.LoadZone()
}
