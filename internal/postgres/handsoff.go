package postgres

import "time"

// StoppedByHand is the Status.Error of a postmaster that went away while
// the supervisor was hands off (maintenance mode).
const StoppedByHand = "stopped outside tandemd; maintenance mode is on, so tandemd does not restart it and adopts the postmaster started by hand"

// SetHandsOff switches the supervisor's hands-off mode, which the cluster
// sets while it is in maintenance: the operator may stop and start
// PostgreSQL by hand (pg_ctl restart, a kill, a minor update), and the
// supervisor must not fight them. A postmaster that exits is then not
// restarted; the supervisor looks at the data directory every pollEvery
// and adopts the postmaster someone else started there, as it adopts one
// a previous tandemd left running. Switched off, a postmaster still
// missing is started at the next look: what a crash restart would have
// done.
//
// Requests (a start, a halt, a switchover) still act: hands-off only
// stops the supervisor from acting on its own.
func (s *Supervisor) SetHandsOff(on bool) {
	if s.handsOff.Swap(on) != on {
		s.log.Info("supervisor hands-off mode", "on", on)
	}
}

// waitByHand is scheduleRestart while hands off: no restart, a look at
// the data directory every pollEvery instead.
func (o *owner) waitByHand(cause error) {
	s := o.s
	s.log.Warn("PostgreSQL stopped outside tandemd; maintenance mode: not restarting it, waiting for it to be started by hand", "cause", cause.Error())
	s.setState(StateStopped, 0, StoppedByHand)
	o.retry = time.NewTimer(s.pollEvery)
}

// adoptByHand is one look for a postmaster started by hand: adopted if
// there is one, another look later if not.
func (o *owner) adoptByHand() {
	s := o.s
	running, err := s.findRunning()
	if err != nil || running == nil {
		if err != nil {
			s.log.Warn("while looking for a postmaster started by hand", "err", err.Error())
		}
		o.retry = time.NewTimer(s.pollEvery)
		return
	}
	p := s.adopt(running)
	o.cur = p
	s.mu.Lock()
	s.gen++
	s.target = p.target
	s.st.State, s.st.PID, s.st.Error = StateStarting, p.pid, ""
	s.mu.Unlock()
	s.log.Info("adopted the PostgreSQL started by hand", "pid", p.pid)
}
