// Package identity creates and loads what makes a node recognisable: its
// self-signed TLS certificate (pinned by consoles and by the peer) with its
// rotation, and the admin token consoles present. Both live in the state
// dir and are created on first start.
package identity

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tandem-ha/tandem/internal/fsutil"
)

// File names inside the state dir.
const (
	CertFile  = "node.crt"
	KeyFile   = "node.key"
	TokenFile = "admin-token"
	// ViewerTokenFile holds the web console's read-only token, made and
	// kept beside the admin token the same way.
	ViewerTokenFile = "viewer-token"
)

// certLifetime is long because the certificate is pinned by fingerprint,
// not trusted through a CA; rotating it (rotate.go) re-pins it everywhere.
const certLifetime = 20 * 365 * 24 * time.Hour

// EnsureCert loads the node certificate from dir, creating a self-signed
// one for name and ips when none exists yet.
func EnsureCert(dir, name string, ips []string) (tls.Certificate, error) {
	certPath, keyPath := filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile)
	if _, err := Settle(dir); err != nil {
		return tls.Certificate{}, err
	}
	_, errC := os.Stat(certPath)
	_, errK := os.Stat(keyPath)
	switch {
	case errC == nil && errK == nil:
		c, err := tls.LoadX509KeyPair(certPath, keyPath)
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("while loading the node certificate from %s: %w (move both files away to create a new one; consoles will then have to re-trust this node)", dir, err)
		}
		return c, nil
	case errors.Is(errC, os.ErrNotExist) && errors.Is(errK, os.ErrNotExist):
	default:
		return tls.Certificate{}, fmt.Errorf("only one of %s and %s exists in %s: restore the other or move both away", CertFile, KeyFile, dir)
	}

	certPEM, keyPEM, err := newSelfSigned(name, ips)
	if err != nil {
		return tls.Certificate{}, err
	}
	// Key first: a crash between the two writes leaves "only one exists",
	// which is refused above rather than silently regenerated.
	if err := fsutil.WriteFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return tls.Certificate{}, err
	}
	if err := fsutil.WriteFileAtomic(certPath, certPEM, 0o644); err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}

func newSelfSigned(name string, ips []string) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("while generating the node key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"tandem node"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(certLifetime),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		DNSNames:              []string{name},
	}
	for _, s := range ips {
		if ip := net.ParseIP(s); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("while creating the node certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

// Fingerprint is the SHA-256 of a certificate's DER bytes, written
// "sha256:" and lowercase hex; consoles pin it.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// EnsureToken loads the admin token from dir, creating a random one
// (256 bits) when none exists.
func EnsureToken(dir string) (string, error) {
	return ensureTokenFile(dir, TokenFile, "admin")
}

// EnsureViewerToken loads the web console's read-only token from dir,
// creating a random one when none exists, as EnsureToken does.
func EnsureViewerToken(dir string) (string, error) {
	return ensureTokenFile(dir, ViewerTokenFile, "viewer")
}

func ensureTokenFile(dir, file, what string) (string, error) {
	p := filepath.Join(dir, file)
	b, err := os.ReadFile(p)
	switch {
	case err == nil:
		tok := strings.TrimSpace(string(b))
		if len(tok) < 32 {
			return "", fmt.Errorf("the %s token in %s is shorter than 32 characters: remove the file to create a new one", what, p)
		}
		return tok, nil
	case !errors.Is(err, os.ErrNotExist):
		return "", fmt.Errorf("while reading the %s token: %w", what, err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	tok := base64.RawURLEncoding.EncodeToString(raw)
	if err := fsutil.WriteFileAtomic(p, []byte(tok+"\n"), 0o600); err != nil {
		return "", err
	}
	return tok, nil
}

// TokenMatches compares in constant time so response timing reveals
// nothing about the token.
func TokenMatches(got, want string) bool {
	return len(want) > 0 && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}
