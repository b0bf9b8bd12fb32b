package cluster

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandem-ha/tandem/internal/api"
	"github.com/tandem-ha/tandem/internal/quorum"
	"github.com/tandem-ha/tandem/internal/state"
)

// testEtcd is a one-member etcd (Debian's etcd-server) on loopback with
// TLS as a site runs it: a CA of the test's signs the server's certificate
// and a client certificate, and the server requires one.
type testEtcd struct {
	endpoint             string
	ca, cert, key, other string // PEM files; other is a CA that signed nothing here
}

func startTestEtcd(t *testing.T) *testEtcd {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("etcd (Debian's etcd-server) is required in CI: %v", err)
		}
		t.Skipf("skipping the external etcd test: %v (install etcd-server)", err)
	}
	dir := t.TempDir()
	caKey, caCert := testCA(t, "test etcd CA")
	otherKey, otherCert := testCA(t, "another CA")
	_ = otherKey
	e := &testEtcd{ca: filepath.Join(dir, "ca.crt"), cert: filepath.Join(dir, "client.crt"), key: filepath.Join(dir, "client.key"), other: filepath.Join(dir, "other.crt")}
	writeTestPEM(t, e.ca, "CERTIFICATE", caCert.Raw)
	writeTestPEM(t, e.other, "CERTIFICATE", otherCert.Raw)
	issueTestCert(t, caCert, caKey, "server", filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"))
	issueTestCert(t, caCert, caKey, "client", e.cert, e.key)
	ports := freePorts(t, 2)
	e.endpoint = fmt.Sprintf("https://127.0.0.1:%d", ports[0])
	peer := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	cmd := exec.Command(bin, "--name", "t", "--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", e.endpoint, "--advertise-client-urls", e.endpoint,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", "t="+peer,
		"--cert-file", filepath.Join(dir, "server.crt"), "--key-file", filepath.Join(dir, "server.key"),
		"--trusted-ca-file", e.ca, "--client-cert-auth", "--logger", "zap", "--log-outputs", filepath.Join(dir, "etcd.log"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return e
}

func testCA(t *testing.T, name string) (*ecdsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return key, c
}

func issueTestCert(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, name, certPath, keyPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	writeTestPEM(t, certPath, "CERTIFICATE", der)
	kb, _ := x509.MarshalPKCS8PrivateKey(key)
	writeTestPEM(t, keyPath, "PRIVATE KEY", kb)
}

func writeTestPEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var out []int
	var ls []net.Listener
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return out
}

func statusOf(err error) int {
	var ae *api.Error
	if errors.As(err, &ae) {
		return ae.Status
	}
	return 0
}

// The checks a node makes before it uses an external etcd, against a real
// one: its TLS files (missing, unreadable, a CA that did not sign the
// server), an etcd that does not answer, and on the primary a prefix that
// another cluster holds or records a live primary in; a prefix a retired
// cluster left is free again.
func TestCheckExternalEtcd(t *testing.T) {
	e := startTestEtcd(t)
	tn := newTestNode(t, state.State{Role: state.RoleNone})
	n := tn.Node
	q := api.QuorumSpec{Prefix: "/tandem/db.example.net", Etcd: []string{e.endpoint}}
	good := EtcdFiles{CA: e.ca, Cert: e.cert, Key: e.key}
	ctx := context.Background()

	// Wait for etcd to answer with the good files.
	n.cfg.Etcd = good
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := n.checkExternalEtcd(ctx, q, true)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd did not answer: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}

	for _, tc := range []struct {
		name   string
		files  EtcdFiles
		spec   api.QuorumSpec
		status int
		want   string
	}{
		{"no CA", EtcdFiles{Cert: e.cert, Key: e.key}, q, http.StatusBadRequest, "no quorum.etcd.ca_file"},
		{"unreadable key", EtcdFiles{CA: e.ca, Cert: e.cert, Key: e.key + ".missing"}, q, http.StatusBadRequest, "quorum.etcd.key_file"},
		{"wrong CA", EtcdFiles{CA: e.other, Cert: e.cert, Key: e.key}, q, http.StatusServiceUnavailable, "certificate signed by unknown authority"},
		{"no client certificate", EtcdFiles{CA: e.ca}, q, http.StatusServiceUnavailable, "tls: bad certificate"},
		{"nothing listening", good, api.QuorumSpec{Prefix: q.Prefix, Etcd: []string{fmt.Sprintf("https://127.0.0.1:%d", freePorts(t, 1)[0])}}, http.StatusServiceUnavailable, "no endpoint answered within 3 s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n.cfg.Etcd = tc.files
			err := n.checkExternalEtcd(ctx, tc.spec, true)
			if err == nil || statusOf(err) != tc.status || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v (status %d), want %d saying %q", err, statusOf(err), tc.status, tc.want)
			}
		})
	}

	n.cfg.Etcd = good
	cli, err := n.newExternalClient(q)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	// Another cluster holds the prefix: refused on the primary, not on the
	// secondary (which joins a cluster whose primary just took it).
	l, err := quorum.Campaign(ctx, cli, q.Prefix, "x", quorum.LeaseConfig{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.checkExternalEtcd(ctx, q, true); statusOf(err) != http.StatusConflict || !strings.Contains(err.Error(), `held by "x"`) {
		t.Fatalf("a held prefix: %v, want 409 naming the holder", err)
	}
	if err := n.checkExternalEtcd(ctx, q, false); err != nil {
		t.Fatalf("the secondary's check of a held prefix: %v", err)
	}
	// Its primary record stays after the key goes.
	if err := l.WritePrimary(ctx, "x", 7); err != nil {
		t.Fatal(err)
	}
	if err := l.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	if err := n.checkExternalEtcd(ctx, q, true); statusOf(err) != http.StatusConflict || !strings.Contains(err.Error(), "term 7") {
		t.Fatalf("a prefix recording a live primary: %v, want 409 naming it", err)
	}
	// Retired (a disassembly, a change to manual): free again.
	l, err = quorum.Campaign(ctx, cli, q.Prefix, "x", quorum.LeaseConfig{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.WritePrimary(ctx, "x", math.MaxInt64); err != nil {
		t.Fatal(err)
	}
	if err := l.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	if err := n.checkExternalEtcd(ctx, q, true); err != nil {
		t.Fatalf("a retired prefix: %v, want it free", err)
	}
}
