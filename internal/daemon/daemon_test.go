package daemon

import (
	"testing"

	"github.com/tandem-ha/tandem/internal/cluster"
	"github.com/tandem-ha/tandem/internal/config"
)

// The configuration refuses postgres.hba rules for the replication role by
// name; it must be the role the cluster logic creates.
func TestReplicationRoleNamesAgree(t *testing.T) {
	if config.ReplicationRole != cluster.ReplicationUser {
		t.Fatalf("config.ReplicationRole %q, cluster.ReplicationUser %q", config.ReplicationRole, cluster.ReplicationUser)
	}
}
