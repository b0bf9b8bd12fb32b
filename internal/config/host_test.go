package config

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// checkedConfig is a valid configuration with the given node IP and state
// dir, ready for CheckHost.
func checkedConfig(t *testing.T, ip, stateDir string) Config {
	t.Helper()
	c, err := load(t, validYAML(fakeBinDir(t)), "TANDEMD_NODE_IP="+ip, "TANDEMD_STATE_DIR="+stateDir)
	if err != nil {
		if strings.Contains(err.Error(), "os_user") {
			t.Skipf("no usable OS user on this machine: %v", err)
		}
		t.Fatal(err)
	}
	return c
}

func privateDir(t *testing.T) string {
	t.Helper()
	d := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(d, 0o700); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestCheckHostAcceptsThisMachine(t *testing.T) {
	// 127.0.0.1 is on lo on every Linux machine.
	c := checkedConfig(t, "127.0.0.1", privateDir(t))
	if err := c.CheckHost(); err != nil {
		t.Fatalf("a node IP of this machine and a private state dir are refused: %v", err)
	}
}

// --check must not say "configuration ok" for a node IP that no
// interface holds, nor for a state dir that is missing or open to others.
func TestCheckHostNamesWhatToFix(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no", "state")
	open := privateDir(t)
	if err := os.Chmod(open, 0o755); err != nil {
		t.Fatal(err)
	}
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		ip, dir string
		want    []string
	}{
		// 192.0.2.0/24 is reserved for documentation: no machine has it.
		{"192.0.2.211", privateDir(t), []string{"node.ip 192.0.2.211 is on none of this machine's interfaces", "set node.ip to this node's static address"}},
		{"127.0.0.1", missing, []string{"state_dir " + missing + " does not exist", "install -d -m 0700 " + missing}},
		{"127.0.0.1", open, []string{"state_dir " + open + " has mode 0755", "chmod 700"}},
		{"127.0.0.1", notDir, []string{"state_dir " + notDir + " is not a directory"}},
	} {
		cfg := checkedConfig(t, c.ip, c.dir)
		err := cfg.CheckHost()
		var p *Problems
		if !errors.As(err, &p) || len(p.List) != 1 {
			t.Errorf("node.ip %s, state_dir %s: want one problem, got %v", c.ip, c.dir, err)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(p.List[0], w) {
				t.Errorf("node.ip %s, state_dir %s: %q does not say %q", c.ip, c.dir, p.List[0], w)
			}
		}
	}
	// Both at once: every problem is listed.
	cfg := checkedConfig(t, "192.0.2.211", missing)
	var p *Problems
	if err := cfg.CheckHost(); !errors.As(err, &p) || len(p.List) != 2 {
		t.Errorf("a foreign node IP and a missing state dir: want both listed, got %v", err)
	}
}

func TestNodeIPProblemListsTheAddressesThere(t *testing.T) {
	addrs := []hostAddr{{"lo", mustPrefix("127.0.0.1/8")}, {"eth0", mustPrefix("10.0.0.5/24")}, {"eth0", mustPrefix("fe80::1/64")}}
	got := nodeIPProblem("10.0.0.11", addrs)
	if !strings.Contains(got, "10.0.0.5/24 on eth0") || strings.Contains(got, "127.0.0.1") || strings.Contains(got, "fe80") {
		t.Errorf("the message should list the machine's usable addresses only: %q", got)
	}
	if got := nodeIPProblem("10.0.0.5", addrs); got != "" {
		t.Errorf("an address of eth0 is refused: %q", got)
	}
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }
