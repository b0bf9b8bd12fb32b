package cluster

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"
)

// TestAlertRulesUseRealMetrics keeps docs/examples/prometheus-alerts.yml
// in step with the metrics tandemd serves.
func TestAlertRulesUseRealMetrics(t *testing.T) {
	b, err := os.ReadFile("../../docs/examples/prometheus-alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("the alert rules are not valid YAML: %v", err)
	}
	known := map[string]bool{}
	ch := make(chan *prometheus.Desc, 64)
	(&Node{}).Describe(ch)
	close(ch)
	nameRE := regexp.MustCompile(`fqName: "([a-z_]+)"`)
	for d := range ch {
		if m := nameRE.FindStringSubmatch(d.String()); m != nil {
			known[m[1]] = true
		}
	}
	metricRE := regexp.MustCompile(`\btandem_[a-z_]+`)
	rules := 0
	for _, g := range doc.Groups {
		for _, r := range g.Rules {
			rules++
			for _, m := range metricRE.FindAllString(r.Expr, -1) {
				if !known[m] {
					t.Errorf("alert %s uses %s, which tandemd does not serve (known: %s)", r.Alert, m, strings.Join(keys(known), ", "))
				}
			}
		}
	}
	if rules == 0 {
		t.Fatal("no alert rules found")
	}
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
