package cluster

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/tandem-ha/tandem/internal/valid"
)

// What a peer may send, each as narrow as what tandem itself produces:
// node names as config's node.name, slots as PostgreSQL's own rule,
// fingerprints as identity.Fingerprint writes them.
var (
	slotRE        = valid.Bounded(`^[a-z0-9_]+$`, 1, 63)
	fingerprintRE = valid.Bounded(`^sha256:[0-9a-f]+$`, 71, 71)
)

// checkNodeIP refuses what is not a node's plain unicast address (a zone
// would be one more thing to quote in primary_conninfo).
func checkNodeIP(ip string) error {
	a, err := netip.ParseAddr(ip)
	switch {
	case err != nil || a.Zone() != "":
		return fmt.Errorf("%q is not an IP address", ip)
	case a.IsUnspecified() || a.IsMulticast():
		return fmt.Errorf("%q is not a node's unicast address", ip)
	}
	return nil
}

// checkReplicationPassword accepts what goes safely into primary_conninfo
// and the one-line password file: printable ASCII without space, quotes or
// backslash. The primary sends 32 random letters and digits.
func checkReplicationPassword(pw string) error {
	if len(pw) < 16 || len(pw) > 128 {
		return fmt.Errorf("the replication password must be 16 to 128 characters, not %d", len(pw))
	}
	for _, c := range []byte(pw) {
		if c <= ' ' || c >= 0x7f || c == '\'' || c == '"' || c == '\\' {
			return errors.New("the replication password must be printable ASCII without spaces, quotes or backslashes")
		}
	}
	return nil
}
