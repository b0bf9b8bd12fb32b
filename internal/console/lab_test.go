package console

import (
	"bytes"
	"strings"
	"testing"
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
