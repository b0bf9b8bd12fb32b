package postgres

import (
	"os"
	"testing"
)

func TestParentOf(t *testing.T) {
	ppid, err := parentOf(os.Getpid())
	if err != nil || ppid != os.Getppid() {
		t.Fatalf("parentOf(self) = %d, %v; want %d", ppid, err, os.Getppid())
	}
	if _, err := parentOf(1 << 30); err == nil {
		t.Fatal("parentOf of a process that does not exist succeeded")
	}
}
