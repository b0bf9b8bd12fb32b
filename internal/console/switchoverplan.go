package console

import (
	"fmt"

	"github.com/tandem-ha/tandem/internal/api"
)

// SwitchoverPlan is what a switchover from Primary to Secondary will do,
// checked against the primary's view of its replication: the words
// `tandem switchover` prints and the web console shows, made in one place
// so the two cannot drift apart.
type SwitchoverPlan struct {
	Lines []string
	// Warning is set when the secondary has not caught up and data loss
	// is allowed: what it has not received will be lost.
	Warning string
	// Refused is set when the switchover must not be sent; it says what
	// to do instead, and that nothing was sent.
	Refused  string
	Question string
}

// PlanSwitchover checks a switchover of cluster from primary (at term) to
// secondary. r is the primary's replication view (nil if it has none).
// allowLoss is whether the user allowed data loss, and allowWord how they
// would ("pass --allow-data-loss", "allow data loss"), for the refusal.
// A streaming secondary a little behind (up to api.MaxSwitchoverLag, the
// node's own bound) is caught up: it replays everything up to the old
// primary's shutdown checkpoint before it promotes.
func PlanSwitchover(cluster, primary, secondary string, term int64, r *api.ReplicationInfo, allowLoss bool, allowWord string) SwitchoverPlan {
	p := SwitchoverPlan{Lines: []string{
		fmt.Sprintf("Switchover in cluster %s (term %d → %d):", cluster, term, term+1),
		fmt.Sprintf("%s (primary now) stops its services and shuts PostgreSQL down cleanly, keeping the cluster IP.", primary),
		fmt.Sprintf("%s (secondary now) promotes once it has replayed everything; then the cluster IP moves to it and its services start.", secondary),
		fmt.Sprintf("%s then follows %s as its standby. Writes pause for a moment.", primary, secondary),
	}}
	caughtUp := r != nil && r.State != "disconnected" && r.LagBytes <= api.MaxSwitchoverLag
	switch {
	case caughtUp:
		p.Lines = append(p.Lines, fmt.Sprintf("The secondary streams (%s behind, replayed before it promotes): nothing will be lost.", bytesOf(r.LagBytes)))
	case allowLoss:
		what := "it is not streaming: everything written since it stopped"
		if r != nil && r.State != "disconnected" {
			what = fmt.Sprintf("it is %s behind", bytesOf(r.LagBytes))
		}
		p.Warning = fmt.Sprintf("the secondary has not caught up (%s); data loss is allowed: what it has not received WILL BE LOST.", what)
	default:
		state := "unknown"
		if r != nil {
			state = fmt.Sprintf("%s, %s behind", r.State, bytesOf(r.LagBytes))
		}
		p.Refused = fmt.Sprintf("the secondary has not caught up (%s): wait for it, or %s to lose what it has not received. Nothing was sent", state, allowWord)
	}
	p.Question = fmt.Sprintf("Switch the primary role from %s to %s?", primary, secondary)
	return p
}
