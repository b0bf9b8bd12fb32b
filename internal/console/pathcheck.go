package console

import (
	"context"
	"strconv"
	"time"
)

// PrimaryPaths names the ways to a primary that a failover must find
// silent: what the web console in tandemd knows of its peer, in place of
// the console's cache.
type PrimaryPaths struct {
	Name      string // the primary's node name
	APIAddr   string // its node API, host:port
	IP        string // its node IP
	APIPort   int
	PGPort    int
	ClusterIP string // IP/prefix; "" when none
	// Known maps certificate fingerprints to node names, to say who
	// answers on an API path.
	Known map[string]string
}

// CheckPrimaryPaths runs the failover's search for a primary that still
// runs (checkPaths, the one `tandem failover` uses), for wait, so that the
// web console refuses a failover on exactly the same evidence.
func CheckPrimaryPaths(ctx context.Context, wait time.Duration, pp PrimaryPaths) []PathCheck {
	if wait <= 0 {
		wait = pathWait
	}
	primary := &probe{node: CachedNode{Name: pp.Name, IP: pp.IP, Address: pp.APIAddr}}
	cc := CachedCluster{ClusterIP: pp.ClusterIP, Primary: pp.Name, Nodes: []CachedNode{primary.node}}
	pgPort := pp.PGPort
	if pgPort <= 0 {
		pgPort = 5432
	}
	return checkPaths(ctx, wait, primary, cc, strconv.Itoa(pp.APIPort), pgPort, pp.Known)
}
