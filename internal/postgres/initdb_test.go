package postgres

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/tandem-ha/tandem/internal/config"
)

func TestInitdbArgs(t *testing.T) {
	for _, c := range []struct {
		checksums bool
		major     string
		opts      []string
		want      []string
	}{
		{true, "15", []string{"--locale=C"}, []string{"--data-checksums", "--locale=C"}},
		{true, "18", nil, []string{"--data-checksums"}},
		// Before 18 no checksums is initdb's default, and older initdbs
		// do not know --no-data-checksums.
		{false, "15", []string{"--encoding=UTF8"}, []string{"--encoding=UTF8"}},
		{false, "18", nil, []string{"--no-data-checksums"}},
	} {
		if got := initdbArgs(c.checksums, c.opts, c.major); !slices.Equal(got, c.want) {
			t.Errorf("initdbArgs(%v, %q, %s) = %q, want %q", c.checksums, c.opts, c.major, got, c.want)
		}
	}
}

// clusterSettings starts a new cluster with opts and returns what it
// reports for a few settings initdb fixes for good.
func clusterSettings(t *testing.T, opts Options) map[string]string {
	t.Helper()
	s := newSupervisor(t, opts)
	startOK(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := s.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	got := map[string]string{}
	for _, name := range []string{"data_checksums", "server_encoding", "lc_collate", "lc_ctype"} {
		var v string
		if err := c.QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&v); err != nil {
			t.Fatalf("current_setting(%s): %v", name, err)
		}
		got[name] = v
	}
	stopOK(t, s)
	return got
}

// A new cluster made with tandemd's defaults checksums its pages: a page
// the disk corrupted is then an error instead of wrong data, on the
// primary and in every copy made from it.
func TestNewClusterHasDataChecksumsByDefault(t *testing.T) {
	d := config.Defaults().Postgres
	opts := testOptions(t)
	opts.DataChecksums, opts.InitdbOptions = d.DataChecksums, d.InitdbOptions
	got := clusterSettings(t, opts)
	want := map[string]string{"data_checksums": "on", "server_encoding": "UTF8", "lc_collate": "C", "lc_ctype": "C"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("a new cluster with the default settings has %s = %q, want %q", k, got[k], v)
		}
	}
}

// postgres.data_checksums and postgres.initdb_options reach initdb.
func TestInitdbOptionsAreApplied(t *testing.T) {
	opts := testOptions(t)
	opts.DataChecksums = false
	opts.InitdbOptions = []string{"--encoding=LATIN1", "--locale=C", "--lc-ctype=C"}
	got := clusterSettings(t, opts)
	want := map[string]string{"data_checksums": "off", "server_encoding": "LATIN1", "lc_collate": "C", "lc_ctype": "C"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("a new cluster with data checksums off and %q has %s = %q, want %q", opts.InitdbOptions, k, got[k], v)
		}
	}
}
