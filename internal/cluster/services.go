package cluster

import (
	"context"
	"fmt"
	"time"

	"github.com/tandem-ha/tandem/internal/tool"
)

// Event kinds for role-bound services and hooks.
const (
	EventServiceStarted = "service_started"
	EventServiceStopped = "service_stopped"
	EventServiceFailed  = "service_failed"
	EventHookFailed     = "hook_failed"
)

// startServices starts the role-bound services after promotion, in order.
// A service that fails is reported, and the others still start: the
// database is already primary, and one broken service must not keep the
// rest of the server down.
func (n *Node) startServices(ctx context.Context, term int64) {
	n.svcMu.Lock()
	defer n.svcMu.Unlock()
	for _, sv := range n.cfg.Services {
		n.runService(ctx, sv, "start", sv.Start, term)
	}
}

// stopServices stops them before demotion, in reverse order.
func (n *Node) stopServices(ctx context.Context, term int64) {
	n.svcMu.Lock()
	defer n.svcMu.Unlock()
	for i := len(n.cfg.Services) - 1; i >= 0; i-- {
		sv := n.cfg.Services[i]
		n.runService(ctx, sv, "stop", sv.Stop, term)
	}
}

func (n *Node) runService(ctx context.Context, sv Service, what string, argv []string, term int64) {
	if len(argv) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, sv.Timeout)
	defer cancel()
	start := time.Now()
	_, err := tool.Run(ctx, n.log.With("service", sv.Name), tool.Cmd{Path: argv[0], Args: argv[1:], Env: []string{fmt.Sprintf("TANDEM_TERM=%d", term), "TANDEM_NODE=" + n.cfg.Name}})
	took := time.Since(start).Round(time.Millisecond)
	bg := context.Background()
	switch {
	case err != nil:
		n.event(bg, EventServiceFailed, n.cfg.Name, fmt.Sprintf("service %s did not %s within %s: %v", sv.Name, what, sv.Timeout, err))
	case what == "start":
		n.event(bg, EventServiceStarted, n.cfg.Name, fmt.Sprintf("service %s started (%s)", sv.Name, took))
	default:
		n.event(bg, EventServiceStopped, n.cfg.Name, fmt.Sprintf("service %s stopped (%s)", sv.Name, took))
	}
}

// runHook runs the role-change hook synchronously.
func (n *Node) runHook(ctx context.Context, oldRole, newRole string, term int64) {
	if len(n.cfg.Hook) == 0 {
		return
	}
	n.svcMu.Lock()
	defer n.svcMu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, n.cfg.HookLimit)
	defer cancel()
	_, err := tool.Run(ctx, n.log.With("hook", "on_role_change"), tool.Cmd{
		Path: n.cfg.Hook[0], Args: n.cfg.Hook[1:],
		Env: []string{"TANDEM_ROLE=" + oldRole, "TANDEM_NEW_ROLE=" + newRole, fmt.Sprintf("TANDEM_TERM=%d", term), "TANDEM_NODE=" + n.cfg.Name},
	})
	if err != nil {
		n.event(context.Background(), EventHookFailed, n.cfg.Name, fmt.Sprintf("the role-change hook (%s → %s) failed: %v", oldRole, newRole, err))
	}
}
