package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tandem-ha/tandem/internal/api"
	"github.com/tandem-ha/tandem/internal/identity"
	"github.com/tandem-ha/tandem/internal/state"
)

// rotNode is a node over fakes for PostgreSQL and the cluster IP, but with
// its real node API over real TLS on localhost, so that the pins are the
// ones a rotation changes.
type rotNode struct {
	*Node
	dir string
	srv *api.Server
	old tls.Certificate // the certificate it started with
}

func (r *rotNode) port() int {
	_, p, _ := net.SplitHostPort(r.srv.Addr())
	n, _ := strconv.Atoi(p)
	return n
}

// rotationPair is a (primary) and b (secondary), each pinning the other.
func rotationPair(t *testing.T) (a, b *rotNode) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	mk := func(name string, role state.Role) *rotNode {
		dir := t.TempDir()
		cert, err := identity.EnsureCert(dir, name, []string{"127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		st := clusterState(role, 1)
		st.Node = name
		if err := state.Save(dir, st); err != nil {
			t.Fatal(err)
		}
		n := New(Config{Name: name, IP: "127.0.0.1", StateDir: dir, Cert: cert, Fingerprint: identity.FingerprintOf(cert)}, st, newFakePG(t), &fakeVIP{}, log)
		srv := api.NewServer(api.Config{Listen: "127.0.0.1:0", GetCertificate: n.Certificate, Token: "rotation-test-token-0123456789abcdef", Backend: n, Log: log})
		if err := srv.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = srv.Stop(context.Background()); n.Stop(0) })
		return &rotNode{Node: n, dir: dir, srv: srv, old: cert}
	}
	a, b = mk("a", state.RolePrimary), mk("b", state.RoleSecondary)
	pin := func(n, peer *rotNode) {
		if err := n.set(func(s *state.State) {
			s.Cluster.Peer = &state.Peer{Name: peer.cfg.Name, IP: "127.0.0.1", APIPort: peer.port(), PGPort: 5432, Fingerprint: peer.fingerprint()}
		}); err != nil {
			t.Fatal(err)
		}
	}
	pin(a, b)
	pin(b, a)
	return a, b
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// heartbeat is n's heartbeat to its peer, over the real peer client.
func (r *rotNode) heartbeat(ctx context.Context) error {
	_, err := r.askPeer(ctx, memberOf(r.State().Cluster.Peer), 3*time.Second)
	return err
}

// pinnedFor is what n's state file (as a restart reads it) pins for its peer.
func (r *rotNode) pinnedFor(t *testing.T) state.Peer {
	t.Helper()
	s, ok, err := state.Load(r.dir)
	if err != nil || !ok || s.Cluster == nil || s.Cluster.Peer == nil {
		t.Fatalf("state of %s: %v %v", r.cfg.Name, ok, err)
	}
	return *s.Cluster.Peer
}

// presents reports whether r's API answers a handshake pinned to fp.
func (r *rotNode) presents(ctx context.Context, fp string) bool {
	c := api.NewClient(api.ClientConfig{Addr: r.srv.Addr(), Fingerprint: fp})
	defer c.Close()
	return c.Handshake(ctx) == nil
}

// peerCallWith calls r's peer heartbeat route presenting cert.
func (r *rotNode) peerCallWith(ctx context.Context, cert tls.Certificate) error {
	c := api.NewClient(api.ClientConfig{Addr: r.srv.Addr(), Fingerprint: r.fingerprint(), Cert: &cert})
	defer c.Close()
	_, err := c.Heartbeat(ctx)
	return err
}

func TestRotateCertWithThePeer(t *testing.T) {
	for _, who := range []string{"primary", "secondary"} {
		t.Run(who, func(t *testing.T) {
			a, b := rotationPair(t)
			x, y := a, b
			if who == "secondary" {
				x, y = b, a
			}
			ctx := ctxFor(t)
			old := x.fingerprint()
			if err := x.heartbeat(ctx); err != nil {
				t.Fatalf("before the rotation: %v", err)
			}

			prep, err := x.PrepareCert(ctx)
			if err != nil {
				t.Fatal(err)
			}
			next := prep.NextFingerprint
			if prep.Fingerprint != old || next == "" || next == old || prep.Peer != y.cfg.Name {
				t.Fatalf("prepare answered %+v", prep)
			}
			// Prepared: nothing in force changed, the peer accepts both.
			if p := y.pinnedFor(t); p.Fingerprint != old || p.NextFingerprint != next {
				t.Fatalf("after prepare %s pins %+v, want %s with next %s", y.cfg.Name, p, old, next)
			}
			if !x.presents(ctx, old) || x.presents(ctx, next) {
				t.Fatal("after prepare the node no longer serves its old certificate")
			}
			if info := x.Node.Node(ctx); info.Fingerprint != old || info.NextFingerprint != next {
				t.Errorf("after prepare the node says %s / next %s", info.Fingerprint, info.NextFingerprint)
			}
			if err := x.heartbeat(ctx); err != nil {
				t.Fatalf("heartbeat after prepare: %v", err)
			}
			if err := y.heartbeat(ctx); err != nil {
				t.Fatalf("the peer's heartbeat after prepare: %v", err)
			}

			sw, err := x.SwitchCert(ctx, api.CertSwitchRequest{Fingerprint: next})
			if err != nil {
				t.Fatal(err)
			}
			if sw.Old != old || sw.Fingerprint != next || !sw.PeerConfirmed {
				t.Fatalf("switch answered %+v", sw)
			}
			if p := y.pinnedFor(t); p.Fingerprint != next || p.NextFingerprint != "" {
				t.Fatalf("after the switch %s pins %+v, want only %s", y.cfg.Name, p, next)
			}
			if !x.presents(ctx, next) || x.presents(ctx, old) {
				t.Fatal("after the switch the node does not serve (only) its new certificate")
			}
			if c, err := identity.EnsureCert(x.dir, x.cfg.Name, nil); err != nil || identity.FingerprintOf(c) != next {
				t.Fatalf("a restart would load %s (%v), want %s", identity.FingerprintOf(c), err, next)
			}
			for _, n := range []*rotNode{x, y} {
				if err := n.heartbeat(ctx); err != nil {
					t.Errorf("%s's heartbeat after the switch: %v", n.cfg.Name, err)
				}
			}
			// The old certificate is refused by the peer from now on.
			err = y.peerCallWith(ctx, x.old)
			var ae *api.Error
			if !errors.As(err, &ae) || ae.Status != http.StatusForbidden {
				t.Errorf("the old certificate on the peer's peer route: %v, want 403", err)
			}
			// A repeated switch (a console that lost the answer) is no error.
			if again, err := x.SwitchCert(ctx, api.CertSwitchRequest{Fingerprint: next}); err != nil || again.Fingerprint != next {
				t.Errorf("repeated switch: %+v %v", again, err)
			}
		})
	}
}

func TestRotateCertRefusedWithThePeerDown(t *testing.T) {
	a, b := rotationPair(t)
	ctx := ctxFor(t)
	old := a.fingerprint()
	_ = b.srv.Stop(ctx)
	_, err := a.PrepareCert(ctx)
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Status != http.StatusServiceUnavailable || !strings.Contains(ae.Message, "peer b does not answer") || !strings.Contains(ae.Message, "Nothing was changed") {
		t.Fatalf("prepare with the peer down: %v", err)
	}
	if fileExists(filepath.Join(a.dir, identity.NextCertFile)) || fileExists(filepath.Join(a.dir, identity.NextKeyFile)) || a.fingerprint() != old || a.nextFingerprint() != "" {
		t.Error("a refused prepare left a rotation behind")
	}
}

func TestSwitchCertRefusals(t *testing.T) {
	a, b := rotationPair(t)
	ctx := ctxFor(t)
	old := a.fingerprint()
	other := "sha256:" + strings.Repeat("ab", 32)
	_, err := a.SwitchCert(ctx, api.CertSwitchRequest{Fingerprint: other})
	if !isStatus(err, http.StatusConflict) {
		t.Errorf("switch with nothing prepared: %v, want 409", err)
	}
	if _, err := a.PrepareCert(ctx); err != nil {
		t.Fatal(err)
	}
	for fp, want := range map[string]int{other: http.StatusConflict, "sha256:short": http.StatusBadRequest, "": http.StatusBadRequest} {
		if _, err := a.SwitchCert(ctx, api.CertSwitchRequest{Fingerprint: fp}); !isStatus(err, want) {
			t.Errorf("switch to %q: %v, want %d", fp, err, want)
		}
	}
	if a.fingerprint() != old || !a.presents(ctx, old) || b.pinnedFor(t).Fingerprint != old {
		t.Error("a refused switch changed a certificate or a pin")
	}
	// Preparing again resumes the same rotation.
	p1, p2 := a.nextFingerprint(), ""
	if r, err := a.PrepareCert(ctx); err == nil {
		p2 = r.NextFingerprint
	}
	if p1 == "" || p1 != p2 {
		t.Errorf("a second prepare made %q, want the prepared %q", p2, p1)
	}
}

// A node killed after its switch and before the confirmation comes back
// with the new certificate: the peer, which accepts both, promotes it at
// the node's first call (its heartbeat).
func TestPeerPromotesTheNextCertificateWhenItSeesIt(t *testing.T) {
	a, b := rotationPair(t)
	ctx := ctxFor(t)
	prep, err := a.PrepareCert(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// What the restart after the crash does: the files are switched and
	// the node starts with the new certificate.
	cert, err := identity.SwitchToNext(a.dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	a.certMu.Lock()
	a.cert, a.certFP, a.nextFP = cert, prep.NextFingerprint, ""
	a.certMu.Unlock()
	if err := b.heartbeat(ctx); err != nil {
		t.Fatalf("the peer cannot reach the restarted node: %v", err)
	}
	if err := a.heartbeat(ctx); err != nil {
		t.Fatalf("the restarted node's heartbeat: %v", err)
	}
	if p := b.pinnedFor(t); p.Fingerprint != prep.NextFingerprint || p.NextFingerprint != "" {
		t.Fatalf("after the node's heartbeat with its new certificate the peer pins %+v", p)
	}
	if err := b.peerCallWith(ctx, a.old); !isStatus(err, http.StatusForbidden) {
		t.Errorf("the old certificate after the promotion: %v, want 403", err)
	}
}

// The peer's side refuses an announcement that does not come over the
// pinned certificate, and changes nothing.
func TestPeerCertRules(t *testing.T) {
	tn := newTestNode(t, clusterState(state.RoleSecondary, 1))
	next := "sha256:" + strings.Repeat("01", 32)
	stranger := "sha256:" + strings.Repeat("02", 32)
	_, err := tn.PeerCert(api.WithClientFingerprint(context.Background(), stranger), api.PeerCertRequest{Fingerprint: next})
	if !isStatus(err, http.StatusConflict) {
		t.Errorf("an announcement over another certificate: %v", err)
	}
	if _, err := tn.PeerCert(api.WithClientFingerprint(context.Background(), "sha256:peer"), api.PeerCertRequest{Fingerprint: "nope"}); !isStatus(err, http.StatusBadRequest) {
		t.Errorf("a malformed fingerprint: %v", err)
	}
	if p := tn.saved(t).Cluster.Peer; p.Fingerprint != "sha256:peer" || p.NextFingerprint != "" {
		t.Errorf("refused announcements changed the pin: %+v", p)
	}
	r, err := tn.PeerCert(api.WithClientFingerprint(context.Background(), "sha256:peer"), api.PeerCertRequest{Fingerprint: next})
	if err != nil || r.Pinned != "sha256:peer" || r.Next != next {
		t.Fatalf("announcement: %+v %v", r, err)
	}
	if got := tn.PeerFingerprints(); len(got) != 2 || got[0] != "sha256:peer" || got[1] != next {
		t.Errorf("during the rotation the peer routes admit %v", got)
	}
	if _, err := os.Stat(filepath.Join(tn.dir, state.FileName)); err != nil {
		t.Fatal(err)
	}
}

func isStatus(err error, status int) bool {
	var ae *api.Error
	return errors.As(err, &ae) && ae.Status == status
}
