//go:build !crashhook

package cluster

import (
	"log/slog"

	"github.com/tandem-ha/tandem/internal/state"
)

// CrashHookBuilt says whether this build carries the crash hook.
const CrashHookBuilt = false

// crashAt does nothing in a production build; see crash_hook.go.
func crashAt(*slog.Logger, state.OpKind, state.Step) {}

// etcdLeaderOnPrimary is always false in a production build; see
// crash_hook.go.
func etcdLeaderOnPrimary() bool { return false }
