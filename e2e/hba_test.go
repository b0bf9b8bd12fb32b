//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPgHBAAdmitsOnlyWhatTheConfigSays: in an assembled lab cluster, the
// replication role gets into the primary from the other node only, for
// replication and the database postgres (what pg_rewind needs), and the
// superuser over TCP only from where postgres.superuser_allow says (the
// lab's client); from elsewhere pg_hba.conf refuses them, whatever the
// password. Both nodes: the secondary's pg_hba.conf came with its clone
// and was rewritten by its own tandemd.
func TestPgHBAAdmitsOnlyWhatTheConfigSays(t *testing.T) {
	needRoot(t)
	c := upCluster(t, clusterOpts{mode: "async"})
	b, err := os.ReadFile(filepath.Join(c.nodeDir("a"), "state", "replication-password"))
	if err != nil {
		t.Fatal(err)
	}
	replPW := strings.TrimSpace(string(b))
	superPW := c.env.Postgres.Password
	type attempt struct {
		from, to, user, password, db string
		admitted                     bool
	}
	for _, at := range []attempt{
		{"client", "a", "postgres", superPW, "postgres", true}, // postgres.superuser_allow: the client
		{"client", "b", "postgres", superPW, "postgres", true},
		{"b", "a", "postgres", superPW, "postgres", false}, // the other node is no superuser host
		{"a", "b", "postgres", superPW, "postgres", false},
		{"b", "a", "tandem_replication", replPW, "postgres", true}, // pg_rewind, its CHECKPOINT
		{"b", "a", "tandem_replication", replPW, "replication", true},
		{"a", "b", "tandem_replication", replPW, "postgres", true}, // either node may be primary
		{"b", "a", "tandem_replication", replPW, "template1", false},
		{"client", "a", "tandem_replication", replPW, "postgres", false},
		{"client", "a", "tandem_replication", replPW, "replication", false},
		{"client", "b", "tandem_replication", replPW, "postgres", false},
	} {
		conn := fmt.Sprintf("host=%s port=%d user=%s dbname=%s connect_timeout=5", c.env.nodeIP(at.to), c.env.Postgres.Port, at.user, at.db)
		query := "SELECT 1"
		if at.db == "replication" {
			conn = fmt.Sprintf("host=%s port=%d user=%s replication=true connect_timeout=5", c.env.nodeIP(at.to), c.env.Postgres.Port, at.user)
			query = "IDENTIFY_SYSTEM"
		}
		_, errOut, err := c.execErr(at.from, []string{"PGPASSWORD=" + at.password}, "psql", "-X", conn, "-Atc", query)
		what := fmt.Sprintf("%s from %s to %s's %s", at.user, at.from, at.to, at.db)
		switch {
		case at.admitted && err != nil:
			t.Errorf("%s refused: %v: %s", what, err, strings.TrimSpace(errOut))
		case !at.admitted && err == nil:
			t.Errorf("%s was let in", what)
		case !at.admitted && !strings.Contains(errOut, "pg_hba.conf"):
			t.Errorf("%s refused, but not by pg_hba.conf: %s", what, strings.TrimSpace(errOut))
		default:
			t.Logf("%s: admitted %v", what, at.admitted)
		}
	}
}
