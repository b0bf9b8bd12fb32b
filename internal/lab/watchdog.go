package lab

import "path/filepath"

// The lab's watchdog (automatic failover mode): each node's tandemd has
// watchdog.device pointing at a unix socket served by a stand-in for the
// hardware, `tandem lab watchdog-device NODE`, which runs in the switch
// namespace (so neither `power-off` nor `pause` of the node stops it, as
// neither stops a hardware watchdog) and powers the node off, exactly as
// `tandem lab power-off` does, when it is armed and not fed in time.

// WatchdogPath is node's watchdog device in the lab: the stand-in's socket.
func (l *Layout) WatchdogPath(node string) string {
	return filepath.Join(l.Dir, node, "watchdog.sock")
}

// WatchdogLogPath is where the stand-in of node's watchdog logs.
func (l *Layout) WatchdogLogPath(node string) string {
	return filepath.Join(l.Dir, node, "watchdog.log")
}

// WatchdogPidPath holds the stand-in's pid.
func (l *Layout) WatchdogPidPath(node string) string {
	return filepath.Join(l.Dir, node, "watchdog.pid")
}
