package console

import (
	"strings"
	"testing"
	"time"

	"github.com/tandem-ha/tandem/internal/api"
)

func TestMaintenanceLinesAreLoudAndNameALaggingNode(t *testing.T) {
	on := &api.MaintenanceInfo{On: true, By: "alice@ops", Reason: "kernel update", At: time.Now(), Gen: 3}
	old := &api.MaintenanceInfo{On: false, Gen: 2}
	nodes := []NodeStatus{{Reachable: true, NodeInfo: api.NodeInfo{Name: "a", Maintenance: on}}, {Reachable: true, NodeInfo: api.NodeInfo{Name: "b", Maintenance: old}}}
	got := strings.Join(maintenanceLines(nodes), "\n")
	for _, want := range []string{"MAINTENANCE MODE ON", "alice@ops", "kernel update", "b has not taken this switch yet"} {
		if !strings.Contains(got, want) {
			t.Errorf("status lines %q lack %q", got, want)
		}
	}
	if l := maintenanceLines([]NodeStatus{{Reachable: true, NodeInfo: api.NodeInfo{Name: "a", Maintenance: old}}}); l != nil {
		t.Errorf("maintenance off, status says %q", l)
	}
}

func TestMaintenanceTakesOnOrOff(t *testing.T) {
	var out, errb strings.Builder
	code := execute(NewRootCommand(), []string{"maintenance", "maybe"}, &out, &errb)
	if code != ExitUsage || !strings.Contains(errb.String(), "on or off") {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
}

// The switch goes to the primary, with who and why; a peer that did not
// take it is a loud warning, not a failure.
func TestMaintenanceOnGoesToThePrimaryAndWarnsOfASilentPeer(t *testing.T) {
	a, b := assembled(t)
	a.set(func(f *fakeNode) {
		f.maintenance = api.MaintenanceResult{Changed: true,
			Maintenance: api.MaintenanceInfo{On: true, By: "alice@ops", Reason: "kernel update", At: time.Now(), Gen: 1},
			Nodes:       []api.MaintenanceNode{{Name: "a", Applied: true}, {Name: "b", Error: "b did not take the change (silent)"}}}
	})
	code, stdout, stderr := runIn(t, "", "maintenance", "on", "--reason", "kernel update")
	if code != 0 || !strings.Contains(stdout, "is ON") || !strings.Contains(stdout, "kernel update") || !strings.Contains(stderr, "WARNING: b did not take the change") {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	posts := a.posts()
	if len(posts) != 1 || posts[0].Path != "/v1/cluster/maintenance" {
		t.Fatalf("a got %v", posts)
	}
	req := decode[api.MaintenanceRequest](t, string(posts[0].Body))
	if !req.On || req.Reason != "kernel update" || req.By == "" {
		t.Fatalf("request %+v, want on with the reason and who", req)
	}
	if len(b.posts()) != 0 {
		t.Fatalf("the secondary was sent %v; the primary passes the switch on", b.posts())
	}
}
