package identity

import (
	"os"
	"path/filepath"
	"testing"
)

func TestViewerTokenBesideTheAdminToken(t *testing.T) {
	dir := t.TempDir()
	admin, err := EnsureToken(dir)
	if err != nil {
		t.Fatal(err)
	}
	viewer, err := EnsureViewerToken(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(viewer) < 32 || viewer == admin {
		t.Fatalf("viewer token %q: want 32 characters or more, not the admin token", viewer)
	}
	fi, err := os.Stat(filepath.Join(dir, ViewerTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("viewer-token has mode %v, want 0600", fi.Mode().Perm())
	}
	again, err := EnsureViewerToken(dir)
	if err != nil || again != viewer {
		t.Fatalf("a second start reads %q (%v), want the same token", again, err)
	}
	if err := os.WriteFile(filepath.Join(dir, ViewerTokenFile), []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := EnsureViewerToken(dir); err == nil {
		t.Fatal("a viewer token shorter than 32 characters was accepted")
	}
}
