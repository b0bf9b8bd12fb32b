package postgres

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// EndWALReceiver ends the WAL receiver process pid with SIGTERM; the
// startup process then starts a fresh one. pg_terminate_backend cannot do
// it: in PostgreSQL 15 the receiver is an auxiliary process, which that
// function refuses with a warning ("not a PostgreSQL backend process").
// The signal goes only to a child of this supervisor's postmaster, so a
// pid read a moment ago that has since been reused is left alone.
func (s *Supervisor) EndWALReceiver(pid int) error {
	s.mu.Lock()
	pm := s.st.PID
	s.mu.Unlock()
	if pm == 0 {
		return fmt.Errorf("no postmaster runs")
	}
	if ppid, err := parentOf(pid); err != nil {
		return err
	} else if ppid != pm {
		return fmt.Errorf("process %d is not a child of the postmaster %d (its parent is %d)", pid, pm, ppid)
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("while signalling the WAL receiver %d: %w", pid, err)
	}
	return nil
}

// parentOf reads a process's parent from /proc/PID/stat (after the
// command name, which may hold spaces and parentheses: "pid (comm) state
// ppid …").
func parentOf(pid int) (int, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("while reading process %d: %w", pid, err)
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("process %d: unexpected /proc stat %q", pid, s)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0, fmt.Errorf("process %d: unexpected /proc stat %q", pid, s)
	}
	return strconv.Atoi(f[1])
}
