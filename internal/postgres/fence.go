package postgres

import (
	"context"
	"errors"
	"fmt"
	"syscall"
)

// ErrFenced: PostgreSQL may not run read-write on this node until the
// cluster logic lifts the fence.
var ErrFenced = errors.New("this node is fenced: PostgreSQL may not run read-write here")

// Fence stops PostgreSQL at once and keeps it down: the self-fence of a
// primary that lost its lease. Unlike Halt it does not wait for the owner
// to finish what it is doing: an immediate shutdown (SIGQUIT) goes to the
// postmaster first, so every session ends within milliseconds whatever the
// owner is busy with; then the owner is asked to halt, which finds it gone.
// From then on no crash restart happens and StartPrimary, Resume and
// Promote are refused with ErrFenced until Unfence; StartStandby (which
// accepts no writes) is allowed and lifts the fence.
func (s *Supervisor) Fence(ctx context.Context) error {
	s.fenced.Store(true)
	s.mu.Lock()
	pid := s.st.PID
	s.mu.Unlock()
	var sigErr error
	if pid > 0 {
		if err := syscall.Kill(pid, syscall.SIGQUIT); err != nil && !errors.Is(err, syscall.ESRCH) {
			sigErr = fmt.Errorf("while sending PostgreSQL (pid %d) an immediate shutdown: %w", pid, err)
		}
	}
	s.log.Warn("FENCE: PostgreSQL stopped with an immediate shutdown and kept down", "pid", pid)
	return errors.Join(sigErr, s.ask(ctx, request{kind: reqFence}))
}

// Unfence lets PostgreSQL run read-write again (the node holds the
// primary role again).
func (s *Supervisor) Unfence() { s.fenced.Store(false) }

// Fenced says whether Fence is in force.
func (s *Supervisor) Fenced() bool { return s.fenced.Load() }

func (s *Supervisor) refuseFenced(what string) error {
	if s.fenced.Load() {
		return fmt.Errorf("refusing to %s: %w", what, ErrFenced)
	}
	return nil
}
