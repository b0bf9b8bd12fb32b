package fsutil

// SyncDir is a no-op on Windows: directories cannot be opened for fsync
// there, and NTFS makes a completed rename durable with its journal.
func SyncDir(dir string) error { return nil }
