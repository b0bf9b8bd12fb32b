package cluster

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/tandem-ha/tandem/internal/state"
)

// TestEndpointFollowsTheMembership: a cluster IP cluster's endpoint
// requests reach the cluster IP's manager; a DNS-endpoint cluster's never
// do (there is no address to take), and on a node without dns_update
// settings taking the endpoint fails saying which settings to write.
func TestEndpointFollowsTheMembership(t *testing.T) {
	ctx := context.Background()
	ip := &fakeVIP{}
	e := &endpoint{ip: ip}

	e.follow(&state.Membership{ClusterIP: "10.0.0.10/24"})
	if err := e.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ip.calls, []string{"acquire", "release"}) {
		t.Fatalf("vip mode: the cluster IP manager got %v", ip.calls)
	}

	ip.calls = nil
	e.follow(&state.Membership{Endpoint: EndpointDNS, DNSName: "db.example.test"})
	if err := e.Acquire(ctx); !errors.Is(err, errNoDNSUpdate) {
		t.Fatalf("dns mode without dns_update: Acquire = %v, want errNoDNSUpdate", err)
	}
	if err := e.Release(ctx); err != nil {
		t.Fatalf("dns mode without dns_update: Release = %v", err)
	}
	if st := e.Status(); st.Held || st.LastError == "" {
		t.Fatalf("dns mode without dns_update: status %+v, want not held and the reason", st)
	}
	if len(ip.calls) != 0 {
		t.Fatalf("dns mode: the cluster IP manager got %v", ip.calls)
	}

	// A node that leaves the cluster (no membership) is back to vip.
	e.follow(nil)
	if err := e.Acquire(ctx); err != nil || !slices.Equal(ip.calls, []string{"acquire"}) {
		t.Fatalf("no cluster: Acquire = %v, calls %v", err, ip.calls)
	}
}
