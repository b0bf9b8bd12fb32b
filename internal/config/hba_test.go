package config

import (
	"slices"
	"strings"
	"testing"
)

func TestHBALines(t *testing.T) {
	for _, ok := range []string{
		"host all all all scram-sha-256",
		"hostssl app app,report 10.0.0.0/24 scram-sha-256",
		"host app +readers fd00:77::/64 md5",
		"hostssl all all .example.net cert clientcert=verify-full",
		"host replication barman 192.0.2.7/32 scram-sha-256",
		"host all all samenet reject",
	} {
		if err := checkHBALine(ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for line, want := range map[string]string{
		"host all all all":                                    "needs TYPE DATABASE USER ADDRESS METHOD",
		"local all all trust":                                 "tandemd's own",
		"hostx all all all md5":                               "type",
		"host all all all trust":                              "trust over TCP",
		"host all all all peer":                               "method",
		"host all postgres 10.0.0.0/24 scram-sha-256":         "postgres.superuser_allow",
		"host all app,postgres all scram-sha-256":             "postgres.superuser_allow",
		"host all tandem_replication all scram-sha-256":       "replication role",
		"host all all 10.0.0.5 scram-sha-256":                 "10.0.0.5/32",
		"host all all 10.0.0.5/24 scram-sha-256":              "10.0.0.0/24",
		"host all all bad_host! scram-sha-256":                "must be a CIDR",
		"host all @admins all scram-sha-256":                  "@file",
		"host \"My DB\" all all scram-sha-256":                "quoted",
		"host all all all scram-sha-256 # applications":       "comments",
		"host all all all scram-sha-256\nlocal all all trust": "one line",
		"host all all all scram-sha-256 clientcert":           "name=value",
	} {
		err := checkHBALine(line)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want an error saying %q", line, err, want)
		}
	}
}

func TestHBASettings(t *testing.T) {
	bin := fakeBinDir(t)
	base := validYAML(bin)
	c, _ := load(t, base)
	if !slices.Equal(c.Postgres.HBA, DefaultHBA) || len(c.Postgres.SuperuserAllow) != 0 {
		t.Errorf("defaults: hba %q, superuser_allow %q", c.Postgres.HBA, c.Postgres.SuperuserAllow)
	}
	// A list in the file replaces the default; an empty one empties it.
	withPG := func(extra string) string {
		return strings.Replace(base, "postgres:\n", "postgres:\n"+extra, 1)
	}
	c, _ = load(t, withPG("  hba: [\"host app app 10.0.0.0/24 scram-sha-256\"]\n  superuser_allow: [10.0.0.100, 192.0.2.0/28]\n"))
	if !slices.Equal(c.Postgres.HBA, []string{"host app app 10.0.0.0/24 scram-sha-256"}) {
		t.Errorf("hba from the file: %q", c.Postgres.HBA)
	}
	if n := c.SuperuserNetworks(); len(n) != 2 || n[0].String() != "10.0.0.100/32" || n[1].String() != "192.0.2.0/28" {
		t.Errorf("SuperuserNetworks = %v", n)
	}
	if c, _ = load(t, withPG("  hba: []\n")); len(c.Postgres.HBA) != 0 {
		t.Errorf("an empty hba in the file left %q", c.Postgres.HBA)
	}
	got := problemsOf(t, withPG("  hba: [\"host all all all trust\"]\n  superuser_allow: [anywhere]\n"))
	for _, want := range []string{"postgres.hba[0]", "postgres.superuser_allow[0]"} {
		if !strings.Contains(got, want) {
			t.Errorf("no problem names %s:\n%s", want, got)
		}
	}
}
