package cluster

import (
	"strings"
	"testing"

	"github.com/tandem-ha/tandem/internal/api"
)

// An edit's values: empty fields keep the cluster's, bad ones are all
// listed and change nothing, and only real changes are reported.
func TestEditValues(t *testing.T) {
	cur := editValues{clusterIP: "10.0.0.10/24", dnsName: "db.example.net", replication: ModeSync}
	next, changed, err := cur.apply(api.EditRequest{DNSName: "PG.Example.NET.", Replication: ModeSync})
	if err != nil || next.dnsName != "pg.example.net" || next.clusterIP != cur.clusterIP || len(changed) != 1 || changed[0] != "DNS name db.example.net → pg.example.net" {
		t.Fatalf("apply: %+v %v %v", next, changed, err)
	}
	if _, changed, err := cur.apply(api.EditRequest{ClusterIP: "10.0.0.10/24"}); err != nil || len(changed) != 0 {
		t.Errorf("the same values: changed %v, %v; want nothing", changed, err)
	}
	_, _, err = cur.apply(api.EditRequest{ClusterIP: "10.0.0.300/24", DNSName: "-bad-", Replication: "sometimes"})
	if err == nil {
		t.Fatal("bad values accepted")
	}
	for _, want := range []string{"nothing was changed", "cluster IP", "DNS name", "replication mode"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}
