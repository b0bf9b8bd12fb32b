package console

import (
	"strings"
	"testing"

	"github.com/tandem-ha/tandem/internal/api"
)

func TestPlanSwitchover(t *testing.T) {
	streaming := &api.ReplicationInfo{State: "streaming", LagBytes: 100}
	behind := &api.ReplicationInfo{State: "streaming", LagBytes: api.MaxSwitchoverLag + 1}
	down := &api.ReplicationInfo{State: "disconnected"}

	p := PlanSwitchover("c1", "a", "b", 7, streaming, false, "pass --allow-data-loss")
	if p.Refused != "" || p.Warning != "" || p.Question != "Switch the primary role from a to b?" {
		t.Fatalf("caught up: %+v", p)
	}
	if !strings.Contains(p.Lines[0], "term 7 → 8") || !strings.Contains(strings.Join(p.Lines, "\n"), "nothing will be lost") {
		t.Errorf("caught up lines: %q", p.Lines)
	}
	for _, r := range []*api.ReplicationInfo{behind, down, nil} {
		p := PlanSwitchover("c1", "a", "b", 7, r, false, "pass --allow-data-loss")
		if p.Refused == "" || !strings.Contains(p.Refused, "pass --allow-data-loss") || !strings.Contains(p.Refused, "Nothing was sent") {
			t.Errorf("%+v not caught up: refused %q", r, p.Refused)
		}
		p = PlanSwitchover("c1", "a", "b", 7, r, true, "pass --allow-data-loss")
		if p.Refused != "" || !strings.Contains(p.Warning, "WILL BE LOST") {
			t.Errorf("%+v with loss allowed: %+v", r, p)
		}
	}
}
