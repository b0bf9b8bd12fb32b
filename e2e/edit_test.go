//go:build e2e

package e2e

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestEdit: `tandem edit` changes a running cluster's DNS name, cluster IP
// and replication mode (docs/console.md). Bad flags send nothing; a new
// name DNS does not know yet fails the preflight and changes nothing; once
// DNS has it, the edit goes through on both nodes; a new cluster IP moves
// to it (the old one held by no one), writes go through it, and a
// switchover moves it on; the replication mode follows.
func TestEdit(t *testing.T) {
	needRoot(t)
	c := upCluster(t, clusterOpts{mode: "sync", synchronized: true})
	subnet := netip.MustParsePrefix(c.env.ClusterPrefix)
	newIP := func(last byte) string {
		b := subnet.Masked().Addr().As4()
		b[3] = last
		return netip.AddrFrom4(b).String()
	}
	pg := "pg." + c.env.Domain
	statusHas := func(wants ...string) {
		t.Helper()
		eventually(t, "status showing "+strings.Join(wants, ", "), 10*time.Second, func() (bool, string) {
			out, _, _ := c.console("status")
			for _, w := range wants {
				if !strings.Contains(out, w) {
					return false, "lacks " + w + ":\n" + out
				}
			}
			return true, ""
		})
	}

	for _, args := range [][]string{
		{"edit", "--yes"},
		{"edit", "--replication", "sometimes", "--yes"},
		{"edit", "--cluster-ip", "10.77.0.300/24", "--yes"},
	} {
		if out, errOut, code := c.console(args...); code != 2 || !strings.Contains(errOut, "Nothing was sent") {
			t.Errorf("%s: exit %d, want 2 with nothing sent\n%s\n%s", strings.Join(args, " "), code, out, errOut)
		}
	}

	// A name DNS does not know: the preflight refuses it, nothing changes.
	out, errOut, code := c.console("edit", "--dns-name", pg, "--yes")
	if code != 5 || !strings.Contains(errOut, "preflight found") {
		t.Fatalf("edit --dns-name %s before DNS has it: exit %d, want 5 naming the preflight\n%s\n%s", pg, code, out, errOut)
	}
	statusHas("Cluster "+c.env.DNSName, "DNS name "+c.env.DNSName)

	// DNS first, then the edit.
	c.labCommand("dns", "set", pg, c.env.ClusterIP)
	if out, errOut, code := c.console("edit", "--dns-name", pg, "--yes"); code != 0 || !strings.Contains(out, "DNS name "+c.env.DNSName+" → "+pg) {
		t.Fatalf("edit --dns-name: exit %d\n%s\n%s", code, out, errOut)
	}
	statusHas("DNS name " + pg)

	// A new cluster IP: DNS names it first; the address moves.
	to := newIP(20)
	c.labCommand("dns", "set", pg, to)
	if out, errOut, code := c.console("edit", "--cluster-ip", fmt.Sprintf("%s/%d", to, subnet.Bits()), "--yes"); code != 0 {
		t.Fatalf("edit --cluster-ip: exit %d\n%s\n%s", code, out, errOut)
	}
	holds := func(node, ip string) bool {
		held, err := hasAddrUp(c.netnsOf(node), ip)
		if err != nil {
			t.Fatal(err)
		}
		return held
	}
	if !holds("a", to) || holds("a", c.env.ClusterIP) || holds("b", to) || holds("b", c.env.ClusterIP) {
		t.Fatalf("after the move: a holds new %v old %v, b holds new %v old %v; want a the new one only", holds("a", to), holds("a", c.env.ClusterIP), holds("b", to), holds("b", c.env.ClusterIP))
	}
	write := func(host string) {
		t.Helper()
		eventually(t, "a write through "+host, 15*time.Second, func() (bool, string) {
			out, errOut, err := c.execErr("client", nil, "psql", fmt.Sprintf("host=%s user=postgres password=%s connect_timeout=2", host, c.env.Postgres.Password),
				"-Atc", "CREATE TABLE IF NOT EXISTS edit_test (at timestamptz); INSERT INTO edit_test VALUES (now()) RETURNING 1")
			return err == nil && strings.Contains(out, "1"), out + errOut
		})
	}
	write(to)
	write(pg)
	statusHas("cluster IP "+to, "(answered by a)")

	// A switchover takes the new address along.
	if out, errOut, code := c.console("switchover", "--yes"); code != 0 {
		t.Fatalf("switchover: exit %d\n%s\n%s", code, out, errOut)
	}
	eventually(t, "b holding the new cluster IP", 20*time.Second, func() (bool, string) {
		return holds("b", to) && !holds("a", to), fmt.Sprintf("b %v, a %v", holds("b", to), holds("a", to))
	})
	write(pg)

	// The replication mode.
	if out, errOut, code := c.console("edit", "--replication", "async", "--yes"); code != 0 {
		t.Fatalf("edit --replication async: exit %d\n%s\n%s", code, out, errOut)
	}
	statusHas("replication async")
	eventually(t, "synchronous_standby_names empty on b", 10*time.Second, func() (bool, string) {
		out, _, err := c.execErr("client", nil, "psql", fmt.Sprintf("host=%s user=postgres password=%s connect_timeout=2", to, c.env.Postgres.Password),
			"-Atc", "SHOW synchronous_standby_names")
		return err == nil && strings.TrimSpace(out) == "", strings.TrimSpace(out)
	})
	var kinds []string
	for _, e := range c.events() {
		if e.Kind == "cluster_edited" {
			kinds = append(kinds, e.Message)
		}
	}
	if len(kinds) != 3 {
		t.Errorf("cluster_edited events: %d, want 3 (name, address, mode):\n%s", len(kinds), strings.Join(kinds, "\n"))
	}
	// The console's cache follows: a later command finds the cluster.
	if out, _, code := c.console("status"); code != 0 || !strings.Contains(out, "replication async") {
		t.Errorf("status after the edits: exit %d\n%s", code, out)
	}
}
