package quorum

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/tandem-ha/tandem/internal/fsutil"
)

// Trust between members: each member has its own self-signed certificate,
// and the trusted pool every member (and every client) verifies against is
// exactly the three members' certificates, exchanged at assembly. We chose
// this over a small cluster CA because:
//   - it is the scheme the peer API already uses (self-signed node
//     certificates, pinned), so assembly pins one more set of certificates
//     rather than introducing a signing key;
//   - there is no CA key that must be kept somewhere (or destroyed) and
//     that could mint a fourth identity later: the set of acceptable peers is
//     the set of certificates, nothing more;
//   - Go's verifier accepts a self-signed leaf that is itself in the root
//     pool, so etcd's ordinary TLS options (a "CA file" holding the three
//     certificates) give the pinning without patching etcd.
//
// The cost: replacing one member's certificate means giving the new one to
// the other two (restart each with the new pool), as re-pinning does for the
// peer API.

// memberCertLifetime is long for the same reason as the node certificate's:
// it is pinned, not trusted through a CA.
const memberCertLifetime = 20 * 365 * 24 * time.Hour

// NewMemberCert makes a self-signed certificate and key (PEM) for a member
// called name, valid for the given host names and IP addresses (the
// addresses its peer and client URLs use), for both server and client use.
func NewMemberCert(name string, hosts []string) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("while generating the quorum member key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"tandem quorum member"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(memberCertLifetime),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("while creating the quorum member certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

func writeTLS(dir string, c MemberConfig) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("while creating %s: %w", dir, err)
	}
	if _, err := tls.X509KeyPair(c.CertPEM, c.KeyPEM); err != nil {
		return fmt.Errorf("quorum member %s: certificate and key do not match: %w", c.Name, err)
	}
	pool, err := joinPEM(c.TrustedPEM)
	if err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(filepath.Join(dir, keyFile), c.KeyPEM, 0o600); err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(filepath.Join(dir, certFile), c.CertPEM, 0o644); err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(filepath.Join(dir, trustedFile), pool, 0o644)
}

func joinPEM(certs [][]byte) ([]byte, error) {
	var out []byte
	for _, c := range certs {
		if _, err := parseCert(c); err != nil {
			return nil, err
		}
		out = append(out, c...)
		if len(c) > 0 && c[len(c)-1] != '\n' {
			out = append(out, '\n')
		}
	}
	return out, nil
}

func parseCert(p []byte) (*x509.Certificate, error) {
	b, _ := pem.Decode(p)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, errors.New("quorum: a trusted certificate is not a PEM certificate")
	}
	return x509.ParseCertificate(b.Bytes)
}

func clientTLS(certPEM, keyPEM []byte, trusted [][]byte) (*tls.Config, error) {
	pool := x509.NewCertPool()
	for _, p := range trusted {
		// A CA file may hold a chain or several CAs: every certificate
		// in it is trusted.
		if !pool.AppendCertsFromPEM(p) {
			return nil, errors.New("quorum: a trusted certificate (or CA file) holds no PEM certificate")
		}
	}
	tc := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if len(certPEM) > 0 {
		kp, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("while loading the quorum client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{kp}
	}
	return tc, nil
}
