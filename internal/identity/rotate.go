package identity

import (
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/tandem-ha/tandem/internal/fsutil"
)

// A rotation keeps the next key and certificate beside the ones in force
// until the node switches to them. The files themselves are the rotation's
// journal: whatever a crash leaves, Settle (called at every start) turns it back into "the pair in force, and maybe a prepared next
// pair", and the pair in force is always one the peer pins.
//
//	prepare: write node.next.key, then node.next.crt (each atomically)
//	switch:  rename node.next.key → node.key, then node.next.crt → node.crt
//
// Because the key moves first, "node.key belongs to node.next.crt" can only
// mean a switch that stopped half-way, which Settle completes.
const (
	NextCertFile = "node.next.crt"
	NextKeyFile  = "node.next.key"
)

// Settle completes or clears what an interrupted rotation left in dir.
// It reports what it did, for the log ("" when there was nothing).
// EnsureCert calls it too; calling it again does nothing.
func Settle(dir string) (string, error) {
	p := func(f string) string { return filepath.Join(dir, f) }
	nextCrt, errNC := os.Stat(p(NextCertFile))
	_, errNK := os.Stat(p(NextKeyFile))
	switch {
	case errNC == nil && errNK == nil:
		return "", nil // prepared, not switched: LoadNext finds it
	case errNC != nil && errNK == nil:
		// The prepare stopped between its two writes: nobody was told of
		// this key yet, so it goes.
		if err := os.Remove(p(NextKeyFile)); err != nil {
			return "", fmt.Errorf("while removing the half-prepared %s: %w", NextKeyFile, err)
		}
		return "removed a half-prepared next key (a certificate rotation was interrupted before anyone learned of it)", nil
	case errNC == nil && errNK != nil:
		if !nextCrt.Mode().IsRegular() {
			return "", fmt.Errorf("%s in %s is not a regular file: move it away", NextCertFile, dir)
		}
		// Either the switch moved the key and stopped before the
		// certificate, or the prepare never wrote its key (impossible: the
		// key is written first). Which one is told by whom the key in
		// force belongs to.
		if _, err := tls.LoadX509KeyPair(p(NextCertFile), p(KeyFile)); err == nil {
			if err := os.Rename(p(NextCertFile), p(CertFile)); err != nil {
				return "", fmt.Errorf("while completing the interrupted certificate switch: %w", err)
			}
			if err := fsutil.SyncDir(dir); err != nil {
				return "", err
			}
			return "completed an interrupted certificate switch: the new certificate is in force", nil
		}
		if err := os.Remove(p(NextCertFile)); err != nil {
			return "", fmt.Errorf("while removing the stray %s: %w", NextCertFile, err)
		}
		return "removed a next certificate without its key", nil
	}
	return "", nil
}

// LoadNext returns the prepared next certificate in dir, or nil when no
// rotation is prepared.
func LoadNext(dir string) (*tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(filepath.Join(dir, NextCertFile), filepath.Join(dir, NextKeyFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("while loading the prepared next certificate from %s: %w (remove %s and %s to drop the rotation)", dir, err, NextCertFile, NextKeyFile)
	}
	return &c, nil
}

// PrepareNext makes the next key and certificate for name and ips beside
// the ones in force, or returns the ones already prepared, so that a
// rotation interrupted after its prepare resumes with the certificate the
// peer may already have learned.
func PrepareNext(dir, name string, ips []string) (tls.Certificate, error) {
	if c, err := LoadNext(dir); err != nil || c != nil {
		if err != nil {
			return tls.Certificate{}, err
		}
		return *c, nil
	}
	certPEM, keyPEM, err := newSelfSigned(name, ips)
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := fsutil.WriteFileAtomic(filepath.Join(dir, NextKeyFile), keyPEM, 0o600); err != nil {
		return tls.Certificate{}, err
	}
	if err := fsutil.WriteFileAtomic(filepath.Join(dir, NextCertFile), certPEM, 0o644); err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}

// SwitchToNext puts the prepared pair in force (the old key is gone once
// this returns) and returns it. between, when not nil, runs between the
// two renames (a crash test's hook).
func SwitchToNext(dir string, between func()) (tls.Certificate, error) {
	next, err := LoadNext(dir)
	if err != nil {
		return tls.Certificate{}, err
	}
	if next == nil {
		return tls.Certificate{}, fmt.Errorf("no next certificate is prepared in %s", dir)
	}
	p := func(f string) string { return filepath.Join(dir, f) }
	if err := os.Rename(p(NextKeyFile), p(KeyFile)); err != nil {
		return tls.Certificate{}, fmt.Errorf("while putting the new key in force: %w", err)
	}
	// The key's rename must be durable before the certificate's: settle
	// reads "key new, certificate old" as a switch to complete, never the
	// reverse.
	if err := fsutil.SyncDir(dir); err != nil {
		return tls.Certificate{}, err
	}
	if between != nil {
		between()
	}
	if err := os.Rename(p(NextCertFile), p(CertFile)); err != nil {
		return tls.Certificate{}, fmt.Errorf("while putting the new certificate in force: %w", err)
	}
	if err := fsutil.SyncDir(dir); err != nil {
		return tls.Certificate{}, err
	}
	return *next, nil
}

// DiscardNext drops a prepared rotation. The certificate goes first, so
// a crash in between leaves a lone next key, which Settle removes.
func DiscardNext(dir string) error {
	for _, f := range []string{NextCertFile, NextKeyFile} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("while dropping the prepared certificate: %w", err)
		}
	}
	return fsutil.SyncDir(dir)
}

// FingerprintOf is the fingerprint of a loaded certificate's leaf.
func FingerprintOf(c tls.Certificate) string {
	if len(c.Certificate) == 0 {
		return ""
	}
	return Fingerprint(c.Certificate[0])
}
