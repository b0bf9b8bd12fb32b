//go:build !windows

package console

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func cacheDirMode(t *testing.T, dir string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// A cache directory that exists with a wider mode (made by hand, or by a
// tool with umask 022) is tightened to 0700, with one line on stderr.
func TestWideCacheDirIsTightened(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tandem")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TANDEM_CACHE_DIR", dir)
	code, _, stderr := runIn(t, "", "trust", "list")
	if code != 0 {
		t.Fatalf("trust list: %d %s", code, stderr)
	}
	if got := cacheDirMode(t, dir); got != 0o700 {
		t.Fatalf("cache dir left at %04o", got)
	}
	if lines := strings.Split(strings.TrimSpace(stderr), "\n"); len(lines) != 1 || !strings.Contains(stderr, "0755") || !strings.Contains(stderr, "0700") {
		t.Fatalf("want one warning line naming both modes, got %q", stderr)
	}
	// Once tight, nothing more is said.
	if _, _, stderr := runIn(t, "", "trust", "list"); stderr != "" {
		t.Fatalf("second run warned again: %q", stderr)
	}
}

// A shared directory (sticky, like /tmp) is not the console's to chmod:
// it is refused instead.
func TestSharedCacheDirIsRefused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "shared")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TANDEM_CACHE_DIR", dir)
	code, _, stderr := runIn(t, "", "trust", "list")
	if code == 0 || !strings.Contains(stderr, "TANDEM_CACHE_DIR") {
		t.Fatalf("a sticky shared directory was used: %d %q", code, stderr)
	}
	if fi, _ := os.Stat(dir); fi.Mode()&os.ModeSticky == 0 || fi.Mode().Perm() != 0o777 {
		t.Fatalf("the shared directory was changed: %v", fi.Mode())
	}
}

// A tokens.json others may read or write is refused, saying how to fix it.
func TestTokenFileOpenToOthersIsRefused(t *testing.T) {
	for _, mode := range []os.FileMode{0o666, 0o644, 0o640, 0o602} {
		dir := useCacheDir(t)
		path := filepath.Join(dir, tokensFile)
		if err := os.WriteFile(path, []byte(`{"tokens":{"10.0.0.11:7400":"secret"}}`), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		toks, err := LoadTokens()
		if err == nil {
			t.Errorf("mode %04o: tokens read (%v)", mode, toks.ByAddress)
			continue
		}
		if !strings.Contains(err.Error(), "chmod 600 "+path) {
			t.Errorf("mode %04o: %v; want the chmod that fixes it", mode, err)
		}
		code, _, stderr := runIn(t, "", "status", "--endpoint", "10.0.0.11:7400", "--trust-new", "--timeout", "1s")
		if code == 0 || !strings.Contains(stderr, "chmod 600") {
			t.Errorf("mode %04o: status ran with the tokens: %d %q", mode, code, stderr)
		}
	}
	dir := useCacheDir(t)
	if err := os.WriteFile(filepath.Join(dir, tokensFile), []byte(`{"tokens":{"a:7400":"t"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if toks, err := LoadTokens(); err != nil || toks.ByAddress["a:7400"] != "t" {
		t.Fatalf("a 0600 tokens.json: %v %v", toks, err)
	}
}
