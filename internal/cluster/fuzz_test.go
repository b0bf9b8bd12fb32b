package cluster

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// FuzzConninfo: what conninfo quotes parses back, with libpq's rules as
// pgx implements them, to the very values it was given.
func FuzzConninfo(f *testing.F) {
	for _, s := range []struct{ host, password, app string }{
		{"10.0.0.11", "sxouLPzXZsz6N7YTKnJkvaYSyYwrpyBn", "a"},
		{"fd00::11", "p'w", "node-b"},
		{"10.0.0.11", `back\slash\`, "a b"},
		{"10.0.0.11", "", ""},
		{"10.0.0.11", "'", "'"},
		{"10.0.0.11", `\'`, `\\'`},
		{"10.0.0.11", " leading and trailing ", "\t"},
		{"10.0.0.11", "a=b c='d'", "x=y"},
		{"10.0.0.11", "é€😀", "ünïcode"},
		{"10.0.0.11", "new\nline", "cr\rlf"},
	} {
		f.Add(s.host, s.password, s.app)
	}
	f.Fuzz(func(t *testing.T, host, password, app string) {
		a, err := netip.ParseAddr(host)
		if err != nil || a.Zone() != "" {
			return // the host is always a node IP, checked where it enters
		}
		// libpq strings end at a NUL; none can reach here (a join refuses
		// control characters), and none could be written as a setting.
		if strings.ContainsRune(password+app, 0) {
			return
		}
		s := conninfo(map[string]string{
			"host": a.String(), "port": "5432", "user": ReplicationUser, "password": password,
			"application_name": app, "connect_timeout": "2",
		})
		cfg, err := pgconn.ParseConfig(s)
		if err != nil {
			t.Fatalf("conninfo %q does not parse: %v", s, err)
		}
		switch {
		case cfg.Host != a.String():
			t.Fatalf("%q: host %q, want %q", s, cfg.Host, a)
		case cfg.Port != 5432:
			t.Fatalf("%q: port %d", s, cfg.Port)
		case cfg.User != ReplicationUser:
			t.Fatalf("%q: user %q", s, cfg.User)
		case cfg.Password != password:
			t.Fatalf("%q: password %q, want %q", s, cfg.Password, password)
		case cfg.RuntimeParams["application_name"] != app:
			t.Fatalf("%q: application_name %q, want %q", s, cfg.RuntimeParams["application_name"], app)
		}
	})
}
