package postgres

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// rules are the rule lines of a pg_hba.conf, spaces squeezed.
func rules(conf string) []string {
	var out []string
	for _, l := range strings.Split(conf, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, strings.Join(strings.Fields(l), " "))
		}
	}
	return out
}

func TestRenderHBA(t *testing.T) {
	h := HBA{
		ReplicationUser: "tandem_replication",
		SuperuserFrom:   []netip.Prefix{netip.MustParsePrefix("10.0.0.100/32")},
		Rules:           []string{"host  app app 10.0.0.0/24   scram-sha-256", "hostssl all all all scram-sha-256 clientcert=verify-full"},
	}
	got := renderHBA(h, []netip.Addr{netip.MustParseAddr("10.0.0.11"), netip.MustParseAddr("fd00::12")})
	want := []string{
		"local all all trust",
		"host replication tandem_replication 10.0.0.11/32 scram-sha-256",
		"host postgres tandem_replication 10.0.0.11/32 scram-sha-256",
		"host replication tandem_replication fd00::12/128 scram-sha-256",
		"host postgres tandem_replication fd00::12/128 scram-sha-256",
		"host all tandem_replication all reject",
		"host replication tandem_replication all reject",
		"host all postgres 10.0.0.100/32 scram-sha-256",
		"host replication postgres 10.0.0.100/32 scram-sha-256",
		"host all postgres all reject",
		"host replication postgres all reject",
		"host app app 10.0.0.0/24 scram-sha-256",
		"hostssl all all all scram-sha-256 clientcert=verify-full",
	}
	if r := rules(got); !slices.Equal(r, want) {
		t.Fatalf("rules:\n%s\nwant:\n%s", strings.Join(r, "\n"), strings.Join(want, "\n"))
	}
	if !writtenByTandem([]byte(got)) {
		t.Error("the rendered file is not recognised as tandemd's")
	}
	if p := hbaPeers(got); len(p) != 2 || p[0].String() != "10.0.0.11" || p[1].String() != "fd00::12" {
		t.Errorf("peers read back: %v", p)
	}
	// Outside a cluster: no peers, the replication role refused everywhere.
	if r := rules(renderHBA(h, nil)); slices.ContainsFunc(r, func(l string) bool {
		return strings.Contains(l, "tandem_replication") && !strings.HasSuffix(l, "reject")
	}) {
		t.Errorf("without peers the replication role is still let in:\n%s", strings.Join(r, "\n"))
	}
}

// A file from before tandemd wrote all of pg_hba.conf: its block still
// names the peers, and it counts as tandemd's (nothing to keep aside).
func TestHBAPeersFromTheOlderFile(t *testing.T) {
	old := `# Written by tandemd after initdb. Assembling a cluster adds entries for
# BEGIN tandem: replication entries managed by tandemd
host    replication  tandem_replication  10.0.0.11/32  scram-sha-256
host    replication  tandem_replication  10.0.0.12/32  scram-sha-256
# END tandem

local   all       all            trust
host    all       all   all      scram-sha-256
host    replication  someone  10.9.9.9/32  scram-sha-256
`
	if p := hbaPeers(old); len(p) != 2 || p[0].String() != "10.0.0.11" || p[1].String() != "10.0.0.12" {
		t.Errorf("peers: %v", p)
	}
	if !writtenByTandem([]byte(old)) || writtenByTandem([]byte("local all postgres peer\n")) {
		t.Error("writtenByTandem is wrong")
	}
}

// TestHBAAdmitsOnlyWhatTheConfigSays: a real PostgreSQL with tandemd's
// pg_hba.conf. The replication role gets in from a peer address, for
// replication and the database postgres only; from anywhere else not at
// all. The superuser gets in over TCP only from postgres.superuser_allow.
// Other roles follow the operator's lines. A foreign pg_hba.conf (an
// adopted cluster's) is replaced at the next reload and kept aside.
// Loopback stands for the network: PostgreSQL listens on 127.0.0.1, the
// peer connects from 127.0.0.2, the operator's host from 127.0.0.3.
func TestHBAAdmitsOnlyWhatTheConfigSays(t *testing.T) {
	opts := testOptions(t)
	opts.HBA = HBA{
		ReplicationUser: "tandem_replication",
		SuperuserFrom:   []netip.Prefix{netip.MustParsePrefix("127.0.0.3/32")},
		Rules:           []string{"host app app 127.0.0.0/8 scram-sha-256"},
	}
	s := newSupervisor(t, opts)
	startOK(t, s)
	pw, err := os.ReadFile(opts.PasswordFile)
	if err != nil {
		t.Fatal(err)
	}
	superPW := strings.TrimSpace(string(pw))
	exec := func(sql string) {
		t.Helper()
		ctx := ctxFor(t, 30*time.Second)
		c, err := s.Connect(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	exec(`CREATE ROLE tandem_replication WITH REPLICATION LOGIN PASSWORD 'repl-pw'`)
	exec(`CREATE ROLE app WITH LOGIN PASSWORD 'app-pw'`)
	exec(`CREATE DATABASE app OWNER app`)
	if err := s.SetReplicationPeers([]string{"127.0.0.2"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(ctxFor(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	// connect logs in from the local address from; db "replication" asks
	// for a physical replication connection, as pg_basebackup does.
	connect := func(from, user, password, db string) error {
		dsn := fmt.Sprintf("host=127.0.0.1 port=%d user=%s password=%s dbname=%s sslmode=disable connect_timeout=5", opts.Port, user, password, db)
		if db == "replication" {
			dsn = fmt.Sprintf("host=127.0.0.1 port=%d user=%s password=%s replication=true sslmode=disable connect_timeout=5", opts.Port, user, password)
		}
		cfg, err := pgconn.ParseConfig(dsn)
		if err != nil {
			t.Fatal(err)
		}
		cfg.DialFunc = (&net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}).DialContext
		ctx := ctxFor(t, 10*time.Second)
		c, err := pgconn.ConnectConfig(ctx, cfg)
		if err == nil {
			c.Close(ctx)
		}
		return err
	}
	type attempt struct {
		from, user, password, db string
		admitted                 bool
	}
	check := func(what string, cases []attempt) {
		t.Helper()
		for _, c := range cases {
			err := connect(c.from, c.user, c.password, c.db)
			switch {
			case c.admitted && err != nil:
				t.Errorf("%s: %s from %s to %s refused: %v", what, c.user, c.from, c.db, err)
			case !c.admitted && err == nil:
				t.Errorf("%s: %s from %s to %s was let in", what, c.user, c.from, c.db)
			case !c.admitted && !strings.Contains(err.Error(), "pg_hba.conf"):
				t.Errorf("%s: %s from %s to %s refused, but not by pg_hba.conf: %v", what, c.user, c.from, c.db, err)
			}
		}
	}
	check("in a cluster", []attempt{
		{"127.0.0.2", "tandem_replication", "repl-pw", "replication", true},
		{"127.0.0.2", "tandem_replication", "repl-pw", "postgres", true}, // pg_rewind, its CHECKPOINT
		{"127.0.0.2", "tandem_replication", "repl-pw", "app", false},
		{"127.0.0.2", "tandem_replication", "repl-pw", "template1", false},
		{"127.0.0.1", "tandem_replication", "repl-pw", "postgres", false},
		{"127.0.0.1", "tandem_replication", "repl-pw", "replication", false},
		{"127.0.0.3", "tandem_replication", "repl-pw", "postgres", false},
		{"127.0.0.3", "postgres", superPW, "postgres", true},
		{"127.0.0.3", "postgres", superPW, "app", true},
		{"127.0.0.1", "postgres", superPW, "postgres", false},
		{"127.0.0.2", "postgres", superPW, "postgres", false}, // the peer is no superuser host
		{"127.0.0.2", "postgres", superPW, "replication", false},
		{"127.0.0.1", "app", "app-pw", "app", true},
	})

	// Leaving the cluster: the replication role is refused from the peer too.
	if err := s.SetReplicationPeers(nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(ctxFor(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	check("outside a cluster", []attempt{
		{"127.0.0.2", "tandem_replication", "repl-pw", "replication", false},
		{"127.0.0.2", "tandem_replication", "repl-pw", "postgres", false},
	})

	// An adopted cluster's own lines: replaced at the next reload, kept aside.
	foreign := "local all postgres peer\nhost all all all trust\n"
	if err := s.WriteDataFile(hbaFile, []byte(foreign), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.SetReplicationPeers([]string{"127.0.0.2"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(ctxFor(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if kept, err := os.ReadFile(filepath.Join(opts.DataDir, hbaKept)); err != nil || string(kept) != foreign {
		t.Errorf("the foreign pg_hba.conf was not kept as %s: %q, %v", hbaKept, kept, err)
	}
	check("after replacing a foreign pg_hba.conf", []attempt{
		{"127.0.0.1", "postgres", "anything", "postgres", false},
		{"127.0.0.1", "tandem_replication", "repl-pw", "postgres", false},
		{"127.0.0.2", "tandem_replication", "repl-pw", "replication", true},
	})
}

// FuzzHBAPeers: whatever a pg_hba.conf holds (an adopted cluster's, an
// edited one), reading the peers never fails, and rendering them gives a
// file that names exactly those peers again.
func FuzzHBAPeers(f *testing.F) {
	h := HBA{ReplicationUser: "tandem_replication", Rules: []string{"host all all all scram-sha-256"}}
	f.Add(renderHBA(h, []netip.Addr{netip.MustParseAddr("10.0.0.11"), netip.MustParseAddr("fd00::12")}))
	f.Add(hbaBegin + "\nhost replication x ::ffff:10.0.0.1/128 md5\nhost replication x 10.0.0.0/24 md5\n" + hbaEnd + "\n")
	f.Add("local all postgres peer\n")
	f.Fuzz(func(t *testing.T, conf string) {
		peers := hbaPeers(conf)
		again := hbaPeers(renderHBA(h, peers))
		if !slices.Equal(peers, again) {
			t.Fatalf("peers %v rendered and read back as %v", peers, again)
		}
	})
}
