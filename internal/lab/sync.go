package lab

import (
	"context"
	"fmt"
	"time"

	"github.com/tandem-ha/tandem/internal/api"
)

// syncTimeout bounds how long up waits, after assembling in sync or strict
// mode, for the primary's cluster record to say synchronized. The primary
// answers the assembly once the secondary streams; its monitor marks the
// record synchronized about a second later.
const syncTimeout = 60 * time.Second

// waitsForSync says whether up waits for the cluster to be synchronized
// after assembling in mode ("" is the console's default, sync): in async
// mode nothing waits for the secondary, so up does not either.
func waitsForSync(mode string) bool {
	return mode == "" || mode == "sync" || mode == "strict"
}

// awaitSynchronized asks view every interval until the cluster record it
// returns says synchronized, for at most timeout. The error names what it
// waited for and what it saw last.
func awaitSynchronized(ctx context.Context, view func(context.Context) (*api.ClusterView, error), timeout, every time.Duration) error {
	deadline := time.Now().Add(timeout)
	last := "no answer yet"
	for {
		v, err := view(ctx)
		switch {
		case err != nil:
			last = err.Error()
		case v.Record == nil:
			last = "no cluster record"
		case v.Record.Synchronized:
			return nil
		default:
			last = describeSync(v)
		}
		if !time.Now().Before(deadline) {
			return fmt.Errorf("the primary's cluster record did not say synchronized within %s (waited for GET /v1/cluster to show record.synchronized true; last: %s)", timeout, last)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("while waiting for the primary's cluster record to say synchronized (last: %s): %w", last, ctx.Err())
		case <-time.After(every):
		}
	}
}

// describeSync is what a primary's view says about synchronization.
func describeSync(v *api.ClusterView) string {
	s := fmt.Sprintf("record of term %d, primary %s, %s replication, not synchronized", v.Record.Term, v.Record.Primary, v.Record.Replication)
	if r := v.Replication; r != nil {
		s += fmt.Sprintf("; the secondary is %s, sync state %q, %d bytes behind", r.State, r.SyncState, r.LagBytes)
	} else {
		s += "; no replication to the secondary"
	}
	return s
}
