//go:build e2e

package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLab brings up a full lab and checks what a newcomer relies on: DNS
// forward and reverse from the client, both nodes' API through their DNS
// names with the token from `lab env`, PostgreSQL running on both, and a
// `lab down` that leaves nothing behind.
func TestLab(t *testing.T) {
	needRoot(t)
	before := rootNetwork(t)
	l := upLab(t)
	checkRootNetworkUnchanged(t, before)
	e := l.env
	domain := l.name + ".test"

	if e.DNSName != "db."+domain || e.Domain != domain || len(e.Nodes) != 2 || e.ClientIP == "" || e.DNSServer == "" {
		t.Fatalf("lab env: %+v", e)
	}
	if e.Postgres.Port != 5432 || e.Postgres.User != "postgres" || e.Postgres.Password == "" {
		t.Errorf("lab env postgres: %+v", e.Postgres)
	}

	t.Run("env-shell", func(t *testing.T) {
		script := `eval "$("$0" lab env --name "$1" --shell)" && echo "$TANDEM_TOKEN_A $TANDEM_LAB_CLUSTER_IP $TANDEM_LAB_PG_PASSWORD"`
		out, err := exec.Command("sh", "-c", script, filepath.Join(l.bin, "tandem"), l.name).CombinedOutput()
		want := e.Nodes[0].Token + " " + e.ClusterIP + " " + e.Postgres.Password
		if err != nil || strings.TrimSpace(string(out)) != want {
			t.Errorf("eval of lab env --shell: %v %q, want %q", err, out, want)
		}
	})

	t.Run("dns", func(t *testing.T) {
		want := map[string]string{"a": e.Nodes[0].IP, "b": e.Nodes[1].IP, "client": e.ClientIP, "db": e.ClusterIP}
		for short, ip := range want {
			fqdn := short + "." + domain
			for _, q := range []string{fqdn, short} { // the search domain makes short names work too
				got, name, ok := l.resolve("client", q)
				if !ok || got != ip || name != fqdn {
					t.Errorf("client: getent hosts %s = %q %q (ok %v), want %s %s", q, got, name, ok, ip, fqdn)
				}
			}
			got, name, ok := l.resolve("client", ip)
			if !ok || name != fqdn {
				t.Errorf("client: getent hosts %s (reverse) = %q %q (ok %v), want %s", ip, got, name, ok, fqdn)
			}
		}
		// The nodes use the same DNS.
		if got, _, ok := l.resolve("a", "b"); !ok || got != e.Nodes[1].IP {
			t.Errorf("a: getent hosts b = %q (ok %v), want %s", got, ok, e.Nodes[1].IP)
		}
		// Nothing outside the lab resolves: the lab's DNS never forwards.
		if got, _, ok := l.resolve("client", "example.com"); ok {
			t.Errorf("client: example.com resolved to %s; the lab's DNS must not forward", got)
		}
		if got, _, ok := l.resolve("client", "nosuch."+domain); ok {
			t.Errorf("client: nosuch.%s resolved to %s", domain, got)
		}
	})

	t.Run("status", func(t *testing.T) {
		cache := t.TempDir()
		for i := range e.Nodes {
			l.checkStatus(t, e, i, cache)
		}
		// The console pinned both certificates in the cache it was given.
		b, err := os.ReadFile(filepath.Join(cache, "tandem", "cache.json"))
		if err != nil || !strings.Contains(string(b), "a."+domain) || !strings.Contains(string(b), "b."+domain) {
			t.Errorf("console cache under XDG_CACHE_HOME: %v\n%s", err, b)
		}
	})

	t.Run("exec", func(t *testing.T) {
		_, _, err := l.execErr("client", nil, "sh", "-c", "exit 7")
		if code := exitCode(err); code != 7 {
			t.Errorf("lab exec of `exit 7` exited %d, want 7", code)
		}
		if out := l.exec("client", []string{"LABVAR=seen"}, "sh", "-c", "echo $LABVAR"); strings.TrimSpace(out) != "seen" {
			t.Errorf("lab exec did not pass the environment: %q", out)
		}
		if _, _, err := l.execErr("nosuch", nil, "true"); err == nil {
			t.Error("lab exec on an unknown host succeeded")
		}
	})

	l.Down()
	checkRootNetworkUnchanged(t, before)
	// Idempotent: a second down finds nothing and succeeds.
	if out, errOut, err := l.tandem(nil, 3*time.Minute, "lab", "down", "--name", l.name); err != nil {
		t.Errorf("second lab down: %v\n%s%s", err, out, errOut)
	}
}

// TestTwoLabs runs two full labs with different names on the same subnet
// at once: each sees its own names only, its own nodes answer, and taking
// one down leaves the other working.
func TestTwoLabs(t *testing.T) {
	needRoot(t)
	before := rootNetwork(t)
	one := upLab(t)
	two := upLab(t)
	checkRootNetworkUnchanged(t, before)
	e1, e2 := one.env, two.env
	if e1.ClusterIP != e2.ClusterIP {
		t.Fatalf("the labs should share the default subnet: %s %s", e1.ClusterIP, e2.ClusterIP)
	}
	for _, c := range []struct {
		l, other *testLab
		e        labEnv
	}{{one, two, e1}, {two, one, e2}} {
		if ip, name, ok := c.l.resolve("client", "db"); !ok || ip != c.e.ClusterIP || name != "db."+c.l.name+".test" {
			t.Errorf("lab %s: db = %s %s (ok %v)", c.l.name, ip, name, ok)
		}
		if ip, _, ok := c.l.resolve("client", "a."+c.other.name+".test"); ok {
			t.Errorf("lab %s resolves lab %s's names (%s)", c.l.name, c.other.name, ip)
		}
		c.l.checkStatus(t, c.e, 0, t.TempDir())
	}
	if e1.Nodes[0].Token == e2.Nodes[0].Token {
		t.Error("the two labs' node a share a token: they are not separate")
	}
	one.Down()
	if ip, _, ok := two.resolve("client", "a"); !ok || ip != e2.Nodes[0].IP {
		t.Errorf("lab %s broke when lab %s went down: a = %q (ok %v)", two.name, one.name, ip, ok)
	}
	two.checkStatus(t, e2, 1, t.TempDir())
	two.Down()
	checkRootNetworkUnchanged(t, before)
}

// TestLabUpClearsLeftovers checks that `up` repairs a lab left by a crash:
// processes running, namespaces present, the layout file lost.
func TestLabUpClearsLeftovers(t *testing.T) {
	needRoot(t)
	l := upLab(t, "--no-tandemd")
	if err := os.Remove(filepath.Join(labBase, l.name, "layout.json")); err != nil {
		t.Fatal(err)
	}
	if out, errOut, err := l.tandem(nil, 3*time.Minute, "lab", "up", "--name", l.name, "--no-tandemd"); err != nil {
		t.Fatalf("lab up over leftovers: %v\n%s%s", err, out, errOut)
	}
	if ip, _, ok := l.resolve("client", "b"); !ok || ip != l.readEnv().Nodes[1].IP {
		t.Errorf("after up over leftovers: b = %q (ok %v)", ip, ok)
	}
	l.Down()
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// checkStatus asks node i of the lab, from the client, through its DNS
// name and with its token from `lab env`, and expects its own name and IP
// and a running PostgreSQL.
func (l *testLab) checkStatus(t *testing.T, e labEnv, i int, cache string) {
	t.Helper()
	n := e.Nodes[i]
	if n.Token == "" {
		t.Errorf("lab env has no token for node %s", n.Name)
		return
	}
	endpoint := "https://" + n.Name + "." + e.Domain + ":7400"
	out, errOut, err := l.execErr("client", []string{"TANDEM_TOKEN=" + n.Token, "XDG_CACHE_HOME=" + cache},
		filepath.Join(l.bin, "tandem"), "status", "--endpoint", endpoint, "-o", "json", "--trust-new")
	if err != nil {
		t.Errorf("tandem status --endpoint %s: %v\n%s%s", endpoint, err, out, errOut)
		return
	}
	var st struct {
		Nodes []struct {
			Reachable bool   `json:"reachable"`
			Name      string `json:"name"`
			IP        string `json:"ip"`
			Postgres  struct {
				State string `json:"state"`
			} `json:"postgres"`
		} `json:"nodes"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil || len(st.Nodes) != 1 {
		t.Errorf("tandem status %s: not the expected JSON (%v):\n%s", endpoint, err, out)
		return
	}
	got := st.Nodes[0]
	if !got.Reachable || got.Name != n.Name || got.IP != n.IP || got.Postgres.State != "running" {
		t.Errorf("tandem status %s = %+v, want node %s at %s with PostgreSQL running", endpoint, got, n.Name, n.IP)
	}
}

// TestLabUpAssembles: by default `lab up` ends with an assembled cluster,
// and the console on the client knows it without any flag or token.
func TestLabUpAssembles(t *testing.T) {
	needRoot(t)
	l := upLabFlags(t)
	e := l.env
	// The console as `lab exec` sets it up: the lab's own cache, which
	// `lab up` filled, not the test's.
	var s labStatus
	eventually(t, "the lab's cluster assembled and synchronized", 30*time.Second, func() (bool, string) {
		out, errOut, err := l.execErr("client", nil, filepath.Join(l.bin, "tandem"), "status", "-o", "json")
		s = labStatus{}
		jerr := json.Unmarshal([]byte(out), &s)
		if err != nil || jerr != nil {
			return false, fmt.Sprintf("tandem status: %v %v\n%s\n%s", err, jerr, out, errOut)
		}
		return s.Cluster != nil && s.Cluster.Synchronized, s.String()
	})
	if s.Cluster.Name != e.DNSName || s.Cluster.Term != 1 || s.Cluster.Primary != "a" || s.Cluster.ClusterIP != e.ClusterIP+"/24" {
		t.Fatalf("unexpected cluster: %s", s)
	}
	if r := s.roles(); r["a"] != "primary" || r["b"] != "secondary" {
		t.Fatalf("roles %v", r)
	}
	out := l.exec("client", nil, "psql", "host="+e.DNSName+" user=postgres password="+e.Postgres.Password+" connect_timeout=3", "-Atc", "SELECT NOT pg_is_in_recovery()")
	if strings.TrimSpace(out) != "t" {
		t.Fatalf("the cluster name does not lead to a read-write primary: %q", out)
	}
}
