//go:build !windows

package fsutil

import (
	"fmt"
	"os"
)

// SyncDir fsyncs a directory so entries created or renamed in it persist.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("while opening %s to sync it: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("while syncing directory %s: %w", dir, err)
	}
	return nil
}
