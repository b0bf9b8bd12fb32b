package cluster

import (
	"context"
	"sort"

	"github.com/tandem-ha/tandem/internal/state"
)

// recovery says how a restarted tandemd settles an operation that a crash
// interrupted at one journaled step. Each operation declares its table
// beside its code (assembleRecovery in assemble.go, …); a step missing
// from the table cannot be journaled (see journal), and the end-to-end
// crash test runs every step the table lists.
type recovery struct {
	// how says in words what happens, for the log and the docs.
	how string
	// beforeStart runs before the supervisor looks at the data directory,
	// which may be half replaced: a half-made clone must never be started,
	// and an empty data directory must not be initialised over data that
	// was moved aside.
	beforeStart func(n *Node, s state.State) error
	// atBoot runs once the supervisor runs, before the role decision; it
	// may change the role (a switchover whose peer promoted: follow it).
	atBoot func(n *Node, ctx context.Context)
	// afterStart runs once PostgreSQL runs in the role the state says.
	afterStart func(n *Node, ctx context.Context)
	// resumedBy names what carries the operation on after the restart
	// instead of a function here: the boot decision (a rejoin), the
	// monitor (a re-seed).
	resumedBy string
}

type stepTable map[state.Step]recovery

// recoveries is every operation's table. It is filled in init rather than
// declared as one literal because the recoveries call operations that
// journal, and journal reads the table.
var recoveries map[state.OpKind]stepTable

func init() {
	recoveries = map[state.OpKind]stepTable{
		OpAssemble:    assembleRecovery,
		OpJoin:        joinRecovery,
		OpDisassemble: disassembleRecovery,
		OpLeave:       leaveRecovery,
		OpReseed:      reseedRecovery,
		OpSwitchover:  switchoverRecovery,
		OpPromote:     promoteRecovery,
		OpRejoin:      rejoinRecovery,
	}
}

func recoveryFor(kind state.OpKind, step state.Step) (recovery, bool) {
	r, ok := recoveries[kind][step]
	return r, ok
}

// StepRef names one journaled step.
type StepRef struct {
	Op   state.OpKind
	Step state.Step
	How  string
}

// JournaledSteps lists every step an operation may journal, with how a
// restart settles it, sorted: the end-to-end crash test needs a scenario
// for each, so a new step without one fails the suite.
func JournaledSteps() []StepRef {
	var out []StepRef
	for kind, t := range recoveries {
		for step, r := range t {
			out = append(out, StepRef{Op: kind, Step: step, How: r.how})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Op != out[j].Op {
			return out[i].Op < out[j].Op
		}
		return out[i].Step < out[j].Step
	})
	return out
}

// pendingRecovery is the entry for the operation the state file says was
// in flight, if any.
func (n *Node) pendingRecovery() (state.State, recovery, bool) {
	s := n.State()
	if s.Operation == nil {
		return s, recovery{}, false
	}
	r, ok := recoveryFor(s.Operation.Kind, s.Operation.Step)
	if !ok {
		n.log.Error("the state file names an operation step this tandemd does not know; leaving it to an operator", "op", s.Operation.Kind, "step", s.Operation.Step)
	}
	return s, r, ok
}

// RecoverBeforePostgres runs the before-start recovery of an interrupted
// operation.
func (n *Node) RecoverBeforePostgres() error {
	s, r, ok := n.pendingRecovery()
	if !ok || r.beforeStart == nil {
		return nil
	}
	n.log.Warn("settling an interrupted operation before PostgreSQL starts", "op", s.Operation.Kind, "step", s.Operation.Step, "how", r.how)
	return r.beforeStart(n, s)
}

func (n *Node) recoverAtBoot(ctx context.Context) {
	if s, r, ok := n.pendingRecovery(); ok && r.atBoot != nil {
		n.log.Warn("settling an interrupted operation", "op", s.Operation.Kind, "step", s.Operation.Step, "how", r.how)
		r.atBoot(n, ctx)
	}
}

func (n *Node) recoverAfterStart(ctx context.Context) {
	if s, r, ok := n.pendingRecovery(); ok && r.afterStart != nil {
		n.log.Warn("settling an interrupted operation now that PostgreSQL runs", "op", s.Operation.Kind, "step", s.Operation.Step, "how", r.how)
		r.afterStart(n, ctx)
	}
}

// restoreAside puts back the data an interrupted clone had moved aside
// (the supervisor removes the partial copy), before PostgreSQL starts.
func (n *Node) restoreAside() error {
	restored, err := n.pg.RecoverInterruptedClone(context.Background())
	if restored != "" {
		n.log.Warn("a clone was interrupted; the data it replaced is back", "old_data_dir", restored)
	}
	return err
}

// forgetOperation closes the journal: what it recorded needs nothing more.
func (n *Node) forgetOperation() error {
	return n.set(func(s *state.State) { s.Operation = nil })
}
