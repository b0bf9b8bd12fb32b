// Package tool runs external programs (initdb, pg_ctl, pg_basebackup,
// pg_rewind, pg_controldata, ip, dnsmasq…) one way: no shell, an argument
// list, a context, the arguments logged, stdout and stderr streamed into the
// structured log line by line, and the exit status returned as an error that
// carries the tail of stderr.
package tool

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Cmd is one invocation of an external program.
type Cmd struct {
	// Path is the executable; Args excludes it.
	Path string
	Args []string
	// User, when set, is the OS user the program runs as (tandemd runs as
	// root and PostgreSQL's programs refuse root).
	User *Credential
	Dir  string
	// Env is added to a minimal environment (PATH, LANG=C, HOME of User).
	Env   []string
	Stdin io.Reader
	// Quiet logs output at debug level instead of info.
	Quiet bool
}

// Credential is a resolved OS user.
type Credential struct {
	Name     string
	UID, GID uint32
	Groups   []uint32 // supplementary groups (ssl-cert gives PostgreSQL its key on Debian)
	Home     string
}

// LookupUser resolves an OS user name.
func LookupUser(name string) (*Credential, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("while looking up OS user %q: %w", name, err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("OS user %q has a non-numeric uid %q", name, u.Uid)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("OS user %q has a non-numeric gid %q", name, u.Gid)
	}
	c := &Credential{Name: name, UID: uint32(uid), GID: uint32(gid), Home: u.HomeDir}
	if ids, err := u.GroupIds(); err == nil {
		for _, id := range ids {
			if g, err := strconv.ParseUint(id, 10, 32); err == nil && uint32(g) != c.GID {
				c.Groups = append(c.Groups, uint32(g))
			}
		}
	}
	return c, nil
}

// Result is what a finished program left behind.
type Result struct {
	Stdout string // whole stdout, for tools whose output is parsed
	Stderr string // last lines of stderr
	Took   time.Duration
}

// ExitError is returned when the program ran and failed.
type ExitError struct {
	Tool   string
	Code   int // -1 when killed by a signal
	Stderr string
}

func (e *ExitError) Error() string {
	msg := fmt.Sprintf("%s exited with status %d", e.Tool, e.Code)
	if s := strings.TrimSpace(e.Stderr); s != "" {
		msg += ": " + s
	}
	return msg
}

// Prepare builds the exec.Cmd for c without starting it; long-running
// programs (the postmaster) use it and own the process themselves.
func Prepare(ctx context.Context, c Cmd) *exec.Cmd {
	cmd := exec.CommandContext(ctx, c.Path, c.Args...)
	cmd.Dir = c.Dir
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C", "LC_ALL=C"}
	attr := &syscall.SysProcAttr{Setpgid: true}
	if c.User != nil {
		// The user's own supplementary groups, never root's (an empty list
		// still drops root's).
		attr.Credential = &syscall.Credential{Uid: c.User.UID, Gid: c.User.GID, Groups: append([]uint32{}, c.User.Groups...)}
		env = append(env, "HOME="+c.User.Home, "USER="+c.User.Name)
	}
	cmd.SysProcAttr = attr
	cmd.Env = append(env, c.Env...)
	cmd.Stdin = c.Stdin
	// Cancelling kills the whole process group, not only the program:
	// pg_basebackup forks a WAL streamer that would otherwise go on writing
	// into a data directory the caller is about to put back, and keep the
	// output pipes (and so Run) open.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	return cmd
}

// Run runs c to completion. Output lines are logged with the tool's name;
// the returned Result holds stdout and the tail of stderr.
func Run(ctx context.Context, log *slog.Logger, c Cmd) (Result, error) {
	name := baseName(c.Path)
	level := slog.LevelInfo
	if c.Quiet {
		level = slog.LevelDebug
	}
	log.Log(ctx, level, "running", "tool", name, "args", c.Args)
	cmd := Prepare(ctx, c)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return Result{}, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return Result{}, err
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return Result{}, fmt.Errorf("while starting %s: %w", name, err)
	}
	var (
		wg      sync.WaitGroup
		outBuf  strings.Builder
		errTail tail
	)
	wg.Add(2)
	go func() {
		defer wg.Done()
		streamLines(ctx, log, level, name, "stdout", stdout, func(l string) { outBuf.WriteString(l + "\n") })
	}()
	go func() {
		defer wg.Done()
		streamLines(ctx, log, level, name, "stderr", stderr, errTail.add)
	}()
	wg.Wait()
	err = cmd.Wait()
	res := Result{Stdout: outBuf.String(), Stderr: errTail.String(), Took: time.Since(start)}
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			if ctx.Err() != nil {
				return res, fmt.Errorf("%s cancelled: %w", name, ctx.Err())
			}
			return res, &ExitError{Tool: name, Code: ee.ExitCode(), Stderr: res.Stderr}
		}
		return res, fmt.Errorf("while running %s: %w", name, err)
	}
	log.Log(ctx, slog.LevelDebug, "finished", "tool", name, "took", res.Took)
	return res, nil
}

// StreamLines logs each line read from r until EOF; used for the output of
// long-running processes such as the postmaster.
func StreamLines(ctx context.Context, log *slog.Logger, tool, stream string, r io.Reader) {
	streamLines(ctx, log, slog.LevelInfo, tool, stream, r, nil)
}

func streamLines(ctx context.Context, log *slog.Logger, level slog.Level, tool, which string, r io.Reader, keep func(string)) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if keep != nil {
			keep(line)
		}
		log.Log(ctx, level, line, "tool", tool, "stream", which)
	}
	// Drain whatever a too-long line left so the child never blocks on a full pipe.
	_, _ = io.Copy(io.Discard, r)
}

// tail keeps the last lines written to it.
type tail struct {
	mu    sync.Mutex
	lines []string
}

const tailLines = 20

func (t *tail) add(l string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lines = append(t.lines, l)
	if len(t.lines) > tailLines {
		t.lines = t.lines[len(t.lines)-tailLines:]
	}
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(t.lines, "\n")
}

func baseName(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[i+1:]
	}
	return p
}
