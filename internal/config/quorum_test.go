package config

import (
	"strings"
	"testing"
)

func TestQuorumSettings(t *testing.T) {
	c := Defaults()
	if c.Quorum.PeerPort != 7410 || c.Quorum.ClientPort != 7411 || c.MaxLagBytes() != 1<<20 {
		t.Fatalf("defaults %+v, max_lag %d", c.Quorum, c.MaxLagBytes())
	}
	for _, tc := range []struct {
		q    Quorum
		want string
	}{
		{Quorum{PeerPort: 0, ClientPort: 7411, MaxLag: "1MB"}, "quorum.peer_port 0 must be 1-65535"},
		{Quorum{PeerPort: 7410, ClientPort: 7410, MaxLag: "1MB"}, "give them different ports"},
		{Quorum{PeerPort: 7400, ClientPort: 7411, MaxLag: "1MB"}, "must differ from the node API's port 7400"},
		{Quorum{PeerPort: 7410, ClientPort: 7411, MaxLag: "lots"}, "quorum.max_lag"},
		{Quorum{PeerPort: 7410, ClientPort: 7411, MaxLag: "1MB", Etcd: EtcdTLS{CertFile: "/c", KeyFile: "/k"}}, "quorum.etcd.ca_file is missing"},
		{Quorum{PeerPort: 7410, ClientPort: 7411, MaxLag: "1MB", Etcd: EtcdTLS{CAFile: "/ca", CertFile: "/c"}}, "come together"},
		{Quorum{PeerPort: 7410, ClientPort: 7411, MaxLag: "1MB", Etcd: EtcdTLS{CAFile: "ca.pem"}}, `quorum.etcd.ca_file "ca.pem" must be an absolute path`},
	} {
		c := Defaults()
		c.API.Listen = ":7400"
		c.Quorum = tc.q
		got := strings.Join(c.quorumProblems(), "; ")
		if !strings.Contains(got, tc.want) {
			t.Errorf("%+v: problems %q, want %q", tc.q, got, tc.want)
		}
	}
	for s, want := range map[string]int64{"0B": 0, "512kB": 512 << 10, "16MB": 16 << 20, "2GB": 2 << 30} {
		if n, err := parseSize(s); err != nil || n != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", s, n, err, want)
		}
	}
}

// The witness's configuration needs no PostgreSQL: only what it uses is
// checked, and its own problems are still named.
func TestValidateWitness(t *testing.T) {
	c := Defaults()
	c.Node.Name, c.Node.IP, c.StateDir = "w", "10.0.0.3", "/var/lib/tandem/witness"
	c.Postgres.BinDir = "/nonexistent/postgres/bin"
	c.Postgres.OSUser = "no-such-user-here"
	if err := c.ValidateWitness(); err != nil {
		t.Fatalf("a witness config was refused over its postgres section: %v", err)
	}
	c.Node.IP = "not-an-ip"
	c.Quorum.ClientPort = c.Quorum.PeerPort
	err := c.ValidateWitness()
	if err == nil || !strings.Contains(err.Error(), "node.ip") || !strings.Contains(err.Error(), "different ports") {
		t.Fatalf("witness problems: %v", err)
	}
}

func TestSyncFilesSettings(t *testing.T) {
	for _, tc := range []struct {
		files []string
		want  string
	}{
		{[]string{"etc/app.conf"}, "must be an absolute path"},
		{[]string{"/etc/../etc/app.conf"}, "must be a clean path"},
		{[]string{"/etc/app.conf", "/etc/app.conf"}, "listed twice"},
		{[]string{"/var/lib/tandem/state/x"}, "under state_dir"},
		{[]string{"/etc/tandem/tandemd.yaml"}, "tandemd's own configuration"},
		{[]string{"/etc/app.conf.tandem-prev"}, "replaced copy"},
	} {
		c := Defaults()
		c.StateDir = "/var/lib/tandem/state"
		c.Sync.Files = tc.files
		if got := strings.Join(c.syncProblems(), "; "); !strings.Contains(got, tc.want) {
			t.Errorf("%v: problems %q, want %q", tc.files, got, tc.want)
		}
	}
	c := Defaults()
	c.Sync.Files = []string{"/etc/app/app.conf", "/etc/app/other.conf"}
	if p := c.syncProblems(); len(p) != 0 {
		t.Errorf("good files refused: %v", p)
	}
}
