package console

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tandem-ha/tandem/internal/api"
)

// TestStatusDNSEndpoint: a DNS-endpoint cluster's status shows the mode,
// what the console's resolver and the zone's server answer, the TTL, and
// that the name is stale and since when; the primary's view is the one
// shown, since it points the name.
func TestStatusDNSEndpoint(t *testing.T) {
	since := time.Date(2026, 12, 2, 13, 0, 0, 0, time.UTC)
	primary := &probe{viewd: true, view: api.ClusterView{
		Node: api.NodeInfo{Name: "b", Role: rolePrimary, Term: 3},
		DNS: &api.DNSEndpointInfo{Name: "db.x.test", Server: "10.77.3.53:53", TTL: 5, Pointing: true,
			StaleSince: &since, Error: "no answer from 10.77.3.53:53", Authority: []string{"10.77.1.11"}, AuthorityTTL: 5},
	}}
	secondary := &probe{viewd: true, view: api.ClusterView{
		Node: api.NodeInfo{Name: "a", Role: roleSecondary, Term: 3},
		DNS:  &api.DNSEndpointInfo{Name: "db.x.test", Server: "10.77.3.53:53", TTL: 5, Authority: []string{"10.77.9.9"}},
	}}
	d := dnsNameStatus("db.x.test", []*probe{secondary, primary}, nil, errors.New("lookup db.x.test: i/o timeout"))
	if d.AskedBy != "b" || d.StaleSince == nil || d.TTL != 5 || len(d.Authority) != 1 || d.Authority[0] != "10.77.1.11" {
		t.Fatalf("dnsNameStatus took %+v, want the primary b's view", d)
	}
	var buf bytes.Buffer
	if err := printStatus(&buf, "table", StatusOutput{Cluster: &ClusterStatus{Name: "db.x.test", Endpoint: endpointDNS, DNSName: "db.x.test", DNS: d}}); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"endpoint dns: db.x.test", "this console's resolver answers nothing (lookup db.x.test: i/o timeout)",
		"the zone's primary server 10.77.3.53:53 answers 10.77.1.11 (asked by b), TTL 5s", "STALE since"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "  cluster IP ") {
		t.Errorf("a DNS-endpoint cluster's status speaks of a cluster IP:\n%s", out)
	}
}
