package cluster

import (
	"net/netip"
	"slices"
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

// hbaModel is what withHBA must leave of conf: every line outside
// tandem's blocks, in order. A block runs from a begin line to the next
// end line (to the end of the file when it has none: such a file was
// edited by hand, and what follows the begin line was tandem's).
func hbaModel(conf string) []string {
	var kept []string
	in := false
	for _, l := range strings.Split(conf, "\n") {
		switch strings.TrimSpace(l) {
		case hbaBegin:
			in = true
		case hbaEnd:
			in = false
		default:
			if !in {
				kept = append(kept, l)
			}
		}
	}
	return kept
}

func hbaMarkers(conf string) (begins, ends int) {
	for _, l := range strings.Split(conf, "\n") {
		switch strings.TrimSpace(l) {
		case hbaBegin:
			begins++
		case hbaEnd:
			ends++
		}
	}
	return begins, ends
}

// FuzzWithHBA: tandem's pg_hba block is replaced, never duplicated; the
// other lines are kept in order; writing it twice changes nothing; and
// removing it leaves what was there without it.
func FuzzWithHBA(f *testing.F) {
	initdb := "# TYPE  DATABASE  USER  ADDRESS  METHOD\nlocal   all       all            trust\nhost    all       all   all      scram-sha-256\n"
	written := withHBA(initdb, []string{"10.0.0.11", "10.0.0.12"})
	for _, s := range []struct{ conf, ips string }{
		{initdb, "10.0.0.11,10.0.0.12"},
		{written, "10.0.0.11,10.0.0.12"},
		{written, "10.0.0.13"},
		{written, ""},
		{written + written, "10.0.0.11"},
		{"", "fd00::11,fd00::12"},
		{"no newline at the end", "10.0.0.11"},
		{"\n\n\nblank lines first\n", "10.0.0.11"},
		{"  " + hbaBegin + "  \r\nhost replication x 10.0.0.9/32 md5\r\n" + hbaEnd + "\r\nlocal all all trust\r\n", "10.0.0.11"},
		{hbaBegin + "\nunterminated\nlocal all all trust\n", "10.0.0.11"},
		{hbaEnd + "\nstray end\n", "10.0.0.11"},
		{initdb, "not-an-ip,10.0.0.11"},
		{initdb, "10.0.0.11%eth0"},
	} {
		f.Add(s.conf, s.ips)
	}
	f.Fuzz(func(t *testing.T, conf, list string) {
		var ips []string
		if list != "" {
			ips = strings.Split(list, ",")
		}
		out := withHBA(conf, ips)
		begins, ends := hbaMarkers(out)
		if want := min(len(ips), 1); begins != want || ends != want {
			t.Fatalf("withHBA(%q, %q) has %d begin and %d end lines, want %d:\n%s", conf, ips, begins, ends, want, out)
		}
		if got, want := hbaModel(out), hbaModel(conf); !slices.Equal(dropLeadingEmpty(got), dropLeadingEmpty(want)) {
			t.Fatalf("withHBA(%q, %q) keeps %q of the other lines, want %q", conf, ips, got, want)
		}
		if again := withHBA(out, ips); again != out {
			t.Fatalf("writing the block twice changed it:\n%q\n%q", out, again)
		}
		if removed, want := withHBA(out, nil), withHBA(conf, nil); removed != want {
			t.Fatalf("removing the block left %q, want %q", removed, want)
		}
		if block, _, ok := strings.Cut(out, hbaEnd); ok {
			for _, l := range strings.Split(block, "\n") {
				if strings.ContainsFunc(l, func(r rune) bool { return r < ' ' || r == 0x7f }) {
					t.Fatalf("tandem's block carries a control character: %q", l)
				}
			}
		}
	})
}

// dropLeadingEmpty drops the empty lines at the top, which withHBA
// replaces with the one that follows its block.
func dropLeadingEmpty(lines []string) []string {
	for len(lines) > 0 && lines[0] == "" {
		lines = lines[1:]
	}
	return lines
}
