package config

import (
	"strings"
	"testing"
)

func TestMaskURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://hooks.example.net/services/T000/B000/XXXX": "https://hooks.example.net/…",
		"https://hooks.example.net/hook?token=abc":          "https://hooks.example.net/…",
		"https://hooks.example.net?token=abc":               "https://hooks.example.net/…",
		"https://user:pw@hooks.example.net":                 "https://hooks.example.net/…",
		"https://hooks.example.net#frag":                    "https://hooks.example.net/…",
		"http://10.0.0.5:9099/":                             "http://10.0.0.5:9099/",
		"http://10.0.0.5:9099":                              "http://10.0.0.5:9099",
		"http://[fd00::5]:9099/x":                           "http://[fd00::5]:9099/…",
		"https://hooks.example.net/a%2Fb":                   "https://hooks.example.net/…",
		"not a url with secret":                             "…",
		"https://hooks.example.net/\x7fsecret":              "…",
		"mailto:secret@example.net":                         "…",
	} {
		if got := MaskURL(in); got != want {
			t.Errorf("MaskURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// --print-config shows the webhook's receiver, not its secret; the lab
// writes config files with FileYAML, which keeps everything.
func TestPrintedConfigMasksTheWebhook(t *testing.T) {
	c := Defaults()
	c.Notify.Webhook = "https://user:SECRET-P@hooks.example.net/services/SECRET-A?token=SECRET-B"
	out := c.YAML()
	if strings.Contains(out, "SECRET") || !strings.Contains(out, "webhook: https://hooks.example.net/…") {
		t.Fatalf("--print-config shows:\n%s", out)
	}
	if c.Notify.Webhook == "" || !strings.Contains(c.Notify.Webhook, "SECRET-A") {
		t.Fatal("masking changed the configuration itself")
	}
	var back Config
	if err := Parse([]byte(c.FileYAML()), &back); err != nil || back.Notify.Webhook != c.Notify.Webhook {
		t.Fatalf("FileYAML does not round-trip the webhook: %q, %v", back.Notify.Webhook, err)
	}
}
