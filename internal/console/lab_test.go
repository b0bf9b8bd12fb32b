package console

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandem-ha/tandem/internal/lab"
)

// TestLabFaultArgs checks that the lab's fault and DNS commands refuse bad
// arguments with the usage status before touching anything (no lab, no
// root needed).
func TestLabFaultArgs(t *testing.T) {
	for _, args := range [][]string{
		{"power-off"},
		{"power-off", "a", "b"},
		{"power-on"},
		{"partition", "a"},
		{"partition", "a", "b", "c"},
		{"netem", "a", "b"},                   // neither --delay nor --loss
		{"netem", "a", "b", "--loss", "lots"}, // not a percentage
		{"netem", "a", "b", "--loss", "120%"}, // out of range
		{"netem", "a", "b", "--delay", "10ms", "--jitter", "20ms"}, // jitter above delay
		{"heal", "a"},
		{"pause"},
		{"pause", "a", "--process", "dnsmasq"},
		{"resume"},
		{"dns", "set", "b"},
		{"dns", "rm"},
		{"dns", "ptr", "10.77.0.12"},
		{"dns", "ptr", "--rm", "10.77.0.12", "b"},
	} {
		c := NewLabCommand()
		var out bytes.Buffer
		c.SetOut(&out)
		c.SetErr(&out)
		c.SetArgs(append([]string{"--name", "nosuchlab"}, args...))
		err := c.Execute()
		if code := ExitCode(err); code != ExitUsage {
			t.Errorf("tandem lab %s: exit %d (%v), want %d", strings.Join(args, " "), code, err, ExitUsage)
		}
	}
}

// TestLabUpFailoverFlag: --failover takes manual or automatic; anything
// else is a usage error before anything is built (no root needed).
func TestLabUpFailoverFlag(t *testing.T) {
	c := NewLabCommand()
	var out bytes.Buffer
	c.SetOut(&out)
	c.SetErr(&out)
	c.SetArgs([]string{"--name", "nosuchlab", "up", "--failover", "quorum"})
	err := c.Execute()
	if code := ExitCode(err); code != ExitUsage || !strings.Contains(err.Error(), "automatic") {
		t.Errorf("lab up --failover quorum: exit %d (%v), want %d naming the modes", code, err, ExitUsage)
	}
	up, _, err := NewLabCommand().Find([]string{"up"})
	if err != nil {
		t.Fatal(err)
	}
	f := up.Flags().Lookup("failover")
	if f == nil || f.DefValue != lab.FailoverManual || !strings.Contains(f.Usage, "witness") {
		t.Errorf("lab up --failover: %+v", f)
	}
}

// TestLabUpCrossSubnetFlag: --cross-subnet is IPv4 only, so --ipv6 is a
// usage error before anything is built; its help says the cluster is
// assembled with --endpoint dns.
func TestLabUpCrossSubnetFlag(t *testing.T) {
	for _, c := range []struct {
		args []string
		says string
	}{
		{[]string{"--cross-subnet", "--ipv6"}, "IPv4"},
	} {
		cmd := NewLabCommand()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetArgs(append([]string{"--name", "nosuchlab", "up"}, c.args...))
		err := cmd.Execute()
		if code := ExitCode(err); code != ExitUsage || !strings.Contains(err.Error(), c.says) {
			t.Errorf("lab up %s: exit %d (%v), want %d saying %q", strings.Join(c.args, " "), code, err, ExitUsage, c.says)
		}
	}
	up, _, err := NewLabCommand().Find([]string{"up"})
	if err != nil {
		t.Fatal(err)
	}
	f := up.Flags().Lookup("cross-subnet")
	if f == nil || f.DefValue != "false" || !strings.Contains(f.Usage, "--endpoint dns") || !strings.Contains(up.Long, "--endpoint\ndns") {
		t.Errorf("lab up --cross-subnet: %+v", f)
	}
}

// The lab writes the witness's token into the client console's store
// (the console cannot be imported by the lab, so the lab writes the file
// itself): the console must read it, and find it under the address that
// `--witness w.<domain>` becomes.
func TestLabWitnessTokenReadByConsole(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "console")
	t.Setenv("TANDEM_CACHE_DIR", dir)
	addr, err := NormalizeEndpoint("w.lab.test")
	if err != nil {
		t.Fatal(err)
	}
	if err := lab.KeepConsoleToken(dir, addr, "tok-w"); err != nil {
		t.Fatal(err)
	}
	toks, err := LoadTokens()
	if err != nil {
		t.Fatalf("the console refuses the token store the lab wrote: %v", err)
	}
	if got := toks.lookup(nil, addr); got.token != "tok-w" {
		t.Errorf("token for %s = %q, want tok-w", addr, got.token)
	}
	// The console's own save keeps it, and the lab's next write keeps the console's.
	toks.ByAddress["a.lab.test:7400"] = "tok-a"
	if err := toks.Save(); err != nil {
		t.Fatal(err)
	}
	if err := lab.KeepConsoleToken(dir, addr, "tok-w2"); err != nil {
		t.Fatal(err)
	}
	toks, err = LoadTokens()
	if err != nil {
		t.Fatal(err)
	}
	if toks.ByAddress["a.lab.test:7400"] != "tok-a" || toks.ByAddress[addr] != "tok-w2" {
		t.Errorf("tokens after both wrote: %v", toks.ByAddress)
	}
}
