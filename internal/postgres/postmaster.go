package postgres

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tandem-ha/tandem/internal/tool"
)

// PostgreSQL's shutdown modes are chosen by the signal sent to the postmaster.
const (
	sigSmart     = syscall.SIGTERM // wait for clients to disconnect
	sigFast      = syscall.SIGINT  // disconnect clients, checkpoint
	sigImmediate = syscall.SIGQUIT // no checkpoint; crash recovery at next start
)

// postmaster is one running postmaster, started by us or adopted.
type postmaster struct {
	pid     int
	proc    *os.Process // signals go through a pidfd, so a reused PID is never hit
	adopted bool
	target  target

	gone chan struct{} // closed once the process has exited
	exit string        // how it ended; valid once gone is closed

	ready     chan struct{} // closed by the probe once SELECT 1 succeeded
	isReady   bool          // owner only
	readyAt   time.Time     // owner only
	late      *time.Timer   // fires when it is slow to become ready; owner only
	stopProbe context.CancelFunc
	stopWatch context.CancelFunc
}

func (s *Supervisor) newPostmaster(pid int, proc *os.Process, adopted bool, t target) *postmaster {
	p := &postmaster{
		pid: pid, proc: proc, adopted: adopted, target: t,
		gone:  make(chan struct{}),
		ready: make(chan struct{}),
		late:  time.NewTimer(s.readyTimeout),
	}
	var probeCtx context.Context
	probeCtx, p.stopProbe = context.WithCancel(s.life)
	go s.probe(probeCtx, p)
	return p
}

// spawn starts BinDir/postgres -D DataDir as our child. Its own process
// group keeps a Ctrl-C on tandemd's terminal away from it.
func (s *Supervisor) spawn() (*postmaster, error) {
	args := []string{"-D", s.opts.DataDir}
	// Background: nothing but Stop may end the postmaster.
	cmd := tool.Prepare(context.Background(), tool.Cmd{
		Path: filepath.Join(s.opts.BinDir, "postgres"),
		Args: args,
		User: s.runAs,
		Dir:  s.opts.DataDir,
	})
	// Our own pipes (os.File, not io.Writer) so Wait returns when the
	// postmaster exits, even while orphaned backends still hold the pipes.
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("while creating the postmaster's output pipe: %w", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, fmt.Errorf("while creating the postmaster's output pipe: %w", err)
	}
	cmd.Stdout, cmd.Stderr = outW, errW
	s.log.Info("starting PostgreSQL", "tool", "postgres", "args", args, "port", s.opts.Port)
	err = cmd.Start()
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return nil, fmt.Errorf("while starting the postmaster: %w", err)
	}
	for name, r := range map[string]*os.File{"stdout": outR, "stderr": errR} {
		go func() {
			defer r.Close()
			tool.StreamLines(context.Background(), s.log, "postgres", name, r)
		}()
	}
	p := s.newPostmaster(cmd.Process.Pid, cmd.Process, false, target{s.opts.SocketDir, s.opts.Port})
	p.stopWatch = func() {} // Wait below reaps it whatever happens
	go func() {
		err := cmd.Wait()
		p.exit = describeExit(cmd.ProcessState, err)
		close(p.gone)
	}()
	return p, nil
}

// adopt watches a postmaster a previous tandemd started. It is not our
// child, so its exit is noticed by polling and its exit status is unknown.
func (s *Supervisor) adopt(r *runningPostmaster) *postmaster {
	t := target{s.opts.SocketDir, s.opts.Port}
	if r.pidFile.SocketDir != "" && r.pidFile.Port > 0 {
		t = target{r.pidFile.SocketDir, r.pidFile.Port}
	}
	s.log.Info("adopting the running PostgreSQL", "pid", r.pid, "port", t.port, "socket_dir", t.socketDir)
	if t.port != s.opts.Port || t.socketDir != s.opts.SocketDir {
		s.log.Warn("the running PostgreSQL uses another port or socket directory than configured; the configured ones apply from its next restart",
			"port", t.port, "socket_dir", t.socketDir, "configured_port", s.opts.Port, "configured_socket_dir", s.opts.SocketDir)
	}
	p := s.newPostmaster(r.pid, r.proc, true, t)
	var watchCtx context.Context
	watchCtx, p.stopWatch = context.WithCancel(context.Background())
	go func() {
		tick := time.NewTicker(s.pollEvery)
		defer tick.Stop()
		for {
			select {
			case <-watchCtx.Done():
				return
			case <-tick.C:
			}
			if !alive(p.proc) {
				p.exit = reapAdopted(p.pid)
				close(p.gone)
				return
			}
		}
	}()
	return p
}

// reapAdopted collects the exit status of an adopted postmaster that has
// gone. After a reload (tandemd re-executed itself in place) the
// postmaster tandemd started before is still this process's child: unless
// it is waited for, it stays a zombie. Any other adopted postmaster is
// not our child and its status is unknown.
func reapAdopted(pid int) string {
	var ws syscall.WaitStatus
	got, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
	switch {
	case err != nil || got != pid:
		return "exit status unknown (adopted, not tandemd's child)"
	case ws.Signaled():
		return fmt.Sprintf("killed by signal %d (%s)", int(ws.Signal()), signalName(ws.Signal()))
	}
	return fmt.Sprintf("exit status %d", ws.ExitStatus())
}

func describeExit(ps *os.ProcessState, err error) string {
	if ps == nil {
		return fmt.Sprintf("wait failed: %v", err)
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return fmt.Sprintf("killed by signal %d (%s)", int(ws.Signal()), signalName(ws.Signal()))
	}
	return fmt.Sprintf("exit status %d", ps.ExitCode())
}

func signalName(sig syscall.Signal) string {
	switch sig {
	case syscall.SIGKILL:
		return "SIGKILL"
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGINT:
		return "SIGINT"
	case syscall.SIGQUIT:
		return "SIGQUIT"
	case syscall.SIGSEGV:
		return "SIGSEGV"
	case syscall.SIGABRT:
		return "SIGABRT"
	}
	return sig.String()
}

// runningPostmaster is a live postmaster found through postmaster.pid.
type runningPostmaster struct {
	pid     int
	proc    *os.Process
	pidFile pidFile
}

// pidFile is what postmaster.pid says about the postmaster that wrote it.
type pidFile struct {
	PID        int
	Standalone bool // a single-user backend wrote it (negative PID)
	DataDir    string
	StartTime  int64 // Unix seconds
	Port       int
	SocketDir  string // first socket directory; empty when sockets are off
	ListenAddr string // first listen address
	Status     string // "starting", "stopping", "ready", "standby"; empty when not yet written
}

// parsePidFile reads postmaster.pid: one value per line, in the order of
// PostgreSQL's LOCK_FILE_LINE_* constants; lines after the PID may be
// missing while the postmaster is starting.
func parsePidFile(b []byte) (pidFile, error) {
	lines := strings.Split(string(b), "\n")
	var pf pidFile
	n, err := strconv.Atoi(strings.TrimSpace(lines[0]))
	if err != nil || n == 0 {
		return pf, fmt.Errorf("postmaster.pid: first line %q is not a PID", lines[0])
	}
	if n < 0 {
		pf.Standalone, n = true, -n
	}
	pf.PID = n
	line := func(i int) string {
		if i < len(lines) {
			return strings.TrimSpace(lines[i])
		}
		return ""
	}
	pf.DataDir = line(1)
	pf.StartTime, _ = strconv.ParseInt(line(2), 10, 64)
	pf.Port, _ = strconv.Atoi(line(3))
	pf.SocketDir = line(4)
	pf.ListenAddr = line(5)
	pf.Status = line(7)
	return pf, nil
}

// pidVerdict says who holds the PID of a postmaster.pid.
type pidVerdict int

const (
	pidGone       pidVerdict = iota // no such process: the file is stale, PostgreSQL handles it
	pidZombie                       // exited, not reaped yet; PostgreSQL would take it for alive
	pidPostmaster                   // a postgres process working in this data dir
	pidOther                        // another process, started after the file was written
	pidUnknown                      // cannot tell; leave it to PostgreSQL
)

// findRunning looks at DataDir/postmaster.pid. It returns the postmaster to
// adopt, or nil when a new one must be started. A file whose PID is a
// zombie, or now belongs to an unrelated, younger process (typical after a
// reboot), is removed, because PostgreSQL would refuse to start over it.
// Removing it is safe even while orphaned backends of the dead postmaster
// live: PostgreSQL's shared memory interlock, keyed by the data
// directory, still refuses to start until they are gone.
func (s *Supervisor) findRunning() (*runningPostmaster, error) {
	path := filepath.Join(s.opts.DataDir, "postmaster.pid")
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("while reading %s: %w", path, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("while reading %s: %w", path, err)
	}
	pf, err := parsePidFile(b)
	if err != nil {
		// Half-written by a postmaster that is starting this very moment,
		// or garbage; PostgreSQL itself decides.
		s.log.Warn("unreadable postmaster.pid; leaving it to PostgreSQL", "err", err.Error())
		return nil, nil
	}
	// Open the pidfd first and check the process after, so what we checked
	// is what we will signal.
	proc, err := os.FindProcess(pf.PID)
	if err != nil {
		return nil, nil
	}
	switch v := s.judgePID(pf.PID, fi.ModTime()); v {
	case pidPostmaster:
		if pf.Standalone {
			proc.Release()
			return nil, fmt.Errorf("a single-user PostgreSQL (pid %d) is using %s: let it finish first", pf.PID, s.opts.DataDir)
		}
		if !alive(proc) {
			proc.Release()
			return nil, nil
		}
		return &runningPostmaster{pid: pf.PID, proc: proc, pidFile: pf}, nil
	case pidOther, pidZombie:
		proc.Release()
		why := "its PID now belongs to a younger, unrelated process"
		if v == pidZombie {
			why = "its postmaster has exited but was not reaped yet"
		}
		s.log.Warn("removing stale postmaster.pid: "+why, "pid", pf.PID)
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("while removing stale %s: %w", path, err)
		}
		return nil, nil
	default:
		proc.Release()
		return nil, nil
	}
}

// clearStaleSocketLock removes the socket's lock file when its PID is a
// zombie or a younger, unrelated process, for the reason findRunning
// removes postmaster.pid. Called only when no postmaster is adopted.
func (s *Supervisor) clearStaleSocketLock() error {
	path := filepath.Join(s.opts.SocketDir, fmt.Sprintf(".s.PGSQL.%d.lock", s.opts.Port))
	b, err := os.ReadFile(path)
	if err != nil {
		return nil // absent, or PostgreSQL will say what is wrong with it
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil
	}
	pf, err := parsePidFile(b)
	if err != nil {
		return nil
	}
	if v := s.judgePID(pf.PID, fi.ModTime()); v == pidZombie || v == pidOther {
		s.log.Warn("removing stale socket lock file", "file", path, "pid", pf.PID)
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("while removing stale %s: %w", path, err)
		}
	}
	return nil
}

// judgePID decides who pid is. A postmaster runs with its data directory
// as working directory, which tells it apart from another cluster's.
func (s *Supervisor) judgePID(pid int, written time.Time) pidVerdict {
	st, err := readProcStat(pid)
	if err != nil {
		return pidGone
	}
	if st.state == 'Z' || st.state == 'X' {
		return pidZombie
	}
	cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	if err == nil && (st.comm == "postgres" || st.comm == "postmaster") && sameDir(cwd, s.opts.DataDir) {
		return pidPostmaster
	}
	if started, err := procStartTime(st); err == nil && started.After(written.Add(time.Second)) {
		return pidOther
	}
	return pidUnknown
}

func sameDir(a, b string) bool {
	ra, err1 := filepath.EvalSymlinks(a)
	rb, err2 := filepath.EvalSymlinks(b)
	if err1 != nil || err2 != nil {
		return filepath.Clean(a) == filepath.Clean(b)
	}
	return ra == rb
}

// alive reports whether proc still runs; a zombie does not count (a
// postmaster that exited but was not reaped yet is gone for us).
func alive(proc *os.Process) bool {
	if err := proc.Signal(syscall.Signal(0)); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	st, err := readProcStat(proc.Pid)
	return err == nil && st.state != 'Z' && st.state != 'X'
}

type procStat struct {
	comm      string
	state     byte
	startTick uint64 // clock ticks after boot
}

func readProcStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	return parseProcStat(string(b))
}

// parseProcStat reads /proc/PID/stat. The command name is in parentheses
// and may itself hold spaces and parentheses, so fields are counted from
// the last ')'.
func parseProcStat(s string) (procStat, error) {
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return procStat{}, fmt.Errorf("malformed /proc stat line")
	}
	f := strings.Fields(s[end+1:])
	// f[0] is field 3 (state); field 22 (starttime) is f[19].
	if len(f) < 20 || len(f[0]) != 1 {
		return procStat{}, fmt.Errorf("malformed /proc stat line")
	}
	start, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("malformed start time in /proc stat line")
	}
	return procStat{comm: s[open+1 : end], state: f[0][0], startTick: start}, nil
}

// userHZ is the unit of /proc start times; Linux fixes it at 100 for userspace.
const userHZ = 100

func procStartTime(st procStat) (time.Time, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return time.Time{}, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "btime "); ok {
			boot, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return time.Time{}, err
			}
			return time.Unix(boot, 0).Add(time.Duration(st.startTick) * time.Second / userHZ), nil
		}
	}
	return time.Time{}, errors.New("no btime in /proc/stat")
}
