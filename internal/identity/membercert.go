package identity

import (
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/tandem-ha/tandem/internal/fsutil"
)

// The quorum member's identity: a copy of the node certificate and key
// taken the first time, kept apart so that rotating the node certificate
// (tandem rotate-cert) leaves the member as the other two pinned it.
const (
	memberCertFile = "quorum-member.crt"
	memberKeyFile  = "quorum-member.key"
)

// MemberCert returns the quorum member's certificate and key (PEM) and
// the certificate's fingerprint, copying them from the node's on first
// use.
func MemberCert(dir string) (certPEM, keyPEM []byte, fingerprint string, err error) {
	if certPEM, keyPEM, err = memberCertPEM(dir); err != nil {
		return nil, nil, "", err
	}
	b, _ := pem.Decode(certPEM)
	if b == nil {
		return nil, nil, "", errors.New("the quorum member certificate is not PEM")
	}
	return certPEM, keyPEM, Fingerprint(b.Bytes), nil
}

func memberCertPEM(dir string) (certPEM, keyPEM []byte, err error) {
	cp, kp := filepath.Join(dir, memberCertFile), filepath.Join(dir, memberKeyFile)
	certPEM, errC := os.ReadFile(cp)
	keyPEM, errK := os.ReadFile(kp)
	if errC == nil && errK == nil {
		return certPEM, keyPEM, nil
	}
	if certPEM, err = os.ReadFile(filepath.Join(dir, CertFile)); err != nil {
		return nil, nil, fmt.Errorf("while reading the node certificate: %w", err)
	}
	if keyPEM, err = os.ReadFile(filepath.Join(dir, KeyFile)); err != nil {
		return nil, nil, fmt.Errorf("while reading the node key: %w", err)
	}
	// Key first, as for the node's own files.
	if err := fsutil.WriteFileAtomic(kp, keyPEM, 0o600); err != nil {
		return nil, nil, err
	}
	if err := fsutil.WriteFileAtomic(cp, certPEM, 0o644); err != nil {
		return nil, nil, err
	}
	return certPEM, keyPEM, nil
}
