//go:build e2e

package e2e

import (
	"encoding/json"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// reverseName is ip's name in the reverse tree, without the final dot.
func reverseName(t *testing.T, ip string) string {
	t.Helper()
	arpa, err := dns.ReverseAddr(ip)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(arpa, ".")
}

// TestPreflight breaks the lab on purpose, one way at a time, with the
// lab's DNS edits and addresses, and checks that the network preflight
// (POST /v1/preflight, and `tandem preflight`)
// names each problem by its check ID, and passes on the healthy lab.
func TestPreflight(t *testing.T) {
	needRoot(t)
	l := upLab(t)
	e := l.env
	subnet := netip.MustParsePrefix(e.ClusterPrefix).Masked()
	at := func(host byte) string { // an address of the lab's /24, by its last byte
		b := subnet.Addr().As4()
		b[3] = host
		return netip.AddrFrom4(b).String()
	}
	clean := func(t *testing.T) {
		t.Helper()
		for _, node := range []string{"a", "b"} {
			if _, res := l.preflight(e, node, e.ClusterPrefix); res.Problems != 0 {
				t.Errorf("preflight on %s of the healthy lab: problems %v\n%+v", node, problems(res), res.Checks)
			}
		}
	}
	t.Run("healthy", clean)

	cases := []struct {
		name      string
		breakIt   func()
		mend      func()
		clusterIP string            // default: the lab's
		nodes     []string          // who must see it (default: both)
		want      map[string]string // check ID → a word its detail must hold
	}{{
		name:    "missing-ptr-for-b",
		breakIt: func() { l.labCommand("dns", "ptr", "--rm", e.nodeIP("b")) },
		mend:    func() { l.labCommand("dns", "reset") },
		want:    map[string]string{"reverse.node.b": reverseName(t, e.nodeIP("b"))},
	}, {
		name:    "cluster-name-elsewhere",
		breakIt: func() { l.labCommand("dns", "set", e.DNSName, at(99)) },
		mend:    func() { l.labCommand("dns", "reset") },
		want:    map[string]string{"forward.cluster": at(99)},
	}, {
		name:      "nodes-outside-the-subnet",
		clusterIP: at(200) + "/28",
		want:      map[string]string{"subnet": "outside", "subnet.interface": ""},
	}, {
		name:      "mixed-families",
		clusterIP: "fd00:77::10/64",
		want:      map[string]string{"family": "IPv4"},
	}, {
		name:    "address-in-use",
		breakIt: func() { l.ipRun("client", "addr", "add", e.ClusterPrefix, "dev", "eth0") },
		mend:    func() { l.ipRun("client", "addr", "del", e.ClusterPrefix, "dev", "eth0") },
		want:    map[string]string{"cluster_ip_free": e.macOf("client")},
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.breakIt != nil {
				c.breakIt()
			}
			if c.mend != nil {
				defer c.mend()
			}
			cip := c.clusterIP
			if cip == "" {
				cip = e.ClusterPrefix
			}
			nodes := c.nodes
			if nodes == nil {
				nodes = []string{"a", "b"}
			}
			for _, node := range nodes {
				checks, res := l.preflight(e, node, cip)
				for id, word := range c.want {
					got, ok := checks[id]
					switch {
					case !ok:
						t.Errorf("preflight on %s: no check %s in %v", node, id, res.Checks)
					case got.Status != "problem":
						t.Errorf("preflight on %s: %s is %s (%s), want a problem", node, id, got.Status, got.Detail)
					case !strings.Contains(got.Detail, word):
						t.Errorf("preflight on %s: %s says %q, which does not name %q", node, id, got.Detail, word)
					case got.Fix == "":
						t.Errorf("preflight on %s: %s has no fix", node, id)
					}
				}
				t.Logf("preflight on %s: problems %v", node, problems(res))
			}
		})
	}
	t.Run("healthy-again", clean)

	t.Run("console", func(t *testing.T) {
		run := func() (int, map[string][]string) {
			t.Helper()
			out, errOut, err := l.execErr("client", []string{
				"TANDEM_PRIMARY_TOKEN=" + e.token("a"), "TANDEM_SECONDARY_TOKEN=" + e.token("b"), "XDG_CACHE_HOME=" + t.TempDir(),
			}, filepath.Join(l.bin, "tandem"), "preflight", "--trust-new",
				"--primary", "a."+e.Domain, "--secondary", "b."+e.Domain,
				"--cluster-ip", e.ClusterPrefix, "--dns-name", e.DNSName, "-o", "json")
			var doc struct {
				Nodes []struct {
					Node   string `json:"node"`
					Checks []struct {
						ID     string `json:"id"`
						Status string `json:"status"`
					} `json:"checks"`
				} `json:"nodes"`
			}
			if jerr := json.Unmarshal([]byte(out), &doc); jerr != nil || len(doc.Nodes) != 2 {
				t.Fatalf("tandem preflight -o json: %v %v\n%s\n%s", err, jerr, out, errOut)
			}
			probs := map[string][]string{}
			for _, n := range doc.Nodes {
				for _, c := range n.Checks {
					if c.Status == "problem" {
						probs[n.Node] = append(probs[n.Node], c.ID)
					}
				}
			}
			return exitCode(err), probs
		}
		if code, probs := run(); code != 0 || len(probs) != 0 {
			t.Errorf("tandem preflight on the healthy lab: exit %d, problems %v", code, probs)
		}
		l.labCommand("dns", "ptr", "--rm", e.nodeIP("b"))
		defer l.labCommand("dns", "reset")
		code, probs := run()
		if code == 0 || !slices.Contains(probs["a"], "reverse.node.b") || !slices.Contains(probs["b"], "reverse.node.b") {
			t.Errorf("tandem preflight without b's PTR: exit %d, problems %v; want reverse.node.b on both", code, probs)
		}
	})
}
