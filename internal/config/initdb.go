package config

import (
	"fmt"
	"sort"
	"strings"
)

// DefaultInitdbOptions shape a new cluster. The C locale sorts text by
// byte value, which no C library update ever changes: a glibc update that
// changed a collation would leave the indexes on one node (and the copy
// the other streams) in an order that no longer matches, silently.
//
// WAL segments of 1 MB instead of 16: at every promotion PostgreSQL
// copies the segment it ended in onto the new timeline, writing the
// whole segment and syncing it, and a switchover's write gap and a
// failover wait for that. Measured here (PostgreSQL 15, pg_promote on a
// streaming standby): about 60 ms with 16 MB segments, 25 with 4, 17 with
// 1. The price is more, smaller files in pg_wal and for an archive.
var DefaultInitdbOptions = []string{"--encoding=UTF8", "--locale=C", "--wal-segsize=1"}

// initdbOptions are the initdb options an operator may choose, and whether
// each takes a value. They only shape the new cluster; tandemd sets the
// data directory, the superuser, authentication and the password itself,
// and data checksums are postgres.data_checksums. An allowlist rather than
// a blocklist: an option such as --sync-only or --version would leave no
// cluster at all, --no-sync one that a power cut may corrupt.
var initdbOptions = map[string]bool{
	"encoding":           true,
	"locale":             true,
	"lc-collate":         true,
	"lc-ctype":           true,
	"lc-messages":        true,
	"lc-monetary":        true,
	"lc-numeric":         true,
	"lc-time":            true,
	"no-locale":          false,
	"locale-provider":    true,
	"icu-locale":         true,
	"icu-rules":          true,
	"builtin-locale":     true,
	"text-search-config": true,
	"wal-segsize":        true,
}

// initdbShort maps initdb's short options to the long form the setting
// takes, for the message.
var initdbShort = map[string]string{"-E": "--encoding", "-T": "--text-search-config", "-k": "postgres.data_checksums"}

// initdbProblems checks postgres.initdb_options: one option per item, as
// --name=value, from the allowlist, once each. The items become initdb's
// arguments as they are (no shell is involved), so the checks are about
// what initdb would do with them, and about catching two options typed
// into one item.
func initdbProblems(opts []string) []string {
	var p []string
	add := func(i int, v, format string, a ...any) {
		p = append(p, fmt.Sprintf("postgres.initdb_options[%d] %q: ", i, v)+fmt.Sprintf(format, a...))
	}
	seen := map[string]int{}
	for i, o := range opts {
		if err := checkPrintable(o); err != nil {
			add(i, o, "%v", err)
			continue
		}
		if strings.ContainsAny(o, " \t") {
			add(i, o, "holds a space: give each option an item of its own, as --name=value")
			continue
		}
		if !strings.HasPrefix(o, "--") {
			hint := ""
			if long, ok := initdbShort[strings.SplitN(o, "=", 2)[0]]; ok {
				hint = " (for " + strings.SplitN(o, "=", 2)[0] + ": " + long + ")"
			}
			add(i, o, "write each option in its long form, --name=value%s", hint)
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimPrefix(o, "--"), "=")
		takesValue, known := initdbOptions[name]
		switch {
		case name == "data-checksums" || name == "no-data-checksums":
			add(i, o, "data checksums are the setting postgres.data_checksums (true or false), not an initdb option here")
			continue
		case !known:
			add(i, o, "tandemd does not pass --%s to initdb (it sets the data directory, superuser, authentication and password itself); the options it takes are %s", name, allowedInitdbOptions())
			continue
		case takesValue && (!hasValue || value == ""):
			add(i, o, "--%s needs a value: --%s=VALUE", name, name)
			continue
		case !takesValue && hasValue:
			add(i, o, "--%s takes no value: write it alone", name)
			continue
		}
		if j, twice := seen[name]; twice {
			add(i, o, "--%s is given twice (also item %d): keep one", name, j)
			continue
		}
		seen[name] = i
	}
	return p
}

func allowedInitdbOptions() string {
	names := make([]string, 0, len(initdbOptions))
	for n, v := range initdbOptions {
		if v {
			n += "=…"
		}
		names = append(names, "--"+n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}
