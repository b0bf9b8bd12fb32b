package quorumspec

import (
	"strings"
	"testing"

	"github.com/tandem-ha/tandem/internal/api"
	"github.com/tandem-ha/tandem/internal/identity"
	"github.com/tandem-ha/tandem/internal/quorum"
)

func testMember(t *testing.T, name, ip string) api.QuorumMember {
	t.Helper()
	certPEM, _, err := quorum.NewMemberCert(name, []string{ip})
	if err != nil {
		t.Fatal(err)
	}
	fp, err := pemFingerprint(string(certPEM))
	if err != nil {
		t.Fatal(err)
	}
	return api.QuorumMember{Name: name, PeerAddr: ip + ":7410", ClientAddr: ip + ":7411", CertPEM: string(certPEM), Fingerprint: fp}
}

func TestCheck(t *testing.T) {
	a, b, w := testMember(t, "a", "10.0.0.1"), testMember(t, "b", "10.0.0.2"), testMember(t, "w", "10.0.0.3")
	good := api.QuorumSpec{Token: "tandem-0123456789abcdef", Prefix: "/tandem/db.example.net", Members: []api.QuorumMember{a, b, w}}
	if err := Check(good, "a"); err != nil {
		t.Fatalf("a good quorum refused: %v", err)
	}
	wrongFP := w
	wrongFP.Fingerprint = identity.Fingerprint([]byte("other"))
	sameAddr := b
	sameAddr.PeerAddr = a.PeerAddr
	badPEM := w
	badPEM.CertPEM = "not a certificate"
	for _, tc := range []struct {
		name string
		mod  func(q *api.QuorumSpec)
		self string
		want string
	}{
		{"two members", func(q *api.QuorumSpec) { q.Members = q.Members[:2] }, "a", "exactly three members"},
		{"self missing", func(q *api.QuorumSpec) {}, "c", "does not name this node (c)"},
		{"name twice", func(q *api.QuorumSpec) { q.Members[2].Name = "a" }, "a", "named twice"},
		{"address twice", func(q *api.QuorumSpec) { q.Members[1] = sameAddr }, "a", "used twice"},
		{"fingerprint", func(q *api.QuorumSpec) { q.Members[2] = wrongFP }, "a", "not the pinned"},
		{"no PEM", func(q *api.QuorumSpec) { q.Members[2] = badPEM }, "a", "no PEM certificate"},
		{"bad address", func(q *api.QuorumSpec) { q.Members[0].ClientAddr = "10.0.0.1" }, "a", "must be host:port"},
		{"short token", func(q *api.QuorumSpec) { q.Token = "short" }, "a", "quorum token"},
		{"prefix", func(q *api.QuorumSpec) { q.Prefix = "tandem\nx" }, "a", "quorum prefix"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := good
			q.Members = append([]api.QuorumMember(nil), good.Members...)
			tc.mod(&q)
			err := Check(q, tc.self)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one saying %q", err, tc.want)
			}
		})
	}
}
