package cluster

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// What the primary reads: a regular file within the cap, with its mode and
// owner; a link or an oversized file is refused with a reason.
func TestReadSyncFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "app.conf")
	if err := os.WriteFile(p, []byte("listen 1\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	f, _, err := readSyncFile(p)
	if err != nil || string(f.Content) != "listen 1\n" || f.Mode != 0o640 || len(f.Sum) != 64 {
		t.Fatalf("read %+v, %v", f, err)
	}
	link := filepath.Join(dir, "link.conf")
	if err := os.Symlink(p, link); err != nil {
		t.Fatal(err)
	}
	if _, _, err := readSyncFile(link); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("a symbolic link: %v, want it refused", err)
	}
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, make([]byte, maxSyncFileSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := readSyncFile(big); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("an oversized file: %v, want it refused", err)
	}
}

// What the secondary writes: the content with the primary's mode and
// numeric owner, the replaced file kept once beside it, nothing half
// written left behind; a missing directory is named, not created.
func TestWriteSyncFile(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("giving a file another owner needs root")
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "app.conf")
	f := withSum(syncedFile{Path: p, Content: []byte("v1\n"), Mode: 0o640, UID: 1234, GID: 5678})
	if kept, err := writeSyncFile(f); err != nil || kept {
		t.Fatalf("first write: kept %v, %v", kept, err)
	}
	check := func(want string, mode os.FileMode, uid, gid int) {
		t.Helper()
		b, err := os.ReadFile(p)
		fi, _ := os.Stat(p)
		st := fi.Sys().(*syscall.Stat_t)
		if err != nil || string(b) != want || fi.Mode().Perm() != mode || int(st.Uid) != uid || int(st.Gid) != gid {
			t.Fatalf("%s: %q mode %v owner %d:%d, %v; want %q %v %d:%d", p, b, fi.Mode().Perm(), st.Uid, st.Gid, err, want, mode, uid, gid)
		}
	}
	check("v1\n", 0o640, 1234, 5678)
	f.Content, f.Mode, f.UID, f.GID = []byte("v2\n"), 0o600, 0, 0
	f = withSum(f)
	if kept, err := writeSyncFile(f); err != nil || !kept {
		t.Fatalf("second write: kept %v, %v", kept, err)
	}
	check("v2\n", 0o600, 0, 0)
	f.Content = []byte("v3\n")
	f = withSum(f)
	if _, err := writeSyncFile(f); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p + prevSuffix); string(b) != "v2\n" {
		t.Errorf("the kept copy holds %q, want the one replaced last (v2)", b)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tandem-") && e.Name() != "app.conf"+prevSuffix {
			t.Errorf("left behind: %s", e.Name())
		}
	}
	// A content that does not match its sum is not written.
	bad := f
	bad.Content = []byte("tampered\n")
	if _, err := writeSyncFile(bad); err == nil || !strings.Contains(err.Error(), "does not match its sha256") {
		t.Errorf("a content not matching its sum: %v, want it refused", err)
	}
	// A link where the file should be is neither followed nor replaced.
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.conf")
	if err := os.Symlink(secret, link); err != nil {
		t.Fatal(err)
	}
	l := withSum(syncedFile{Path: link, Content: []byte("x\n"), Mode: 0o644})
	if _, err := writeSyncFile(l); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("a link at the target: %v, want it refused", err)
	}
	if _, err := os.Stat(link + prevSuffix); !os.IsNotExist(err) {
		t.Errorf("a copy of what the link points to was kept (%v)", err)
	}
	f.Path = filepath.Join(dir, "missing", "x.conf")
	if _, err := writeSyncFile(f); err == nil || !strings.Contains(err.Error(), "does not exist here") {
		t.Errorf("a missing directory: %v, want it named", err)
	}
}

func withSum(f syncedFile) syncedFile {
	sum := sha256.Sum256(f.Content)
	f.Sum = hex.EncodeToString(sum[:])
	return f
}

// A stamp of a file modified just before the look is not trusted: an edit
// in the same tick of the file system's clock, of the same size, would
// look like no change at all and never be carried. Once the file has been
// quiet for stampSettle, its stamp stands for its content until it
// changes.
func TestFileStampSettles(t *testing.T) {
	p := filepath.Join(t.TempDir(), "app.conf")
	if err := os.WriteFile(p, []byte("listen 1\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	var fsy fileSync
	fsy.reset("")
	f, stamp, err := readSyncFile(p)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Lstat(p)
	fsy.remember(p, stamp, storedKey(f), time.Now())
	if _, ok := fsy.recalled(p, fi); ok {
		t.Fatal("a stamp taken right after a write was trusted; an edit of the same size in the same tick would be missed")
	}
	mtime := fi.ModTime()
	fsy.remember(p, stamp, storedKey(f), mtime.Add(stampSettle+time.Millisecond))
	if key, ok := fsy.recalled(p, fi); !ok || key != storedKey(f) {
		t.Fatalf("a settled file's stamp: %q, %v; want its key recalled", key, ok)
	}
	// Any write after the look changes the stamp: the next look reads it.
	if err := os.WriteFile(p, []byte("listen 22\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	fi, _ = os.Lstat(p)
	if _, ok := fsy.recalled(p, fi); ok {
		t.Error("an edited file still recalled its old content")
	}
	fsy.forget(p)
	if _, ok := fsy.recalled(p, fi); ok {
		t.Error("a forgotten file was recalled")
	}
}
