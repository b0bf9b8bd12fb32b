package postgres

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// HBA is who may connect over TCP. tandemd writes the whole of pg_hba.conf
// from it at every start and reload (and when SetReplicationPeers changes
// the peers), so nothing initdb, an adopted cluster or an edit left there
// lets anyone in that the configuration does not name:
//
//   - local (the Unix socket in the private socket directory): trust, for
//     tandemd itself;
//   - the replication role: replication and the database postgres (what
//     pg_basebackup, the WAL receiver, pg_rewind and its CHECKPOINT need),
//     from the cluster's node IPs only; nothing else, from nowhere else;
//   - the superuser: from SuperuserFrom only, with its password;
//   - every other role: Rules, the operator's own lines, in order.
type HBA struct {
	// ReplicationUser is the role the peers replicate and rewind as.
	ReplicationUser string
	// SuperuserFrom are the networks the superuser may log in from over TCP.
	SuperuserFrom []netip.Prefix
	// Rules are pg_hba.conf lines (host, hostssl…) for every other role,
	// checked by the configuration (postgres.hba).
	Rules []string
}

const (
	hbaFile = "pg_hba.conf"
	// hbaKept is where the first pg_hba.conf tandemd replaces, one it did
	// not write (an adopted cluster's), is kept.
	hbaKept     = hbaFile + ".before-tandem"
	hbaHeader   = "# pg_hba.conf written by tandemd"
	hbaHeaderV0 = "# Written by tandemd" // before the whole file was tandemd's
	// The block naming the peers; the file is where they are kept, so
	// that a clone or a rewind, which copy the primary's file, bring them.
	hbaBegin = "# BEGIN tandem: replication entries managed by tandemd"
	hbaEnd   = "# END tandem"
)

var roleNameRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

func (h HBA) check() []string {
	var p []string
	if h.ReplicationUser != "" && !roleNameRE.MatchString(h.ReplicationUser) {
		p = append(p, fmt.Sprintf("HBA.ReplicationUser %q must be a plain lower-case role name", h.ReplicationUser))
	}
	for i, r := range h.Rules {
		if strings.TrimSpace(r) == "" || strings.ContainsFunc(r, func(c rune) bool { return c < 0x20 || c == 0x7f }) {
			p = append(p, fmt.Sprintf("HBA.Rules[%d] must be one pg_hba.conf line", i))
		}
	}
	return p
}

// renderHBA is pg_hba.conf for h, with replication from peers.
func renderHBA(h HBA, peers []netip.Addr) string {
	var b strings.Builder
	line := func(fields ...string) {
		fmt.Fprintf(&b, "%-7s %-12s %-20s %-18s %s\n", fields[0], fields[1], fields[2], fields[3], fields[4])
	}
	b.WriteString(hbaHeader + `: rewritten at every start of PostgreSQL
# and whenever the cluster's members change, so edits here are lost. Who
# may connect over TCP is tandemd's configuration: postgres.superuser_allow
# and postgres.hba (docs/config.md). The first rule that matches a
# connection decides.
#
# TYPE  DATABASE     USER                 ADDRESS            METHOD

# tandemd itself, over the Unix socket, whose directory only the PostgreSQL
# OS user and root can enter.
local   all          all                                     trust
`)
	if u := h.ReplicationUser; u != "" {
		b.WriteString("\n" + hbaBegin + "\n")
		for _, a := range peers {
			p := netip.PrefixFrom(a, a.BitLen()).String()
			line("host", "replication", u, p, "scram-sha-256")
			line("host", "postgres", u, p, "scram-sha-256")
		}
		b.WriteString(hbaEnd + "\n")
		b.WriteString("\n# The replication role: nothing else, from nowhere else.\n")
		line("host", "all", u, "all", "reject")
		line("host", "replication", u, "all", "reject")
	}
	b.WriteString("\n# The superuser over TCP: postgres.superuser_allow (nowhere unless it says).\n")
	for _, p := range h.SuperuserFrom {
		line("host", "all", superuser, p.Masked().String(), "scram-sha-256")
		line("host", "replication", superuser, p.Masked().String(), "scram-sha-256")
	}
	line("host", "all", superuser, "all", "reject")
	line("host", "replication", superuser, "all", "reject")
	b.WriteString("\n# Every other role: postgres.hba.\n")
	for _, r := range h.Rules {
		b.WriteString(strings.Join(strings.Fields(r), " ") + "\n")
	}
	return b.String()
}

// hbaPeers reads the peers from the block of a pg_hba.conf tandemd wrote.
func hbaPeers(conf string) []netip.Addr {
	var out []netip.Addr
	in := false
	for _, l := range strings.Split(conf, "\n") {
		switch strings.TrimSpace(l) {
		case hbaBegin:
			in = true
			continue
		case hbaEnd:
			in = false
			continue
		}
		f := strings.Fields(l)
		if !in || len(f) < 4 || f[0] != "host" || f[1] != "replication" {
			continue
		}
		p, err := netip.ParsePrefix(f[3])
		if err != nil || p.Bits() != p.Addr().BitLen() {
			continue
		}
		a := p.Addr().Unmap()
		if !containsAddr(out, a) {
			out = append(out, a)
		}
	}
	return out
}

func containsAddr(as []netip.Addr, a netip.Addr) bool {
	for _, b := range as {
		if a == b {
			return true
		}
	}
	return false
}

func writtenByTandem(conf []byte) bool {
	return len(conf) == 0 || strings.HasPrefix(string(conf), hbaHeader) || strings.HasPrefix(string(conf), hbaHeaderV0)
}

// SetReplicationPeers rewrites pg_hba.conf so that the replication role
// may connect from exactly ips (both nodes' IPs, so that either can be
// primary; none outside a cluster). It takes effect at the next reload or
// start (StartPrimary and StartStandby reload a running server).
func (s *Supervisor) SetReplicationPeers(ips []string) error {
	if s.opts.HBA.ReplicationUser == "" {
		return errors.New("no replication role is configured (HBA.ReplicationUser)")
	}
	var peers []netip.Addr
	for _, ip := range ips {
		a, err := netip.ParseAddr(ip)
		if err != nil || a.Zone() != "" {
			return fmt.Errorf("replication peer %q is not an IP address", ip)
		}
		if a = a.Unmap(); !containsAddr(peers, a) {
			peers = append(peers, a)
		}
	}
	return s.writeHBA(peers, true)
}

// writeHBA renders pg_hba.conf, with peers when set, else with the peers
// the file already names. A file tandemd did not write (an adopted
// cluster's) is kept once as pg_hba.conf.before-tandem.
func (s *Supervisor) writeHBA(peers []netip.Addr, set bool) error {
	s.hbaMu.Lock()
	defer s.hbaMu.Unlock()
	path := filepath.Join(s.opts.DataDir, hbaFile)
	cur, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("while reading %s: %w", path, err)
	}
	if !set {
		peers = hbaPeers(string(cur))
	}
	want := renderHBA(s.opts.HBA, peers)
	if string(cur) == want {
		return nil
	}
	if !writtenByTandem(cur) {
		kept := filepath.Join(s.opts.DataDir, hbaKept)
		if _, err := os.Stat(kept); errors.Is(err, fs.ErrNotExist) {
			if err := s.writeOwned(kept, cur, 0o600); err != nil {
				return fmt.Errorf("while keeping the old %s: %w", hbaFile, err)
			}
		}
		s.log.Warn("pg_hba.conf was not written by tandemd; it is replaced by what postgres.superuser_allow and postgres.hba declare (carry over the lines your clients need)", "kept_as", kept)
	}
	if err := s.writeOwned(path, []byte(want), 0o600); err != nil {
		return fmt.Errorf("while writing %s: %w", path, err)
	}
	return nil
}
