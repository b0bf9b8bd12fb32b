package config

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"

	"github.com/tandem-ha/tandem/internal/valid"
)

// ReplicationRole is the role the nodes replicate and rewind as
// (cluster.ReplicationUser; a daemon test keeps the two equal). tandemd
// alone says where it may connect from: the peer.
const ReplicationRole = "tandem_replication"

// Superuser is the PostgreSQL superuser tandemd creates and uses.
const Superuser = "postgres"

// DefaultHBA is postgres.hba's default: every other role, with its
// password, from anywhere, as initdb's own pg_hba.conf has it for TCP.
var DefaultHBA = []string{"host all all all scram-sha-256"}

var (
	hbaTypes   = []string{"host", "hostssl", "hostnossl", "hostgssenc", "hostnogssenc"}
	hbaMethods = []string{"scram-sha-256", "md5", "password", "reject", "cert", "gss", "sspi", "ident", "pam", "ldap", "radius"}
	// A host name or a domain suffix (.example.net) in a pg_hba address.
	hbaNameRE = regexp.MustCompile(`^\+?[a-zA-Z0-9_.$-]+$`)
	hbaOptRE  = regexp.MustCompile(`^[a-z_]+=[^\s"]+$`)
)

// hbaProblems checks postgres.superuser_allow and postgres.hba.
func (c *Config) hbaProblems() []string {
	var p []string
	for i, a := range c.Postgres.SuperuserAllow {
		if _, err := parseNetwork(a); err != nil {
			p = append(p, fmt.Sprintf("postgres.superuser_allow[%d]: %v", i, err))
		}
	}
	for i, line := range c.Postgres.HBA {
		if err := checkHBALine(line); err != nil {
			p = append(p, fmt.Sprintf("postgres.hba[%d] %q: %v", i, line, err))
		}
	}
	return p
}

// checkHBALine accepts one pg_hba.conf TCP rule: TYPE DATABASE USER
// ADDRESS METHOD [OPTION=VALUE…], with the address as a CIDR, all,
// samehost, samenet or a host name.
func checkHBALine(line string) error {
	switch {
	case strings.ContainsFunc(line, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return fmt.Errorf("must be one line without control characters")
	case strings.ContainsAny(line, "#"):
		return fmt.Errorf("comments are not part of a rule: leave out the #")
	case strings.Contains(line, `"`):
		return fmt.Errorf("quoted names are not supported: name roles and databases as plain words")
	case strings.HasSuffix(strings.TrimSpace(line), `\`):
		return fmt.Errorf("a rule is one line: no continuation")
	}
	f := strings.Fields(line)
	if len(f) > 0 && f[0] == "local" {
		return fmt.Errorf("local (Unix socket) access is tandemd's own; list TCP rules (host, hostssl…) here")
	}
	if len(f) < 5 {
		return fmt.Errorf("needs TYPE DATABASE USER ADDRESS METHOD, such as \"host app app 10.0.0.0/24 scram-sha-256\"")
	}
	if !contains(hbaTypes, f[0]) {
		return fmt.Errorf("type %q must be one of %s", f[0], strings.Join(hbaTypes, ", "))
	}
	for _, db := range strings.Split(f[1], ",") {
		if strings.HasPrefix(db, "@") {
			return fmt.Errorf("@file inclusions are not supported: name the databases")
		}
		if !hbaNameRE.MatchString(db) {
			return fmt.Errorf("database %q is not a database name or keyword", db)
		}
	}
	for _, u := range strings.Split(f[2], ",") {
		switch {
		case strings.HasPrefix(u, "@"):
			return fmt.Errorf("@file inclusions are not supported: name the roles")
		case !hbaNameRE.MatchString(u):
			return fmt.Errorf("user %q is not a role name or keyword", u)
		case u == Superuser:
			return fmt.Errorf("the superuser's TCP access is postgres.superuser_allow, not a rule here")
		case u == ReplicationRole:
			return fmt.Errorf("%s is tandemd's replication role: it may connect only from the other node, and tandemd writes that rule itself", ReplicationRole)
		}
	}
	switch addr := f[3]; {
	case addr == "all" || addr == "samehost" || addr == "samenet":
	case strings.Contains(addr, "/"):
		if _, err := parseNetwork(addr); err != nil {
			return err
		}
	case isAddr(addr):
		return fmt.Errorf("address %s needs its prefix length: write %s/%d for that host alone, or a network", addr, addr, netip.MustParseAddr(addr).BitLen())
	case !valid.Name(strings.TrimPrefix(addr, "."), false):
		return fmt.Errorf("address %q must be a CIDR (10.0.0.0/24), all, samehost, samenet or a host name", addr)
	}
	method := f[4]
	if method == "trust" {
		return fmt.Errorf("trust over TCP lets anyone who reaches the port in without a password: use scram-sha-256")
	}
	if !contains(hbaMethods, method) {
		return fmt.Errorf("method %q must be one of %s", method, strings.Join(hbaMethods, ", "))
	}
	for _, o := range f[5:] {
		if !hbaOptRE.MatchString(o) {
			return fmt.Errorf("option %q must be name=value", o)
		}
	}
	return nil
}

func isAddr(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// SuperuserNetworks is postgres.superuser_allow, parsed (call after Validate).
func (c *Config) SuperuserNetworks() []netip.Prefix {
	var out []netip.Prefix
	for _, a := range c.Postgres.SuperuserAllow {
		if p, err := parseNetwork(a); err == nil {
			out = append(out, p)
		}
	}
	return out
}
