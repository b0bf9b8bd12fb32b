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
