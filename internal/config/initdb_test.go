package config

import (
	"slices"
	"strings"
	"testing"
)

func TestInitdbDefaults(t *testing.T) {
	d := Defaults().Postgres
	if !d.DataChecksums {
		t.Error("a new cluster should checksum its pages by default (postgres.data_checksums)")
	}
	if !slices.Equal(d.InitdbOptions, []string{"--encoding=UTF8", "--locale=C", "--wal-segsize=1"}) {
		t.Errorf("postgres.initdb_options defaults to %q; docs/config.md and the packaged file say --encoding=UTF8, --locale=C, --wal-segsize=1", d.InitdbOptions)
	}
	if p := initdbProblems(d.InitdbOptions); len(p) > 0 {
		t.Errorf("the default initdb options are refused: %v", p)
	}
}

func TestInitdbOptionsFromFile(t *testing.T) {
	c, err := load(t, withPostgres(validYAML(fakeBinDir(t)), `  data_checksums: false
  initdb_options: [--encoding=UTF8, --locale=de_DE.UTF-8, --locale-provider=icu, --icu-locale=de-DE, --no-locale]
`))
	if err != nil && !strings.Contains(err.Error(), "os_user") {
		t.Fatal(err)
	}
	if c.Postgres.DataChecksums || len(c.Postgres.InitdbOptions) != 5 || c.Postgres.InitdbOptions[1] != "--locale=de_DE.UTF-8" {
		t.Fatalf("postgres.data_checksums %v, initdb_options %q", c.Postgres.DataChecksums, c.Postgres.InitdbOptions)
	}
}

// Each refused item is named by its index and says what to write instead.
func TestInitdbOptionsRefused(t *testing.T) {
	for _, c := range []struct {
		opt, want string
	}{
		{"-E UTF8", "holds a space"},
		{"--locale=C --encoding=UTF8", "holds a space"},
		{"-E", "--encoding"},
		{"-k", "postgres.data_checksums"},
		{"--data-checksums", "postgres.data_checksums"},
		{"--no-data-checksums", "postgres.data_checksums"},
		{"--pgdata=/tmp/x", "does not pass --pgdata"},
		{"--username=admin", "does not pass --username"},
		{"--auth=trust", "does not pass --auth"},
		{"--pwfile=/etc/shadow", "does not pass --pwfile"},
		{"--no-sync", "does not pass --no-sync"},
		{"--sync-only", "does not pass --sync-only"},
		{"--locale", "needs a value"},
		{"--locale=", "needs a value"},
		{"--no-locale=yes", "takes no value"},
		{"--locale=C\n--auth=trust", "control character"},
		{"$(reboot)", "long form"},
	} {
		p := initdbProblems([]string{"--encoding=UTF8", c.opt})
		if len(p) != 1 || !strings.HasPrefix(p[0], "postgres.initdb_options[1] ") || !strings.Contains(p[0], c.want) {
			t.Errorf("%q: got %q, want one problem naming postgres.initdb_options[1] and saying %q", c.opt, p, c.want)
		}
	}
	p := initdbProblems([]string{"--locale=C", "--encoding=UTF8", "--locale=C.UTF-8"})
	if len(p) != 1 || !strings.Contains(p[0], "given twice (also item 0)") {
		t.Errorf("a repeated option: got %q", p)
	}
}

// The problems reach Validate, with the others.
func TestInitdbOptionsValidated(t *testing.T) {
	_, err := load(t, withPostgres(validYAML(fakeBinDir(t)), "  initdb_options: [--waldir=/elsewhere]\n"))
	if err == nil || !strings.Contains(err.Error(), "postgres.initdb_options[0]") {
		t.Fatalf("postgres.initdb_options with --waldir should be refused by name, got %v", err)
	}
}

// withPostgres adds lines to the postgres section of validYAML's file.
func withPostgres(yml, lines string) string {
	const last = "  socket_dir: /run/tandem/a\n"
	if !strings.Contains(yml, last) {
		panic("validYAML no longer ends its postgres section with " + last)
	}
	return strings.Replace(yml, last, last+lines, 1)
}
