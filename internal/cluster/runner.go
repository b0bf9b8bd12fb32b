package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/tandem-ha/tandem/internal/api"
	"github.com/tandem-ha/tandem/internal/state"
)

// Who started an operation.
const (
	byConsole = "console" // the operator, through the node API
	byPeer    = "peer"    // the other node (its half of a switchover, assembly, disassembly)
	byNode    = "node"    // this node by itself: boot, the monitor, a rejoin
)

// runner owns every operation on the node. It holds the one exclusion (two
// operations never interleave on a node), gives operations a context from
// the node's lifetime rather than from the request that asked for them (a
// console that goes away mid-switchover must not stop the switchover),
// tracks every goroutine it starts, and is waited for at shutdown, as
// etcd's EtcdServer.GoAttach is.
type runner struct {
	life   context.Context // the node's lifetime; cancelled last at shutdown
	cancel context.CancelFunc
	// stopping is closed when shutdown begins: no new operation starts,
	// loops that wait (a rejoin's retry, boot waiting for its peer) give up
	// their wait, and one-shot operations get a bounded time to finish.
	stopping chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup

	// excl is the exclusion, held for the whole of an operation (a
	// one-slot semaphore, so a caller can wait for it a little).
	excl chan struct{}

	mu   sync.Mutex // guards what follows
	cur  *api.OperationInfo
	last *api.OperationInfo
}

func newRunner() *runner {
	r := &runner{stopping: make(chan struct{}), excl: make(chan struct{}, 1)}
	r.life, r.cancel = context.WithCancel(context.Background())
	return r
}

// errStopping refuses work once shutdown has begun.
func errStopping(node string) error {
	return unavailable("tandemd on %s is shutting down; ask again once it is back", node)
}

// goAttach runs fn in a tracked goroutine on the node's lifetime. It
// reports false (and runs nothing) once shutdown has begun.
func (r *runner) goAttach(fn func(ctx context.Context)) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	select {
	case <-r.stopping:
		return false
	default:
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		fn(r.life)
	}()
	return true
}

// busy is the 409 for a second operation, naming the one that runs.
func (r *runner) busy(node string) error {
	r.mu.Lock()
	cur := r.cur
	r.mu.Unlock()
	if cur == nil {
		return conflict("another action is in progress on %s; try again in a moment", node)
	}
	step := ""
	if cur.Step != "" {
		step = ", step " + cur.Step
	}
	return conflict("operation %s is in progress on %s (started by %s %s ago%s); wait for it to finish: tandem status --watch follows it",
		cur.Kind, node, cur.By, time.Since(cur.StartedAt).Round(100*time.Millisecond), step)
}

// shortWait is how long an operation waits for the exclusion held by one
// of the monitor's brief adjustments (never for another operation).
const shortWait = 2 * time.Second

// acquire takes the exclusion: at once, or after a short wait when it is
// held by a brief adjustment rather than an operation.
func (r *runner) acquire() bool {
	select {
	case r.excl <- struct{}{}:
		return true
	default:
	}
	r.mu.Lock()
	opRunning := r.cur != nil
	r.mu.Unlock()
	if opRunning {
		return false
	}
	t := time.NewTimer(shortWait)
	defer t.Stop()
	select {
	case r.excl <- struct{}{}:
		return true
	case <-t.C:
		return false
	}
}

func (r *runner) release() { <-r.excl }

// begin takes the exclusion for a new operation, or says why not. The
// operation counts as a tracked goroutine until end.
func (r *runner) begin(node string, kind state.OpKind, by string) (*api.OperationInfo, error) {
	if r.isStopping() {
		return nil, errStopping(node)
	}
	if !r.acquire() {
		return nil, r.busy(node)
	}
	id := make([]byte, 6)
	_, _ = rand.Read(id)
	op := &api.OperationInfo{ID: hex.EncodeToString(id), Kind: string(kind), By: by, StartedAt: time.Now().UTC(), Outcome: api.OutcomeRunning}
	r.mu.Lock()
	defer r.mu.Unlock()
	select {
	case <-r.stopping:
		r.release()
		return nil, errStopping(node)
	default:
	}
	r.wg.Add(1)
	r.cur = op
	return op, nil
}

// end records the outcome and releases the exclusion.
func (r *runner) end(op *api.OperationInfo, err error) {
	now := time.Now().UTC()
	r.mu.Lock()
	op.FinishedAt = &now
	op.Outcome = api.OutcomeSucceeded
	if err != nil {
		op.Outcome, op.Error = api.OutcomeFailed, err.Error()
	}
	r.cur, r.last = nil, op
	r.mu.Unlock()
	r.release()
	r.wg.Done()
}

// mark adds a timed step to the operation in flight (shown by status).
func (r *runner) mark(name string, took time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cur != nil {
		r.cur.Steps = append(r.cur.Steps, api.Step{Name: name, MS: float64(took.Microseconds()) / 1000})
	}
}

// noteStep records the journaled step the operation in flight reached.
func (r *runner) noteStep(step state.Step) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cur != nil {
		r.cur.Step = string(step)
	}
}

// rename changes the kind of the operation in flight, when one turns into
// another (boot finds it must rejoin).
func (r *runner) rename(kind state.OpKind) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cur != nil {
		r.cur.Kind = string(kind)
	}
}

// snapshot copies the operation in flight and the last one finished.
func (r *runner) snapshot() (cur, last *api.OperationInfo) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cp := func(o *api.OperationInfo) *api.OperationInfo {
		if o == nil {
			return nil
		}
		c := *o
		c.Steps = append([]api.Step(nil), o.Steps...)
		return &c
	}
	return cp(r.cur), cp(r.last)
}

// stop begins shutdown: no new operations, waits end; then it waits up to
// grace for the operations and goroutines in flight to finish, cancels the
// node's lifetime (an operation still running rolls back on the cancelled
// context), and waits for them to return. It reports whether everything
// ended within grace.
func (r *runner) stop(grace time.Duration) bool {
	r.stopOnce.Do(func() {
		r.mu.Lock()
		close(r.stopping)
		r.mu.Unlock()
	})
	done := make(chan struct{})
	go func() {
		r.wg.Wait()
		close(done)
	}()
	inTime := true
	select {
	case <-done:
	case <-time.After(grace):
		inTime = false
		r.cancel()
		<-done
	}
	r.cancel()
	return inTime
}

// wait sleeps for d unless the node stops first; it reports whether the
// caller should carry on.
func (r *runner) wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-r.stopping:
		return false
	}
}

// whileRunning returns a context that also ends when shutdown begins, for
// watches that have nothing to finish: Stop's grace is for operations, and
// a watch that waits for the node's context instead holds every stop (and
// every reload) for the whole grace.
func (r *runner) whileRunning(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-r.stopping:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// held reports whether an operation (or a brief adjustment) holds the
// exclusion.
func (r *runner) held() bool { return len(r.excl) > 0 }

// isStopping reports whether shutdown has begun.
func (r *runner) isStopping() bool {
	select {
	case <-r.stopping:
		return true
	default:
		return false
	}
}

// runOp runs fn as an operation of the node: it takes the exclusion (or
// answers 409 naming the operation in flight), runs fn in a tracked
// goroutine on the node's lifetime, and waits for its result while the
// caller's ctx lasts. When the caller goes away first (a killed console, a
// timeout), the operation carries on to its end exactly as if it had
// stayed; its outcome is in status (the last operation) and in events.
//
// fn may answer its caller early through reply and carry on holding the
// exclusion (a switchover whose outcome is unknown keeps settling it); the
// operation's outcome is what fn finally returns.
func runOp[T any](n *Node, ctx context.Context, kind state.OpKind, by string, fn func(ctx context.Context, reply func(T, error)) (T, error)) (T, error) {
	var zero T
	op, err := n.run.begin(n.cfg.Name, kind, by)
	if err != nil {
		return zero, err
	}
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	var once sync.Once
	reply := func(v T, err error) { once.Do(func() { ch <- result{v, err} }) }
	go func() { // tracked: begin counted it, end releases it
		start := time.Now()
		v, err := fn(n.run.life, reply)
		n.ops.record(string(kind), err, time.Since(start))
		n.run.end(op, err)
		reply(v, err)
	}()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		n.log.Warn("the caller went away; the operation carries on", "op", kind, "id", op.ID)
		return zero, api.Errorf(http.StatusAccepted, api.CodeDetached, "the caller went away; operation %s (id %s) carries on on %s: tandem status shows it", kind, op.ID, n.cfg.Name)
	}
}

// inline runs fn as an operation in the calling goroutine, which must
// already be tracked (boot, the monitor). It reports false without running
// fn when another operation holds the exclusion or shutdown has begun.
func (n *Node) inline(kind state.OpKind, fn func(ctx context.Context) error) bool {
	return n.inlineBy(kind, byNode, fn)
}

// inlineBy is inline for an operation started by by (the quorum).
func (n *Node) inlineBy(kind state.OpKind, by string, fn func(ctx context.Context) error) bool {
	op, err := n.run.begin(n.cfg.Name, kind, by)
	if err != nil {
		return false
	}
	start := time.Now()
	err = fn(n.run.life)
	n.ops.record(string(kind), err, time.Since(start))
	n.run.end(op, err)
	if err != nil {
		n.log.Error("operation failed", "op", kind, "err", err)
	}
	return true
}

// exclusive runs fn holding the exclusion without recording an operation:
// for the monitor's small adjustments (synchronous replication on or off),
// which must not interleave with an operation changing PostgreSQL's
// settings. It reports false when the exclusion is taken.
func (n *Node) exclusive(fn func()) bool {
	if n.run.isStopping() {
		return false
	}
	select {
	case n.run.excl <- struct{}{}:
	default:
		return false
	}
	defer n.run.release()
	fn()
	return true
}

// Stop ends the node's work before PostgreSQL stops: no new operations,
// the one in flight gets grace to finish (a switchover takes well under a
// second), then the node's context is cancelled and every goroutine it
// started is waited for.
func (n *Node) Stop(grace time.Duration) {
	if !n.run.stop(grace) {
		n.log.Warn("an operation did not finish within the shutdown grace; it was cancelled and rolls back or resumes at the next start", "grace", grace)
	}
}

// opString is the "kind:step" form the heartbeat and status carry.
func opString(o *state.Operation) string {
	if o == nil {
		return ""
	}
	return fmt.Sprintf("%s:%s", o.Kind, o.Step)
}
