package config

import (
	"os"
	"strings"
	"testing"
)

// TestEverySettingIsDocumented keeps docs/config.md in step with the code.
func TestEverySettingIsDocumented(t *testing.T) {
	b, err := os.ReadFile("../../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	c := Defaults()
	for _, s := range Settings(&c) {
		if !strings.Contains(doc, "| `"+s.Key+"` |") {
			t.Errorf("docs/config.md has no row for %s", s.Key)
		}
	}
}
