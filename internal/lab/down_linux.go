//go:build linux

package lab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// tandemdStopWait bounds tandemd's graceful shutdown (it stops PostgreSQL
// smart → fast → immediate, each stage bounded by labStopTimeout).
const tandemdStopWait = 3*labStopTimeout + 10*time.Second

// Down removes every trace of the lab called name: its processes (paused
// ones continued, tandemd first and gracefully, so PostgreSQL stops
// cleanly), namespaces (and with them every partition, degraded link and
// address), mounts, /etc/netns files and directory. It tolerates a lab that is half built or
// already gone, and returns what it could not remove.
func Down(ctx context.Context, log *slog.Logger, name string) error {
	if err := CheckHost(); err != nil {
		return err
	}
	if err := ValidateName(name); err != nil {
		return err
	}
	l, err := Load(name)
	if err != nil {
		// A damaged or missing layout: the names and paths follow from the
		// name. Planned with the witness, so that a witness left by an
		// automatic-mode lab goes too.
		l, _ = NewLayoutFailover(name, "", FailoverAutomatic)
	}
	mark := l.Dir + "/"
	existing, err := listNetns()
	if err != nil {
		return fmt.Errorf("while listing network namespaces: %w", err)
	}
	nss := namespacesOf(name, existing)
	var problems []error

	// Paused processes (`lab pause`) would sit on a SIGTERM until killed.
	continueAll(ctx, log, nss)

	// tandemd first, with SIGTERM, so that it stops PostgreSQL itself (and
	// the witness's leaves its etcd data consistent).
	var tandemds []int
	for _, h := range l.Daemons() {
		if pid, ok := readPid(l.PidPath(h.Name), mark); ok {
			tandemds = append(tandemds, pid)
		}
		if slices.Contains(nss, h.Netns) {
			pids, _ := netnsPids(ctx, log, h.Netns)
			for _, pid := range pids {
				if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); filepath.Base(exe) == "tandemd" && !slices.Contains(tandemds, pid) {
					tandemds = append(tandemds, pid)
				}
			}
		}
	}
	if left := stop(log, tandemds, syscall.SIGTERM, tandemdStopWait); len(left) > 0 {
		log.Warn("tandemd did not stop in time; killing it", "pids", left)
	}

	// Then everything else that runs in the lab.
	all := slices.Clone(tandemds)
	add := func(pids ...int) {
		for _, p := range pids {
			if p > 1 && p != os.Getpid() && !slices.Contains(all, p) {
				all = append(all, p)
			}
		}
	}
	for _, ns := range nss {
		pids, err := netnsPids(ctx, log, ns)
		if err != nil {
			log.Warn("cannot list processes", "netns", ns, "err", err)
		}
		add(pids...)
	}
	// Both servers' pid files: a layout lost, the lab's kind is unknown.
	for _, p := range []string{l.dnsmasqPidPath(), l.namedPidPath()} {
		if pid, ok := readPid(p, mark); ok {
			add(pid)
		}
	}
	add(strays(l.Dir)...)
	left := stop(log, all, syscall.SIGTERM, 5*time.Second)
	if len(left) > 0 {
		left = stop(log, left, syscall.SIGKILL, 5*time.Second)
	}
	for _, pid := range left {
		problems = append(problems, fmt.Errorf("process %d (%s) would not die", pid, cmdline(pid)))
	}

	for _, ns := range nss {
		if _, err := ipTool(ctx, log, "netns", "del", ns); err != nil {
			problems = append(problems, fmt.Errorf("while deleting namespace %s: %w", ns, err))
		}
	}
	// A namespace file can outlive `ip netns del` (for example after a crash mid-way).
	for _, mp := range netnsMounts(name) {
		if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil {
			problems = append(problems, fmt.Errorf("while unmounting %s: %w", mp, err))
		}
	}
	for _, s := range knownSuffixes {
		ns := name + "-" + s
		if err := os.Remove(filepath.Join(netnsRunDir, ns)); err != nil && !errors.Is(err, os.ErrNotExist) {
			problems = append(problems, fmt.Errorf("while removing %s: %w", filepath.Join(netnsRunDir, ns), err))
		}
		if err := os.RemoveAll(filepath.Join(netnsEtcDir, ns)); err != nil {
			problems = append(problems, err)
		}
	}
	if err := os.RemoveAll(l.Dir); err != nil {
		problems = append(problems, fmt.Errorf("while removing %s: %w", l.Dir, err))
	}
	// The shared parents (/var/lib/tandem-lab, /etc/netns) stay: removing
	// them when they look empty races with another lab being built at the
	// same moment, whose directories would vanish under it.
	return errors.Join(problems...)
}

// netnsMounts lists the mount points in /proc/mounts that belong to the
// lab's namespaces.
func netnsMounts(name string) []string {
	f, err := os.Open("/proc/mounts")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		if ns, ok := strings.CutPrefix(fields[1], netnsRunDir+"/"); ok && ownedNamespace(name, ns) {
			out = append(out, fields[1])
		}
	}
	return out
}
