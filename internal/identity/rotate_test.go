package identity

import (
	"os"
	"path/filepath"
	"testing"
)

func fp(t *testing.T, dir string) string {
	t.Helper()
	c, err := EnsureCert(dir, "a", []string{"10.0.0.11"})
	if err != nil {
		t.Fatal(err)
	}
	return FingerprintOf(c)
}

func exists(dir, f string) bool {
	_, err := os.Stat(filepath.Join(dir, f))
	return err == nil
}

func TestRotationPrepareSwitch(t *testing.T) {
	dir := t.TempDir()
	old := fp(t, dir)
	if n, err := LoadNext(dir); err != nil || n != nil {
		t.Fatalf("a fresh state dir has a prepared rotation: %v %v", n, err)
	}
	next, err := PrepareNext(dir, "a", []string{"10.0.0.11"})
	if err != nil {
		t.Fatal(err)
	}
	nfp := FingerprintOf(next)
	if nfp == old {
		t.Fatal("the next certificate is the old one")
	}
	// A prepared rotation changes nothing in force, also across a restart.
	if got := fp(t, dir); got != old {
		t.Fatalf("after prepare the certificate in force is %s, want the old %s", got, old)
	}
	// Preparing again resumes with the same certificate: the peer may
	// already pin it.
	again, err := PrepareNext(dir, "a", []string{"10.0.0.11"})
	if err != nil || FingerprintOf(again) != nfp {
		t.Fatalf("a second prepare made %s (%v), want the prepared %s", FingerprintOf(again), err, nfp)
	}
	if st, _ := os.Stat(filepath.Join(dir, NextKeyFile)); st.Mode().Perm() != 0o600 {
		t.Errorf("the next key has mode %v, want 0600", st.Mode().Perm())
	}
	got, err := SwitchToNext(dir, nil)
	if err != nil || FingerprintOf(got) != nfp {
		t.Fatalf("switch: %s %v, want %s", FingerprintOf(got), err, nfp)
	}
	if exists(dir, NextCertFile) || exists(dir, NextKeyFile) {
		t.Error("the next files are still there after the switch")
	}
	if got := fp(t, dir); got != nfp {
		t.Fatalf("after the switch a restart loads %s, want the new %s", got, nfp)
	}
	if _, err := SwitchToNext(dir, nil); err == nil {
		t.Error("a switch with nothing prepared succeeded")
	}
}

// A crash between the two renames of the switch leaves the new key with
// the old certificate; the next start completes the switch.
func TestRotationCrashBetweenRenames(t *testing.T) {
	dir := t.TempDir()
	old := fp(t, dir)
	next, err := PrepareNext(dir, "a", nil)
	if err != nil {
		t.Fatal(err)
	}
	crash := func() { panic("crash") }
	func() {
		defer func() { _ = recover() }()
		_, _ = SwitchToNext(dir, crash)
	}()
	if !exists(dir, NextCertFile) || exists(dir, NextKeyFile) {
		t.Fatal("the simulated crash did not stop the switch between its renames")
	}
	note, err := Settle(dir)
	if err != nil || note == "" {
		t.Fatalf("settle: %q %v", note, err)
	}
	if got := fp(t, dir); got != FingerprintOf(next) || got == old {
		t.Fatalf("after the interrupted switch the node loads %s, want the new %s", got, FingerprintOf(next))
	}
	if note, _ := Settle(dir); note != "" {
		t.Errorf("a second settle did something: %s", note)
	}
}

// A crash inside the prepare (the key written, not the certificate)
// leaves a key nobody knows of; it goes, the old pair stays in force.
func TestRotationCrashInPrepare(t *testing.T) {
	dir := t.TempDir()
	old := fp(t, dir)
	if _, err := PrepareNext(dir, "a", nil); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, NextCertFile)); err != nil {
		t.Fatal(err)
	}
	if got := fp(t, dir); got != old {
		t.Fatalf("after an interrupted prepare the node loads %s, want %s", got, old)
	}
	if exists(dir, NextKeyFile) {
		t.Error("the half-prepared key is still there")
	}
	if n, err := LoadNext(dir); n != nil || err != nil {
		t.Errorf("an interrupted prepare counts as prepared: %v %v", n, err)
	}
}

// A next certificate without its key that does not match the key in force
// is a leftover, not a switch: it is removed and the old pair stays.
func TestRotationStrayNextCert(t *testing.T) {
	dir := t.TempDir()
	old := fp(t, dir)
	other := t.TempDir()
	if _, err := PrepareNext(other, "a", nil); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(other, NextCertFile))
	if err := os.WriteFile(filepath.Join(dir, NextCertFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if got := fp(t, dir); got != old {
		t.Fatalf("a stray next certificate changed the one in force to %s", got)
	}
	if exists(dir, NextCertFile) {
		t.Error("the stray next certificate is still there")
	}
}

func TestDiscardNext(t *testing.T) {
	dir := t.TempDir()
	old := fp(t, dir)
	if _, err := PrepareNext(dir, "a", nil); err != nil {
		t.Fatal(err)
	}
	if err := DiscardNext(dir); err != nil {
		t.Fatal(err)
	}
	if exists(dir, NextCertFile) || exists(dir, NextKeyFile) || fp(t, dir) != old {
		t.Error("discard left the rotation behind or changed the certificate in force")
	}
	if err := DiscardNext(dir); err != nil {
		t.Errorf("discarding nothing: %v", err)
	}
}
