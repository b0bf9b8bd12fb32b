//go:build e2e

package e2e

import (
	"fmt"
	"testing"
)

// waitingOnSyncRep reports whether a has a backend running a query that
// starts with prefix and waits for synchronous replication.
func (l *testLab) waitingOnSyncRep(prefix string) (bool, string) {
	out, err := l.sql("a", fmt.Sprintf(`select count(*) from pg_stat_activity where wait_event = 'SyncRep' and query like '%s%%'`, prefix))
	if err != nil {
		return false, err.Error()
	}
	return out == "1", "backends waiting on SyncRep: " + out
}

// noReplicationLeftOn checks that node holds nothing of a cluster in
// PostgreSQL: no slot, no replication role, no pg_hba entry letting the
// replication role, or anyone but the superuser, replicate (pg_hba.conf
// always rejects the replication role; the lab lets the superuser in from
// the client, for replication too).
func (l *testLab) noReplicationLeftOn(t *testing.T, node string) {
	t.Helper()
	for q, want := range map[string]string{
		`select count(*) from pg_replication_slots`:                                                                                                                 "0",
		`select count(*) from pg_roles where rolname = 'tandem_replication'`:                                                                                        "0",
		`select count(*) from pg_hba_file_rules where 'tandem_replication' = any(user_name) and auth_method <> 'reject'`:                                            "0",
		`select count(*) from pg_hba_file_rules where 'replication' = any(database) and type = 'host' and auth_method <> 'reject' and 'postgres' <> all(user_name)`: "0",
	} {
		if got, err := l.sql(node, q); err != nil || got != want {
			t.Errorf("on %s, %s = %q (%v), want %s", node, q, got, err, want)
		}
	}
}
