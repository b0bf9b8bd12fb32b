package postgres

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tandem-ha/tandem/internal/fsutil"
	"github.com/tandem-ha/tandem/internal/tool"
)

// Data moved out of the way lives beside the data directory, named
// <data dir><tag><UTC time>, so a crash at any moment leaves it where the
// next start finds it.
const (
	// asideClone holds the data a clone replaced, until the caller has seen
	// the clone work. RecoverInterruptedClone puts the newest back.
	asideClone = ".tandem-old-"
	// asideLeft holds the data of a node that left its cluster
	// (MoveDataAside); nothing puts it back by itself.
	asideLeft = ".tandem-left-"
	// asideTrash is being deleted (DiscardAside); any leftover goes.
	asideTrash = ".tandem-discard-"

	asideTimeFormat = "20060102T150405.000000"
)

// progressEvery is how often a clone's progress is sampled.
const progressEvery = 500 * time.Millisecond

// Clone replaces this node's data with a copy of src's, taken with
// pg_basebackup through the replication slot (which must exist on src),
// ready to run as src's standby:
//
//  1. stop PostgreSQL (fast) if it runs;
//  2. move the data directory aside to <data dir>.tandem-old-<UTC time>;
//  3. make an empty data directory and fill it with pg_basebackup
//     (--wal-method stream --slot --checkpoint fast), the password through
//     PGPASSWORD;
//  4. write standby.signal.
//
// On success PostgreSQL stays halted and the old data stays aside: the
// caller starts the copy (StartStandby), watches it stream, then calls
// DiscardAside — before it records the clone as done, because
// RecoverInterruptedClone takes any aside copy for an interrupted clone —
// or, if the copy does not work, RestoreAside. On failure Clone puts the
// old data back itself (exactly as it was) and stays halted.
//
// progress, when not nil, is called from another goroutine twice a second
// until Clone returns: done is the bytes in the new data directory, total
// src's database size (0 when it cannot be read). A cancelled ctx kills
// pg_basebackup (with the WAL streamer it forked) and the old data is put
// back before the owner answers anything else.
func (s *Supervisor) Clone(ctx context.Context, src Source, slot string, progress func(done, total int64)) (aside string, err error) {
	return s.askValue(ctx, request{kind: reqClone, src: src, slot: slot, progress: progress})
}

// DiscardAside deletes data that Clone or MoveDataAside moved aside. It
// never touches the data directory, so PostgreSQL may run meanwhile; the
// owner only renames it out of the way, and the deleting happens on the
// caller's goroutine. A path that is gone already is no error.
func (s *Supervisor) DiscardAside(ctx context.Context, aside string) error {
	trash, err := s.askValue(ctx, request{kind: reqDiscardAside, aside: aside})
	if err != nil || trash == "" {
		return err
	}
	if err := os.RemoveAll(trash); err != nil {
		return fmt.Errorf("while deleting %s (moved there from %s): %w", trash, aside, err)
	}
	s.log.Info("deleted the data moved aside", "old_data_dir", aside)
	return nil
}

// RestoreAside puts data that Clone or MoveDataAside moved aside back in
// place of the data directory, whose content is deleted: for a clone that
// did not work after all. PostgreSQL is stopped (fast) first if it runs,
// and stays halted.
func (s *Supervisor) RestoreAside(ctx context.Context, aside string) error {
	return s.ask(ctx, request{kind: reqRestoreAside, aside: aside})
}

// MoveDataAside stops PostgreSQL (fast) if it runs and moves the whole data
// directory aside to <data dir>.tandem-left-<UTC time>, for a secondary
// leaving its cluster: StartPrimary with mayInit then creates a fresh,
// empty cluster. Unlike a clone's, this copy is not put back by
// RecoverInterruptedClone; DiscardAside deletes it. With no data directory
// there is nothing to move and aside is "".
func (s *Supervisor) MoveDataAside(ctx context.Context) (aside string, err error) {
	return s.askValue(ctx, request{kind: reqMoveDataAside})
}

// RecoverInterruptedClone finishes what a crash interrupted: data a clone
// moved aside (<data dir>.tandem-old-*) means the clone never completed,
// so the newest such copy is put back in place of whatever the data
// directory holds (a partial copy), and restored names it; "" when there
// was nothing to do. Half-deleted copies DiscardAside left are removed.
//
// Call it before the first start: before Start or StartHalted (it then
// runs on the caller's goroutine, and Start must not be called
// concurrently), or while halted. A postmaster left running on the data
// directory is stopped first.
func (s *Supervisor) RecoverInterruptedClone(ctx context.Context) (restored string, err error) {
	if s.started.CompareAndSwap(false, true) {
		// No owner yet, and none can start meanwhile: do its work here.
		defer s.started.Store(false)
		o := &owner{s: s, halted: true}
		return o.recoverInterruptedClone()
	}
	return s.askValue(ctx, request{kind: reqRecoverInterruptedClone})
}

func (o *owner) clone(ctx context.Context, src Source, slot string, progress func(done, total int64)) (string, error) {
	s := o.s
	dir := s.opts.DataDir
	if err := src.check(); err != nil {
		return "", err
	}
	if err := checkSlotName(slot); err != nil {
		return "", err
	}
	log := s.log.With("op", "clone", "source", src, "slot", slot)
	if err := o.haltAll(); err != nil {
		return "", fmt.Errorf("while stopping PostgreSQL before the clone: %w", err)
	}
	kind, err := inspectDataDir(dir)
	if err != nil {
		return "", err
	}
	aside := ""
	if kind != dirMissing {
		aside = asideName(dir, asideClone, time.Now())
		if err := renameDurably(dir, aside); err != nil {
			return "", fmt.Errorf("while moving the old data aside: %w", err)
		}
		log.Info("moved the old data aside", "old_data_dir", aside)
	}
	// fail puts the old data back; it uses no context, so a cancelled
	// request still restores.
	fail := func(cause error) (string, error) {
		log.Error("clone failed; putting the old data back", "err", cause.Error(), "old_data_dir", aside)
		if err := putBack(dir, aside); err != nil {
			err = fmt.Errorf("%w; and the old data could not be put back from %s (the next start does it): %v", cause, aside, err)
			s.setState(StateStopped, 0, err.Error())
			return "", err
		}
		s.setState(StateStopped, 0, "clone failed, old data put back: "+cause.Error())
		return "", cause
	}
	if err := s.makeDataDir(); err != nil {
		return fail(err)
	}
	if err := fsutil.SyncDir(filepath.Dir(dir)); err != nil {
		return fail(err)
	}
	stop := sampleProgress(dir, func() int64 { return sourceSize(ctx, src) }, progress)
	cmd := s.Tool("pg_basebackup",
		"--host="+src.Host, "--port="+strconv.Itoa(src.Port), "--username="+src.User, "--no-password",
		"--pgdata="+dir, "--wal-method=stream", "--slot="+slot, "--checkpoint=fast")
	cmd.Env = append(cmd.Env, "PGPASSWORD="+src.Password, "PGCONNECT_TIMEOUT="+strconv.Itoa(int(sourceConnectTimeout/time.Second)))
	_, err = tool.Run(ctx, log, cmd)
	stop()
	if err != nil {
		return fail(fmt.Errorf("while cloning from %s with pg_basebackup: %w", src, err))
	}
	if err := o.setStandbySignal(true); err != nil {
		return fail(err)
	}
	log.Info("cloned; PostgreSQL stays stopped until it starts as a standby", "old_data_dir", aside)
	return aside, nil
}

// putBack replaces dir with aside ("" when there was no data: dir goes).
func putBack(dir, aside string) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if aside == "" {
		return fsutil.SyncDir(filepath.Dir(dir))
	}
	return renameDurably(aside, dir)
}

func (o *owner) restoreAside(aside string) error {
	dir := o.s.opts.DataDir
	if err := checkAside(dir, aside, asideClone, asideLeft); err != nil {
		return err
	}
	if _, err := os.Stat(aside); err != nil {
		return fmt.Errorf("while looking for the data to put back: %w", err)
	}
	if err := o.haltAll(); err != nil {
		return fmt.Errorf("while stopping PostgreSQL before putting the old data back: %w", err)
	}
	if err := putBack(dir, aside); err != nil {
		return fmt.Errorf("while putting %s back in place of %s: %w", aside, dir, err)
	}
	o.s.log.Info("put the old data back", "old_data_dir", aside)
	return nil
}

// discardAside renames aside to a trash name and returns it.
func (o *owner) discardAside(aside string) (string, error) {
	dir := o.s.opts.DataDir
	if err := checkAside(dir, aside, asideClone, asideLeft); err != nil {
		return "", err
	}
	if _, err := os.Lstat(aside); errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	trash := asideName(dir, asideTrash, time.Now())
	if err := renameDurably(aside, trash); err != nil {
		return "", fmt.Errorf("while moving %s out of the way to delete it: %w", aside, err)
	}
	return trash, nil
}

func (o *owner) moveDataAside() (string, error) {
	dir := o.s.opts.DataDir
	if err := o.haltAll(); err != nil {
		return "", fmt.Errorf("while stopping PostgreSQL before moving its data aside: %w", err)
	}
	if kind, err := inspectDataDir(dir); err != nil {
		return "", err
	} else if kind == dirMissing {
		return "", nil
	}
	aside := asideName(dir, asideLeft, time.Now())
	if err := renameDurably(dir, aside); err != nil {
		return "", fmt.Errorf("while moving the data aside: %w", err)
	}
	o.s.log.Info("moved the data aside", "old_data_dir", aside)
	return aside, nil
}

func (o *owner) recoverInterruptedClone() (string, error) {
	s := o.s
	dir := s.opts.DataDir
	for _, t := range asides(dir, asideTrash) {
		s.log.Info("deleting what an earlier discard left", "path", t)
		if err := os.RemoveAll(t); err != nil {
			s.log.Warn("could not delete what an earlier discard left", "path", t, "err", err.Error())
		}
	}
	found := asides(dir, asideClone)
	if len(found) == 0 {
		return "", nil
	}
	newest := found[len(found)-1]
	s.log.Warn("a clone was interrupted; putting back the data it replaced", "old_data_dir", newest)
	if len(found) > 1 {
		s.log.Warn("older copies of replaced data are left alone", "paths", found[:len(found)-1])
	}
	if err := o.haltAll(); err != nil {
		return "", fmt.Errorf("while stopping PostgreSQL before putting the old data back: %w", err)
	}
	if err := putBack(dir, newest); err != nil {
		return "", fmt.Errorf("while putting %s back after an interrupted clone: %w", newest, err)
	}
	return newest, nil
}

// asideName is where data of dir moved aside with tag at t goes. The time
// is fixed-width, so the names sort by age.
func asideName(dir, tag string, t time.Time) string {
	return filepath.Clean(dir) + tag + t.UTC().Format(asideTimeFormat)
}

// asides lists dir's copies with tag, oldest first.
func asides(dir, tag string) []string {
	m, _ := filepath.Glob(globEscape(filepath.Clean(dir)+tag) + "*")
	sort.Strings(m)
	return m
}

func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// checkAside makes sure path is a copy of dir moved aside with one of
// tags, so that no caller can have an arbitrary path deleted or moved.
func checkAside(dir, path string, tags ...string) error {
	dir = filepath.Clean(dir)
	if filepath.IsAbs(path) && filepath.Dir(path) == filepath.Dir(dir) {
		base, dbase := filepath.Base(path), filepath.Base(dir)
		for _, tag := range tags {
			if rest, ok := strings.CutPrefix(base, dbase+tag); ok && rest != "" {
				return nil
			}
		}
	}
	return fmt.Errorf("%q is not data moved aside from %s (expected %s%s<time>)", path, dir, dir, tags[0])
}

// renameDurably renames and syncs the parent directory, so the rename
// survives a power loss. Both paths share the parent.
func renameDurably(from, to string) error {
	if err := os.Rename(from, to); err != nil {
		return err
	}
	return fsutil.SyncDir(filepath.Dir(to))
}

// sampleProgress reports the size of dir against what measure returns
// every progressEvery, until the returned stop, which waits for the last
// report. measure runs first, on the sampling goroutine, so a slow answer
// delays the first report and not the copy.
func sampleProgress(dir string, measure func() int64, progress func(done, total int64)) (stop func()) {
	if progress == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		total := measure()
		progress(0, total)
		t := time.NewTicker(progressEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			progress(dirSize(dir), total)
		}
	}()
	return func() {
		close(done)
		wg.Wait()
	}
}

func dirSize(dir string) int64 {
	var total int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				total += fi.Size()
			}
		}
		return nil
	})
	return total
}

// sourceSize is the total size of src's databases, the goal of a clone's
// progress; 0 when it cannot be read.
func sourceSize(ctx context.Context, src Source) int64 {
	ctx, cancel := context.WithTimeout(ctx, sourceConnectTimeout)
	defer cancel()
	c, err := src.connect(ctx)
	if err != nil {
		return 0
	}
	defer c.Close(context.Background())
	var size int64
	_ = c.QueryRow(ctx, `SELECT coalesce(sum(pg_database_size(oid)), 0)::bigint FROM pg_database WHERE datallowconn`).Scan(&size)
	return size
}
