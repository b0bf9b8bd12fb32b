package daemon

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandem-ha/tandem/internal/config"
)

// runCheck runs `tandemd --config FILE --check` in-process on a config
// that Validate accepts, with node.ip and state_dir as given.
func runCheck(t *testing.T, ip, stateDir string) (string, error) {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range config.PostgresTools {
		if err := os.WriteFile(filepath.Join(bin, n), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	osUser := os.Getenv("USER")
	if os.Geteuid() == 0 {
		osUser = "postgres"
	}
	yml := "node:\n  name: a\n  ip: " + ip + "\npostgres:\n  bin_dir: " + bin + "\n  os_user: " + osUser + "\nstate_dir: " + stateDir + "\n"
	path := filepath.Join(dir, "tandemd.yaml")
	if err := os.WriteFile(path, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := NewCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs([]string{"--config", path, "--check"})
	err := cmd.Execute()
	if err != nil && strings.Contains(err.Error(), "os_user") {
		t.Skipf("no usable OS user on this machine: %v", err)
	}
	return out.String(), err
}

// `tandemd --check` is what docs/deploy.md has the operator run after
// filling in the node: it must not say "configuration ok" when the node
// IP is on no interface or the state dir is missing, and must fail the
// way a refused configuration does (Main: exit status 2).
func TestCheckRefusesWhatTheMachineLacks(t *testing.T) {
	good := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(good, 0o700); err != nil {
		t.Fatal(err)
	}
	out, err := runCheck(t, "127.0.0.1", good)
	if err != nil || strings.TrimSpace(out) != "configuration ok" {
		t.Fatalf("--check on a good configuration: %v\n%s", err, out)
	}

	missing := filepath.Join(t.TempDir(), "state")
	out, err = runCheck(t, "192.0.2.211", missing)
	var p *config.Problems
	if !errors.As(err, &p) {
		t.Fatalf("--check with a foreign node IP and a missing state dir: want a refused configuration, got %v\n%s", err, out)
	}
	if strings.Contains(out, "configuration ok") {
		t.Errorf("--check said ok:\n%s", out)
	}
	for _, want := range []string{"node.ip 192.0.2.211 is on none of this machine's interfaces", "state_dir " + missing + " does not exist"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("--check does not say %q:\n%v", want, err)
		}
	}
	if _, err := os.Stat(missing); err == nil {
		t.Errorf("--check created %s; it must change nothing", missing)
	}
}
