//go:build !windows

package console

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// tightenCacheDir brings an existing cache directory that other users may
// enter back to 0700, saying so in one line: it holds the admin tokens. A
// directory that is not the console's own (another owner, or shared with
// the sticky bit like /tmp) is left alone, to be refused by checkPrivateDir.
func tightenCacheDir(warn io.Writer) {
	dir, err := CacheDir()
	if err != nil {
		return
	}
	fi, err := os.Stat(dir)
	if err != nil || !fi.IsDir() || fi.Mode().Perm()&0o077 == 0 || fi.Mode()&fs.ModeSticky != 0 || !ownedByMe(fi) {
		return
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		fmt.Fprintf(warn, "tandem: the console directory %s is mode %04o and could not be tightened to 0700: %v\n", dir, fi.Mode().Perm(), err)
		return
	}
	fmt.Fprintf(warn, "tandem: the console directory %s was mode %04o; tightened it to 0700, as it holds admin tokens\n", dir, fi.Mode().Perm())
}

// checkPrivateDir refuses a cache directory other users may enter or
// that is not this user's: its files are the pins and the tokens.
func checkPrivateDir(dir string) error {
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // Save creates it, 0700
	}
	if err != nil {
		return fmt.Errorf("while checking the console directory: %w", err)
	}
	switch {
	case !fi.IsDir():
		return fmt.Errorf("the console directory %s is not a directory: move it away, or set TANDEM_CACHE_DIR", dir)
	case !ownedByMe(fi) || fi.Mode()&fs.ModeSticky != 0:
		return fmt.Errorf("the console directory %s is shared or another user's: give the console a directory of its own (TANDEM_CACHE_DIR), as it keeps admin tokens there", dir)
	case fi.Mode().Perm()&0o077 != 0:
		return fmt.Errorf("the console directory %s is open to other users (mode %04o): run chmod 700 %s", dir, fi.Mode().Perm(), dir)
	}
	return nil
}

// checkTokenFile refuses a tokens.json others may read or write (they
// could copy the admin tokens, or swap in their own), or that belongs to
// another user.
func checkTokenFile(path string, fi fs.FileInfo) error {
	switch {
	case fi.Mode().Perm()&0o077 != 0:
		return fmt.Errorf("the console's token file %s may be read or written by other users (mode %04o), and it holds admin tokens: run chmod 600 %s, and rotate the tokens if someone else may have read them", path, fi.Mode().Perm(), path)
	case !ownedByMe(fi):
		return fmt.Errorf("the console's token file %s belongs to another user: move it away and pass the tokens again", path)
	}
	return nil
}

func ownedByMe(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return !ok || int(st.Uid) == os.Geteuid()
}
