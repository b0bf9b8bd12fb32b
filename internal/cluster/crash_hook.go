//go:build crashhook

package cluster

import (
	"log/slog"
	"os"

	"github.com/tandem-ha/tandem/internal/state"
)

// CrashHookBuilt says whether this build carries the crash hook.
const CrashHookBuilt = true

// crashAt is fault injection for the end-to-end tests, compiled only with
// the build tag crashhook: when TANDEMD_CRASH_AT names "op:step", tandemd
// exits at once right after journaling that step, as if it had been killed
// there, leaving PostgreSQL, the cluster IP and the state file as they are.
func crashAt(log *slog.Logger, kind state.OpKind, step state.Step) {
	if v := os.Getenv("TANDEMD_CRASH_AT"); v != "" && v == string(kind)+":"+string(step) {
		log.Error("TANDEMD_CRASH_AT: exiting abruptly for a crash test", "op", kind, "step", step)
		os.Exit(137)
	}
}

// etcdLeaderOnPrimary is the benchmark's knob (TANDEMD_ETCD_LEADER_ON_PRIMARY=1,
// crashhook builds only): the primary pulls the etcd leadership to its own
// member instead of keeping it off, so that a power-off of the primary is
// measured with the etcd election it then costs.
func etcdLeaderOnPrimary() bool { return os.Getenv("TANDEMD_ETCD_LEADER_ON_PRIMARY") == "1" }
