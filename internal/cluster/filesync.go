package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tandem-ha/tandem/internal/fsutil"
	"github.com/tandem-ha/tandem/internal/state"
)

// Carrying configuration files (sync.files, docs/operations.md): the
// primary stores each listed file in the cluster record (tandem.files),
// which PostgreSQL replicates like any other change; the secondary reads
// the table on its hot standby and writes what differs, atomically, with
// the primary's mode and numeric owner, keeping the copy it replaces once
// as FILE.tandem-prev.
//
// Why the record and not the peer API: the record is already how the
// secondary learns everything the primary decides, it survives a restart
// of either tandemd, and a secondary that was away gets the files with the
// WAL it catches up on, with no new protocol.
//
// Each node writes only what its own sync.files lists: a primary, or
// whoever holds its credentials, cannot write anywhere else on the
// secondary.

// Events of sync.files.
const (
	EventFileStored     = "file_stored"
	EventFileSynced     = "file_synced"
	EventFileSyncFailed = "file_sync_failed"
)

// fileSyncEvery is how often each side looks: a change reaches the
// secondary within about two of these plus replication.
const fileSyncEvery = 500 * time.Millisecond

// fileSyncPassTimeout bounds one look (its queries and writes): a
// connection that stops answering would otherwise stall the carrying of
// files for good; after it the connection is dropped and the next look
// opens a new one.
const fileSyncPassTimeout = 5 * time.Second

// stampSettle is how long before a look a file must have been modified
// last for its stamp to be trusted. A stamp (size, mtime, inode, mode,
// owner) taken of a file modified just now cannot tell a later write that
// lands in the same tick of the file system's clock, with the same size,
// from no write at all; such a file is read and hashed again at each look
// until it has been quiet this long. Two seconds covers the coarsest
// common mtime (FAT's two seconds); the files are small, so reading one
// again for a few looks costs nothing.
const stampSettle = 2 * time.Second

// prevSuffix names the copy a write replaces.
const prevSuffix = ".tandem-prev"

// maxSyncFileSize bounds one carried file (config.MaxSyncFileSize).
const maxSyncFileSize = 256 << 10 // config.MaxSyncFileSize

// syncedFile is one carried file as stored in the record.
type syncedFile struct {
	Path     string
	Content  []byte
	Mode     uint32 // permission bits (0777): setuid, setgid and sticky are not carried
	UID, GID int
	Sum      string // sha256 of Content, hex
}

// fileStamp tells whether a file may have changed since it was last read.
type fileStamp struct {
	size, mtime int64
	ino         uint64
	mode        uint32
	uid, gid    int
}

func stampOf(fi fs.FileInfo) (fileStamp, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileStamp{}, false
	}
	return fileStamp{size: fi.Size(), mtime: fi.ModTime().UnixNano(), ino: st.Ino, mode: uint32(st.Mode) & 0o777, uid: int(st.Uid), gid: int(st.Gid)}, true
}

// readSyncFile reads path as the primary stores it: a regular file (not a
// symbolic link: the secondary would replace the link with a file), at
// most maxSyncFileSize.
func readSyncFile(path string) (syncedFile, fileStamp, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return syncedFile{}, fileStamp{}, err
	}
	if !fi.Mode().IsRegular() {
		return syncedFile{}, fileStamp{}, fmt.Errorf("%s is not a regular file (%s): list the file itself", path, fi.Mode().Type())
	}
	if fi.Size() > maxSyncFileSize {
		return syncedFile{}, fileStamp{}, fmt.Errorf("%s is %d bytes, more than the %d a carried file may hold", path, fi.Size(), maxSyncFileSize)
	}
	stamp, ok := stampOf(fi)
	if !ok {
		return syncedFile{}, fileStamp{}, fmt.Errorf("%s: no owner information", path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return syncedFile{}, fileStamp{}, err
	}
	if len(b) > maxSyncFileSize {
		return syncedFile{}, fileStamp{}, fmt.Errorf("%s grew past %d bytes while it was read", path, maxSyncFileSize)
	}
	sum := sha256.Sum256(b)
	return syncedFile{Path: path, Content: b, Mode: stamp.mode, UID: stamp.uid, GID: stamp.gid, Sum: hex.EncodeToString(sum[:])}, stamp, nil
}

// storeSyncFile writes f into the record (on the primary).
func storeSyncFile(ctx context.Context, conn *pgx.Conn, f syncedFile, node string) error {
	return recordTx(ctx, conn, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `
INSERT INTO tandem.files (path, content, mode, uid, gid, sha256, node, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, now())
ON CONFLICT (path) DO UPDATE SET content = $2, mode = $3, uid = $4, gid = $5, sha256 = $6, node = $7, updated_at = now()`,
			f.Path, f.Content, int64(f.Mode), f.UID, f.GID, f.Sum, node)
		if err != nil {
			return fmt.Errorf("while storing %s in the cluster record: %w", f.Path, err)
		}
		return nil
	})
}

// storedSyncFiles lists the record's files without their contents (the
// secondary looks every fileSyncEvery; it fetches a content only when it
// differs from its own copy).
func storedSyncFiles(ctx context.Context, db execer) ([]syncedFile, error) {
	var exists bool
	if err := db.QueryRow(ctx, `SELECT to_regclass('tandem.files') IS NOT NULL`).Scan(&exists); err != nil {
		return nil, err
	}
	if !exists {
		return nil, nil
	}
	rows, err := db.Query(ctx, `SELECT path, mode, uid, gid, sha256 FROM tandem.files ORDER BY path`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []syncedFile
	for rows.Next() {
		var f syncedFile
		var mode int64
		if err := rows.Scan(&f.Path, &mode, &f.UID, &f.GID, &f.Sum); err != nil {
			return nil, err
		}
		// Permission bits only: a row that asks for setuid (written by
		// whoever holds the database's superuser) does not get it here.
		f.Mode = uint32(mode) & 0o777
		out = append(out, f)
	}
	return out, rows.Err()
}

func storedSyncContent(ctx context.Context, db execer, path, sum string) ([]byte, error) {
	var b []byte
	err := db.QueryRow(ctx, `SELECT content FROM tandem.files WHERE path = $1 AND sha256 = $2`, path, sum).Scan(&b)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%s changed again while it was read; next look", path)
	}
	return b, err
}

// writeSyncFile puts f in place on the secondary: the file it replaces is
// kept once as FILE.tandem-prev (a later write replaces that copy), the new
// one is written beside the target and renamed over it, so a reader sees
// the old file or the new one, never half of one. The directory must exist.
func writeSyncFile(f syncedFile) (kept bool, err error) {
	if sum := sha256.Sum256(f.Content); hex.EncodeToString(sum[:]) != f.Sum {
		return false, fmt.Errorf("the content read from the record does not match its sha256 %.12s", f.Sum)
	}
	dir := filepath.Dir(f.Path)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return false, fmt.Errorf("the directory %s does not exist here: create it", dir)
	}
	// What is there now: kept once, if it is a regular file of a carried
	// file's size; a link, a FIFO or a device is not replaced at all (a
	// rename would put a file where the link was, and reading a FIFO or a
	// device could block or never end).
	if fi, err := os.Lstat(f.Path); err == nil {
		if !fi.Mode().IsRegular() {
			return false, fmt.Errorf("%s is not a regular file here (%s): remove it, or list the file it points to", f.Path, fi.Mode().Type())
		}
		if fi.Size() <= maxSyncFileSize {
			old, err := readNoFollow(f.Path)
			if err != nil {
				return false, fmt.Errorf("while keeping the replaced copy: %w", plainErr(err))
			}
			if err := fsutil.WriteFileAtomic(f.Path+prevSuffix, old, fi.Mode().Perm()); err != nil {
				return false, fmt.Errorf("while keeping the replaced copy: %w", plainErr(err))
			}
			kept = true
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return false, plainErr(err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(f.Path)+".tandem-*")
	if err != nil {
		return kept, fmt.Errorf("while creating the new copy in %s: %w", dir, plainErr(err))
	}
	defer os.Remove(tmp.Name()) // after the rename: nothing there
	werr := func(err error) error { return fmt.Errorf("while writing the new copy: %w", plainErr(err)) }
	if _, err := tmp.Write(f.Content); err != nil {
		tmp.Close()
		return kept, werr(err)
	}
	if err := setOwnerMode(tmp, f); err != nil {
		tmp.Close()
		return kept, err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return kept, werr(err)
	}
	if err := tmp.Close(); err != nil {
		return kept, werr(err)
	}
	if err := os.Rename(tmp.Name(), f.Path); err != nil {
		return kept, fmt.Errorf("while putting the new copy in place: %w", plainErr(err))
	}
	return kept, fsutil.SyncDir(dir)
}

// readNoFollow reads a regular file without following a link put in its
// place meanwhile.
func readNoFollow(path string) ([]byte, error) {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	file := os.NewFile(uintptr(fd), path)
	defer file.Close()
	fi, err := file.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() || fi.Size() > maxSyncFileSize {
		return nil, fmt.Errorf("%s changed into something else while it was read", path)
	}
	b := make([]byte, fi.Size()+1)
	n, err := io.ReadFull(file, b)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, err
	}
	return b[:n], nil
}

// plainErr is err without the path of a temporary file in it, so that a
// problem reported once per distinct message (problem) stays one message.
func plainErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Op, pe.Err)
	}
	return err
}

// setOwnerMode gives file the numeric owner and the mode of f (chmod after
// chown: chown clears setuid and setgid).
func setOwnerMode(file *os.File, f syncedFile) error {
	if err := file.Chown(f.UID, f.GID); err != nil {
		return fmt.Errorf("while giving %s to %d:%d: %w", f.Path, f.UID, f.GID, err)
	}
	return syscall.Fchmod(int(file.Fd()), f.Mode)
}

// fileSync is the loop's memory between looks.
type fileSync struct {
	role     state.Role
	conn     *pgx.Conn
	stored   map[string]string    // primary: path → sum in the record
	stamps   map[string]fileStamp // path → stamp when last read or written
	sums     map[string]string    // path → sum of the file on disk at that stamp
	reported map[string]string    // path → the last problem reported, once each
}

// remember records that path held what key says when stamp was taken
// (before it was read), unless the file was modified too close to the look
// (begun at now) for the stamp to be trusted: then nothing is recorded and
// the next look reads the file again.
func (fsy *fileSync) remember(path string, stamp fileStamp, key string, now time.Time) {
	if now.Sub(time.Unix(0, stamp.mtime)) < stampSettle {
		fsy.forget(path)
		return
	}
	fsy.stamps[path], fsy.sums[path] = stamp, key
}

// forget drops what is known of path's copy on disk: the next look reads it.
func (fsy *fileSync) forget(path string) {
	delete(fsy.stamps, path)
	delete(fsy.sums, path)
}

// recalled is the key remembered for path if its stamp still matches fi.
func (fsy *fileSync) recalled(path string, fi fs.FileInfo) (string, bool) {
	st, ok := stampOf(fi)
	if !ok {
		return "", false
	}
	old, known := fsy.stamps[path]
	if !known || old != st {
		return "", false
	}
	return fsy.sums[path], true
}

func (fsy *fileSync) reset(role state.Role) {
	if fsy.conn != nil {
		fsy.conn.Close(context.Background())
	}
	*fsy = fileSync{role: role, stored: nil, stamps: map[string]fileStamp{}, sums: map[string]string{}, reported: map[string]string{}}
}

// runFileSync carries sync.files while this node is primary or secondary.
func (n *Node) runFileSync(ctx context.Context) {
	if len(n.cfg.SyncFiles) == 0 {
		return
	}
	var fsy fileSync
	fsy.reset("")
	defer fsy.reset("")
	for n.run.wait(ctx, fileSyncEvery) {
		s := n.State()
		if s.Role != fsy.role {
			fsy.reset(s.Role)
		}
		if s.Role != state.RolePrimary && s.Role != state.RoleSecondary {
			continue
		}
		if fsy.conn == nil || fsy.conn.IsClosed() {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			conn, err := n.pg.Connect(cctx)
			cancel()
			if err != nil {
				continue // PostgreSQL not up: the next look
			}
			fsy.conn = conn
		}
		var err error
		pctx, cancel := context.WithTimeout(ctx, fileSyncPassTimeout)
		if s.Role == state.RolePrimary {
			err = n.publishFiles(pctx, &fsy)
		} else {
			err = n.applyFiles(pctx, &fsy)
		}
		cancel()
		if err != nil && ctx.Err() == nil {
			n.log.Debug("sync.files: the record did not answer", "err", err)
			fsy.conn.Close(context.Background())
			fsy.conn = nil
		}
	}
}

// problem reports, once for each distinct problem of path, why it is not
// carried.
func (n *Node) problem(ctx context.Context, fsy *fileSync, path string, err error) {
	msg := err.Error()
	if fsy.reported[path] == msg {
		return
	}
	fsy.reported[path] = msg
	n.log.Warn("sync.files: not carried", "path", path, "err", err)
	n.event(ctx, EventFileSyncFailed, n.cfg.Name, fmt.Sprintf("%s: %s not carried: %s", n.cfg.Name, path, msg))
}

// publishFiles is the primary's look: each listed file whose stamp changed
// is read, and stored when its content, mode or owner differs from the
// record's.
func (n *Node) publishFiles(ctx context.Context, fsy *fileSync) error {
	if fsy.stored == nil {
		rows, err := storedSyncFiles(ctx, fsy.conn)
		if err != nil {
			return err
		}
		fsy.stored = map[string]string{}
		for _, f := range rows {
			fsy.stored[f.Path] = storedKey(f)
		}
	}
	now := time.Now()
	for _, path := range n.cfg.SyncFiles {
		if fi, err := os.Lstat(path); err == nil {
			if key, ok := fsy.recalled(path, fi); ok && key == fsy.stored[path] {
				continue
			}
		}
		f, stamp, err := readSyncFile(path)
		if err != nil {
			n.problem(ctx, fsy, path, err)
			continue
		}
		delete(fsy.reported, path)
		key := storedKey(f)
		if fsy.stored[path] == key {
			fsy.remember(path, stamp, key, now)
			continue
		}
		if err := storeSyncFile(ctx, fsy.conn, f, n.cfg.Name); err != nil {
			return err
		}
		fsy.stored[path] = key
		fsy.remember(path, stamp, key, now)
		n.event(ctx, EventFileStored, n.cfg.Name, fmt.Sprintf("%s stored %s for the secondary (%d bytes, mode %04o, owner %d:%d, sha256 %.12s)", n.cfg.Name, path, len(f.Content), f.Mode, f.UID, f.GID, f.Sum))
	}
	return nil
}

// storedKey is what must match for a file to need no write: content, mode
// and owner.
func storedKey(f syncedFile) string {
	return fmt.Sprintf("%s %04o %d:%d", f.Sum, f.Mode, f.UID, f.GID)
}

// applyFiles is the secondary's look: each file of the record that this
// node's own sync.files lists and that differs on disk is written.
func (n *Node) applyFiles(ctx context.Context, fsy *fileSync) error {
	now := time.Now()
	rows, err := storedSyncFiles(ctx, fsy.conn)
	if err != nil {
		return err
	}
	for _, f := range rows {
		if !slices.Contains(n.cfg.SyncFiles, f.Path) {
			n.problem(ctx, fsy, f.Path, fmt.Errorf("the primary carries it, but this node's sync.files does not list it (list it on both nodes)"))
			continue
		}
		onDisk := ""
		if fi, err := os.Lstat(f.Path); err == nil {
			if key, ok := fsy.recalled(f.Path, fi); ok {
				onDisk = key
			} else if local, stamp, err := readSyncFile(f.Path); err == nil {
				onDisk = storedKey(local)
				fsy.remember(f.Path, stamp, onDisk, now)
			}
		}
		if onDisk == storedKey(f) {
			delete(fsy.reported, f.Path)
			continue
		}
		content, err := storedSyncContent(ctx, fsy.conn, f.Path, f.Sum)
		if err != nil {
			return err
		}
		f.Content = content
		kept, err := writeSyncFile(f)
		if err != nil {
			n.problem(ctx, fsy, f.Path, err)
			continue
		}
		delete(fsy.reported, f.Path)
		// Not stamped here: a stamp taken after the rename could already
		// be of an edit made since (the e2e test makes one at once), and
		// would then hide it for good. The next looks read the copy again
		// until it has settled (remember).
		fsy.forget(f.Path)
		msg := fmt.Sprintf("%s wrote %s from the primary (%d bytes, mode %04o, owner %d:%d, sha256 %.12s)", n.cfg.Name, f.Path, len(content), f.Mode, f.UID, f.GID, f.Sum)
		if kept {
			msg += "; the replaced copy is " + f.Path + prevSuffix
		}
		n.event(ctx, EventFileSynced, n.cfg.Name, msg)
	}
	return nil
}
