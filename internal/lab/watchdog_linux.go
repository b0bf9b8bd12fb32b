//go:build linux

package lab

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"time"

	"github.com/tandem-ha/tandem/internal/watchdog"
)

// ServeWatchdog is the stand-in for node's watchdog device until ctx
// ends (`tandem lab watchdog-device`, started by `lab up`). When it fires
// it powers the node off as `lab power-off` does, unless nothing runs on
// the node any more (it was powered off already, by `lab power-off` or a
// test cutting it by hand: a machine without power resets nothing).
func ServeWatchdog(ctx context.Context, log *slog.Logger, name, node string, out io.Writer) error {
	l, err := Load(name)
	if err != nil {
		return err
	}
	h, err := l.LookupHost(node)
	if err != nil {
		return err
	}
	if h.Role != RoleNode {
		return fmt.Errorf("host %s is no node: only the nodes have a watchdog", node)
	}
	sim := &watchdog.Sim{
		Path:     l.WatchdogPath(node),
		Identity: fmt.Sprintf("lab %s node %s", l.Name, node),
		Log:      log,
		Fire: func() {
			fctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			pids, err := netnsPids(fctx, log, h.Netns)
			pids = slices.DeleteFunc(pids, func(p int) bool { return p == os.Getpid() || !alive(p) })
			if err == nil && len(pids) == 0 {
				log.Warn("nothing runs on the node: it is off already, there is nothing to reset", "node", node)
				return
			}
			if err := PowerOff(fctx, log, name, node, out); err != nil {
				log.Error("the watchdog could not power the node off", "node", node, "err", err)
			}
		},
	}
	return sim.Serve(ctx)
}

// startWatchdogs starts the stand-in of every node's watchdog, in the
// switch namespace, and waits until each listens.
func startWatchdogs(log *slog.Logger, l *Layout) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("while finding the tandem executable for the lab watchdogs: %w", err)
	}
	for _, h := range l.Nodes() {
		if _, err := startDetached(log, l.SwitchNetns, l.WatchdogLogPath(h.Name), l.WatchdogPidPath(h.Name), self, "lab", "watchdog-device", "--name", l.Name, h.Name); err != nil {
			return err
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, h := range l.Nodes() {
		for {
			if fi, err := os.Stat(l.WatchdogPath(h.Name)); err == nil && fi.Mode()&os.ModeSocket != 0 {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("the lab watchdog of %s did not listen on %s within 10s; see %s:\n%s", h.Name, l.WatchdogPath(h.Name), l.WatchdogLogPath(h.Name), tailFile(l.WatchdogLogPath(h.Name), 20))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}
