package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// problemsOf validates yml and returns the problems, skipping the test on
// a machine without a usable OS user (as TestValidConfig does).
func problemsOf(t *testing.T, yml string) string {
	t.Helper()
	_, err := load(t, yml)
	if err == nil {
		return ""
	}
	if strings.Contains(err.Error(), "os_user") {
		t.Skipf("no usable OS user on this machine: %v", err)
	}
	return err.Error()
}

func TestMetricsSettings(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good", "0123456789abcdef0123456789abcdef\n", 0o600)
	bin := fakeBinDir(t)
	withMetrics := func(m string) string { return validYAML(bin) + "metrics:\n" + m }

	if got := problemsOf(t, withMetrics("  token_file: "+good+"\n  allow: [10.0.0.0/24, 192.0.2.7, \"fd00:77::/64\"]\n")); got != "" {
		t.Fatalf("valid metrics settings refused:\n%s", got)
	}
	c, _ := load(t, withMetrics("  allow: [10.0.0.0/24, 192.0.2.7]\n"))
	if a := c.MetricsAllow(); len(a) != 2 || a[1].String() != "192.0.2.7/32" {
		t.Errorf("MetricsAllow = %v", a)
	}
	if tok, err := ReadMetricsToken(good); err != nil || tok != "0123456789abcdef0123456789abcdef" {
		t.Errorf("ReadMetricsToken = %q, %v", tok, err)
	}

	for name, c := range map[string]struct{ yml, want string }{
		"relative path":    {"  token_file: tokens/metrics\n", "must be an absolute path"},
		"missing file":     {"  token_file: " + filepath.Join(dir, "none") + "\n", "openssl rand"},
		"readable by all":  {"  token_file: " + write("open", "0123456789abcdef0123456789abcdef", 0o644) + "\n", "chmod 600"},
		"short token":      {"  token_file: " + write("short", "abc\n", 0o600) + "\n", "shorter than 16"},
		"two words":        {"  token_file: " + write("words", "0123456789abcdef 0123456789abcdef", 0o600) + "\n", "one word"},
		"a directory":      {"  token_file: " + dir + "\n", "not a regular file"},
		"not a network":    {"  allow: [everyone]\n", "metrics.allow[0]"},
		"host bits set":    {"  allow: [10.0.0.5/24]\n", "write 10.0.0.0/24"},
		"zone in an addr6": {"  allow: [\"fe80::1%eth0\"]\n", "metrics.allow[0]"},
	} {
		got := problemsOf(t, withMetrics(c.yml))
		if !strings.Contains(got, "metrics.") || !strings.Contains(got, c.want) {
			t.Errorf("%s: want a problem naming metrics.* and saying %q, got:\n%s", name, c.want, got)
		}
	}
}
