package postgres

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/tandem-ha/tandem/internal/tool"
)

// Files tandemd manages inside the data directory.
const (
	managedConf = "tandem.conf"
	includeLine = "include_if_exists = '" + managedConf + "'"
)

// prepare makes the data directory ready to run: initdb when allowed and
// needed, version check, directories, tandem.conf. It returns the
// postmaster already running on the data directory, if any.
func (s *Supervisor) prepare(ctx context.Context, mayInit bool) (*runningPostmaster, error) {
	dir := s.opts.DataDir
	kind, err := inspectDataDir(dir)
	if err != nil {
		return nil, err
	}
	switch kind {
	case dirMissing, dirEmpty:
		if s.opts.Init != "auto" {
			return nil, fmt.Errorf("%w: %s is empty or missing and init is \"never\": provide a data directory, or set init to \"auto\" to create one", ErrNoData, dir)
		}
		if !mayInit {
			return nil, fmt.Errorf("data directory %s is empty or missing while tandemd runs; not creating a new, empty cluster over what vanished: restore it or restart tandemd", dir)
		}
		if err := s.initCluster(ctx); err != nil {
			return nil, err
		}
	case dirForeign:
		return nil, fmt.Errorf("data directory %s is not empty but holds no PostgreSQL cluster (no PG_VERSION): move its contents aside", dir)
	}
	if err := s.checkVersion(ctx); err != nil {
		return nil, err
	}
	if err := s.ensureSocketDir(); err != nil {
		return nil, err
	}
	if err := s.checkDataDir(); err != nil {
		return nil, err
	}
	if err := s.writeManagedConfig(); err != nil {
		return nil, err
	}
	running, err := s.findRunning()
	if running != nil || err != nil {
		return running, err
	}
	return nil, s.clearStaleSocketLock()
}

type dirKind int

const (
	dirMissing dirKind = iota
	dirEmpty
	dirCluster // holds PG_VERSION
	dirForeign // not empty, no PG_VERSION
)

func inspectDataDir(dir string) (dirKind, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return dirMissing, nil
	}
	if err != nil {
		return 0, fmt.Errorf("while looking into data directory %s: %w", dir, err)
	}
	if len(entries) == 0 {
		return dirEmpty, nil
	}
	if _, err := os.Stat(filepath.Join(dir, "PG_VERSION")); err == nil {
		return dirCluster, nil
	}
	return dirForeign, nil
}

// initCluster creates a new cluster in the empty or missing data directory,
// with a random superuser password kept in PasswordFile.
func (s *Supervisor) initCluster(ctx context.Context) error {
	s.log.Info("initialising a new PostgreSQL cluster", "os_user", s.osUser.Name)
	if err := s.ensureSocketDir(); err != nil {
		return err
	}
	if err := s.makeDataDir(); err != nil {
		return err
	}
	// Written before initdb: a crash in between leaves a password file
	// that the next attempt overwrites, never a cluster with an unknown one.
	pw := rand.Text()
	if err := os.MkdirAll(filepath.Dir(s.opts.PasswordFile), 0o700); err != nil {
		return fmt.Errorf("while creating the directory of the password file: %w", err)
	}
	if err := writeFileAtomic(s.opts.PasswordFile, []byte(pw+"\n"), 0o600, -1, -1); err != nil {
		return fmt.Errorf("while writing the superuser password file: %w", err)
	}
	// initdb reads the password from a file its OS user can read; the
	// socket dir is private to that user, and the file lives only as long
	// as initdb runs.
	pwfile, err := os.CreateTemp(s.opts.SocketDir, ".initdb-pwfile-*")
	if err != nil {
		return fmt.Errorf("while creating initdb's password file: %w", err)
	}
	defer os.Remove(pwfile.Name())
	_, err = pwfile.WriteString(pw + "\n")
	if cerr := pwfile.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = s.chown(pwfile.Name())
	}
	if err != nil {
		return fmt.Errorf("while writing initdb's password file: %w", err)
	}
	major, err := s.binaryMajor(ctx)
	if err != nil {
		return err
	}
	args := append([]string{"-D", s.opts.DataDir, "-U", superuser,
		"--auth-local=trust", "--auth-host=scram-sha-256",
		"--pwfile=" + pwfile.Name()}, initdbArgs(s.opts.DataChecksums, s.opts.InitdbOptions, major)...)
	_, err = tool.Run(ctx, s.log, tool.Cmd{
		Path: filepath.Join(s.opts.BinDir, "initdb"),
		Args: args,
		User: s.runAs,
		Dir:  "/",
	})
	if err != nil {
		return fmt.Errorf("while running initdb: %w", err)
	}
	// initdb's pg_hba.conf lets every role in from anywhere with a
	// password; replaced before the first start by tandemd's.
	if err := s.writeOwned(filepath.Join(s.opts.DataDir, hbaFile), []byte(renderHBA(s.opts.HBA, nil)), 0o600); err != nil {
		return fmt.Errorf("while writing %s: %w", hbaFile, err)
	}
	s.log.Info("initialised a new PostgreSQL cluster", "password_file", s.opts.PasswordFile)
	return nil
}

// initdbArgs are the arguments after tandemd's own (data directory,
// superuser, authentication, password): the checksum choice, then the
// operator's options (validated in config, one --name=value each). From
// PostgreSQL 18 on initdb checksums unless told not to, so "off" must
// be said there and must not be said before (older initdbs refuse it).
func initdbArgs(checksums bool, options []string, major string) []string {
	var args []string
	n, _ := strconv.Atoi(major)
	switch {
	case checksums:
		args = append(args, "--data-checksums")
	case n >= 18:
		args = append(args, "--no-data-checksums")
	}
	return append(args, options...)
}

// makeDataDir creates the data directory (0700, owned by the OS user) and
// any missing parents (0755, so the OS user can traverse them).
func (s *Supervisor) makeDataDir() error {
	dir := s.opts.DataDir
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return fmt.Errorf("while creating the parents of data directory %s: %w", dir, err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("while creating data directory %s: %w", dir, err)
	}
	// Chmod too: Mkdir obeys the umask, and an existing empty dir may be 0755.
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("while setting the mode of data directory %s: %w", dir, err)
	}
	if err := s.chown(dir); err != nil {
		return fmt.Errorf("while handing data directory %s to %s: %w", dir, s.osUser.Name, err)
	}
	return traversable(dir, s.osUser)
}

// ensureSocketDir makes the socket directory exist, 0700 and owned by the
// OS user. pg_hba trusts every local connection, which is only safe while
// nobody but that user (and root) can reach the socket.
func (s *Supervisor) ensureSocketDir() error {
	dir := s.opts.SocketDir
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
			return fmt.Errorf("while creating the parents of socket directory %s: %w", dir, err)
		}
		if err := os.Mkdir(dir, 0o700); err != nil {
			return fmt.Errorf("while creating socket directory %s: %w", dir, err)
		}
		if err := s.chown(dir); err != nil {
			return fmt.Errorf("while handing socket directory %s to %s: %w", dir, s.osUser.Name, err)
		}
		fi, err = os.Stat(dir)
		if err != nil {
			return fmt.Errorf("while checking socket directory %s: %w", dir, err)
		}
	case err != nil:
		return fmt.Errorf("while checking socket directory %s: %w", dir, err)
	case !fi.IsDir():
		return fmt.Errorf("socket directory %s is not a directory", dir)
	}
	owner := fi.Sys().(*syscall.Stat_t).Uid
	if owner != s.osUser.UID {
		// An empty root-owned directory is one made for us (systemd's
		// RuntimeDirectory=, an installer); anything else, like /tmp, is shared.
		entries, _ := os.ReadDir(dir)
		if owner != 0 || !s.root || len(entries) > 0 {
			return fmt.Errorf("socket directory %s is owned by uid %d, not by %s: local connections are trusted, so it must be a directory private to %s", dir, owner, s.osUser.Name, s.osUser.Name)
		}
		if err := s.chown(dir); err != nil {
			return fmt.Errorf("while handing socket directory %s to %s: %w", dir, s.osUser.Name, err)
		}
	}
	if fi.Mode().Perm() != 0o700 {
		s.log.Info("making the socket directory private", "socket_dir", dir, "was", fmt.Sprintf("%#o", fi.Mode().Perm()))
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("while setting the mode of socket directory %s: %w", dir, err)
		}
	}
	return traversable(dir, s.osUser)
}

// checkDataDir gives clear errors for what PostgreSQL would refuse later
// with a terser message.
func (s *Supervisor) checkDataDir() error {
	dir := s.opts.DataDir
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("while checking data directory %s: %w", dir, err)
	}
	if owner := fi.Sys().(*syscall.Stat_t).Uid; owner != s.osUser.UID {
		return fmt.Errorf("data directory %s is owned by uid %d, not by %s (uid %d): PostgreSQL refuses it; chown -R it to %s", dir, owner, s.osUser.Name, s.osUser.UID, s.osUser.Name)
	}
	return traversable(dir, s.osUser)
}

// traversable checks that u can enter every parent of dir.
func traversable(dir string, u *tool.Credential) error {
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("while checking %s: %w", d, err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if !canTraverse(fi.Mode().Perm(), st.Uid, st.Gid, u.UID, u.GID) {
			return fmt.Errorf("OS user %s cannot enter %s (mode %#o, owner uid %d): PostgreSQL needs to reach %s through it; allow it (for example chmod o+x %s)", u.Name, d, fi.Mode().Perm(), st.Uid, dir, d)
		}
		if d == "/" || d == "." {
			return nil
		}
	}
}

// canTraverse applies the owner, group, other permission classes, in that
// order, as the kernel does (supplementary groups aside).
func canTraverse(perm fs.FileMode, ownerUID, ownerGID, uid, gid uint32) bool {
	switch {
	case uid == 0:
		return true
	case ownerUID == uid:
		return perm&0o100 != 0
	case ownerGID == gid:
		return perm&0o010 != 0
	default:
		return perm&0o001 != 0
	}
}

// writeManagedConfig makes postgresql.conf include tandem.conf (once),
// rewrites tandem.conf from the current options, and pg_hba.conf from
// Options.HBA and the peers it names.
func (s *Supervisor) writeManagedConfig() error {
	conf := filepath.Join(s.opts.DataDir, "postgresql.conf")
	b, err := os.ReadFile(conf)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("data directory %s has no postgresql.conf: tandemd runs postgres -D on it and needs its configuration there", s.opts.DataDir)
	}
	if err != nil {
		return fmt.Errorf("while reading %s: %w", conf, err)
	}
	if nb, changed := ensureInclude(b); changed {
		fi, err := os.Stat(conf)
		if err != nil {
			return fmt.Errorf("while reading %s: %w", conf, err)
		}
		if err := s.writeOwned(conf, nb, fi.Mode().Perm()); err != nil {
			return fmt.Errorf("while adding the include of %s to %s: %w", managedConf, conf, err)
		}
		s.log.Info("postgresql.conf now includes "+managedConf, "file", conf)
	}
	path := filepath.Join(s.opts.DataDir, managedConf)
	if err := s.writeOwned(path, []byte(renderTandemConf(s.opts, s.currentSettings())), 0o600); err != nil {
		return fmt.Errorf("while writing %s: %w", path, err)
	}
	return s.writeHBA(nil, false)
}

// ensureInclude appends the include of tandem.conf to postgresql.conf's
// text unless a line already says it. At the end, so its settings win.
func ensureInclude(conf []byte) ([]byte, bool) {
	for _, l := range strings.Split(string(conf), "\n") {
		if strings.TrimSpace(l) == includeLine {
			return conf, false
		}
	}
	out := string(conf)
	if out != "" && !strings.HasSuffix(out, "\n") {
		out += "\n"
	}
	out += "\n# Added by tandemd: the settings it manages live in " + managedConf + ".\n" + includeLine + "\n"
	return []byte(out), true
}

func renderTandemConf(o Options, settings map[string]string) string {
	var b strings.Builder
	b.WriteString("# Managed by tandemd: rewritten every time it starts PostgreSQL, so edits\n")
	b.WriteString("# here are lost. postgresql.conf includes this file at its end, so these\n")
	b.WriteString("# settings win over it; do not override them with ALTER SYSTEM either.\n")
	fmt.Fprintf(&b, "port = %d\n", o.Port)
	fmt.Fprintf(&b, "listen_addresses = %s\n", quoteConf(o.ListenAddresses))
	fmt.Fprintf(&b, "unix_socket_directories = %s\n", quoteConf(o.SocketDir))
	// The pg_hba.conf tandemd writes, even if postgresql.conf (an adopted
	// cluster's) names another.
	fmt.Fprintf(&b, "hba_file = %s\n", quoteConf(filepath.Join(o.DataDir, hbaFile)))
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "%s = %s\n", k, quoteConf(settings[k]))
	}
	return b.String()
}

// quoteConf quotes a postgresql.conf string value; the parser reads
// backslash escapes, so backslashes are doubled along with quotes.
func quoteConf(v string) string {
	v = strings.ReplaceAll(v, `\`, `\\`)
	return "'" + strings.ReplaceAll(v, "'", "''") + "'"
}

var versionRE = regexp.MustCompile(`\(PostgreSQL\) (\d+)(?:\.(\d+))?`)

// parseServerVersion reads `postgres --version` ("postgres (PostgreSQL)
// 15.18 (Debian …)") and returns the major version as PG_VERSION writes it:
// "15" from 10 on, "9.6" before.
func parseServerVersion(out string) (string, error) {
	m := versionRE.FindStringSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("unrecognised version output %q", strings.TrimSpace(out))
	}
	if len(m[1]) == 1 && m[2] != "" { // 9.6 and older
		return m[1] + "." + m[2], nil
	}
	return m[1], nil
}

// checkVersion refuses a data directory of another major version than the
// binaries: PostgreSQL would refuse it too, less clearly.
func (s *Supervisor) checkVersion(ctx context.Context) error {
	bin := filepath.Join(s.opts.BinDir, "postgres")
	if _, err := s.binaryMajor(ctx); err != nil {
		return err
	}
	b, err := os.ReadFile(filepath.Join(s.opts.DataDir, "PG_VERSION"))
	if err != nil {
		return fmt.Errorf("while reading the data directory's major version: %w", err)
	}
	if data := strings.TrimSpace(string(b)); data != s.binMajor {
		return fmt.Errorf("%w: data directory %s belongs to PostgreSQL %s but %s is PostgreSQL %s: point the bin dir at PostgreSQL %s's programs, or upgrade the cluster with pg_upgrade",
			ErrVersionMismatch, s.opts.DataDir, data, bin, s.binMajor, data)
	}
	return nil
}

// binaryMajor is the major version of BinDir's postgres, asked once.
func (s *Supervisor) binaryMajor(ctx context.Context) (string, error) {
	if s.binMajor != "" {
		return s.binMajor, nil
	}
	bin := filepath.Join(s.opts.BinDir, "postgres")
	res, err := tool.Run(ctx, s.log, tool.Cmd{Path: bin, Args: []string{"--version"}, User: s.runAs, Dir: "/", Quiet: true})
	if err != nil {
		return "", fmt.Errorf("while asking %s for its version: %w", bin, err)
	}
	if s.binMajor, err = parseServerVersion(res.Stdout); err != nil {
		return "", fmt.Errorf("while asking %s for its version: %w", bin, err)
	}
	return s.binMajor, nil
}

// controlData runs pg_controldata on the data directory and returns its
// "name: value" lines.
func (s *Supervisor) controlData(ctx context.Context) (map[string]string, error) {
	res, err := tool.Run(ctx, s.log, tool.Cmd{
		Path:  filepath.Join(s.opts.BinDir, "pg_controldata"),
		Args:  []string{"-D", s.opts.DataDir},
		User:  s.runAs,
		Dir:   "/",
		Quiet: true,
	})
	if err != nil {
		return nil, fmt.Errorf("while running pg_controldata: %w", err)
	}
	out := map[string]string{}
	for _, l := range strings.Split(res.Stdout, "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			out[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return out, nil
}

// chown hands path to the OS user; a no-op unless tandemd is root.
func (s *Supervisor) chown(path string) error {
	if !s.root {
		return nil
	}
	return os.Chown(path, int(s.osUser.UID), int(s.osUser.GID))
}

// writeOwned writes a file in the data directory, owned by the OS user.
func (s *Supervisor) writeOwned(path string, data []byte, perm fs.FileMode) error {
	uid, gid := -1, -1
	if s.root {
		uid, gid = int(s.osUser.UID), int(s.osUser.GID)
	}
	return writeFileAtomic(path, data, perm, uid, gid)
}

// writeFileAtomic replaces path with data through a synced temporary file
// and a rename, so a crash leaves the old or the new file, never half of
// one. uid, gid of -1 leave the owner as created.
func writeFileAtomic(path string, data []byte, perm fs.FileMode, uid, gid int) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if uid >= 0 || gid >= 0 {
		if err := f.Chown(uid, gid); err != nil {
			return err
		}
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	ok = true
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
