package state

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestOpenCreatesThenReloads(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, "a")
	if err != nil {
		t.Fatal(err)
	}
	if s.Node != "a" || s.Role != RoleNone || s.Term != 0 {
		t.Fatalf("fresh state %+v", s)
	}
	fi, err := os.Stat(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file mode %v, want 0600", fi.Mode().Perm())
	}
	s.Term, s.Role = 3, RolePrimary
	if err := Save(dir, s); err != nil {
		t.Fatal(err)
	}
	again, err := Open(dir, "a")
	if err != nil {
		t.Fatal(err)
	}
	if again.Term != 3 || again.Role != RolePrimary {
		t.Fatalf("reloaded %+v", again)
	}
}

func TestOpenRefusesAnotherNodesDir(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(dir, "a"); err != nil {
		t.Fatal(err)
	}
	_, err := Open(dir, "b")
	if err == nil || !strings.Contains(err.Error(), `belongs to node "a"`) {
		t.Fatalf("got %v, want a refusal naming node a", err)
	}
}

func TestDamagedStateIsRefused(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, FileName), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, "a"); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("got %v, want damaged", err)
	}
}
