package quorum

import (
	"context"
	"log/slog"
	"time"
)

// Keep runs an etcd member until ctx ends: it starts it (StartMember
// waits until the member has joined its quorum, which may take until a
// second member is up), reports each change of its state (starting,
// running, failed with the error, stopped), and starts it again 2 s after
// a failure.
func Keep(ctx context.Context, mc MemberConfig, log *slog.Logger, report func(m *Member, state string, err error)) {
	for {
		report(nil, "starting", nil)
		m, err := StartMember(ctx, mc)
		if err == nil {
			report(m, "running", nil)
			select {
			case <-ctx.Done():
				m.Stop()
				report(nil, "stopped", nil)
				return
			case err = <-m.Err():
				m.Stop()
			}
		}
		if ctx.Err() != nil {
			report(nil, "stopped", nil)
			return
		}
		log.Error("quorum member failed; starting it again in 2 s", "err", err)
		report(nil, "failed", err)
		select {
		case <-ctx.Done():
			report(nil, "stopped", nil)
			return
		case <-time.After(2 * time.Second):
		}
	}
}
