//go:build linux

package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/tandem-ha/tandem/internal/tool"
)

// DefaultPowerOnTimeout bounds power-on's wait for a node's /health.
const DefaultPowerOnTimeout = 60 * time.Second

// openLab loads a running lab and takes its lock, so that two commands
// changing it never interleave. The caller runs unlock.
func openLab(name string) (l *Layout, unlock func(), err error) {
	if err := CheckHost(); err != nil {
		return nil, nil, err
	}
	if l, err = Load(name); err != nil {
		return nil, nil, err
	}
	f, err := os.OpenFile(l.lockPath(), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("while locking lab %s: %w", name, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("while locking lab %s: %w", name, err)
	}
	return l, func() { f.Close() }, nil
}

// PowerOff does to host what pulling its power cord would: its eth0 goes
// down first (so nothing it does from now on reaches the wire: no FIN, no
// RST, no ARP), then every process in its namespace gets SIGKILL, and its
// addresses are flushed (memory is gone). Partitions and degraded links
// stay: they belong to the network, not to the host.
func PowerOff(ctx context.Context, log *slog.Logger, name, host string, out io.Writer) error {
	l, unlock, err := openLab(name)
	if err != nil {
		return err
	}
	defer unlock()
	h, err := l.LookupHost(host)
	if err != nil {
		return err
	}
	f, err := l.LoadFaults()
	if err != nil {
		return err
	}
	if f.IsOff(host) {
		fmt.Fprintf(out, "lab %s: host %s is already powered off\n", l.Name, host)
		return nil
	}
	if _, err := ipTool(ctx, log, "-n", h.Netns, "link", "set", HostIface, "down"); err != nil {
		return fmt.Errorf("while taking %s's %s down: %w", host, HostIface, err)
	}
	killed, err := killNetns(ctx, log, h.Netns)
	if err != nil {
		return err
	}
	if _, err := ipTool(ctx, log, "-n", h.Netns, "addr", "flush", "dev", HostIface); err != nil {
		return fmt.Errorf("while clearing %s's addresses: %w", host, err)
	}
	f.setOff(host, true)
	f.Paused = slices.DeleteFunc(f.Paused, func(p Paused) bool { return p.Host == host })
	if err := l.SaveFaults(f); err != nil {
		return err
	}
	what := "no processes were running"
	if len(killed) > 0 {
		what = "killed " + strings.Join(killed, ", ")
	}
	fmt.Fprintf(out, "lab %s: host %s powered off (%s down, %s)\n", l.Name, host, HostIface, what)
	return nil
}

// killNetns SIGKILLs every process in namespace ns until none is left,
// and names what it killed.
func killNetns(ctx context.Context, log *slog.Logger, ns string) ([]string, error) {
	var names []string
	deadline := time.Now().Add(10 * time.Second)
	for {
		pids, err := netnsPids(ctx, log, ns)
		if err != nil {
			return names, fmt.Errorf("while listing the processes in %s: %w", ns, err)
		}
		pids = slices.DeleteFunc(pids, func(p int) bool { return p == os.Getpid() || !alive(p) })
		if len(pids) == 0 {
			return names, nil
		}
		if time.Now().After(deadline) {
			return names, fmt.Errorf("processes %v in %s survive SIGKILL", pids, ns)
		}
		for _, pid := range pids {
			exe := procName(pid)
			if err := syscall.Kill(pid, syscall.SIGKILL); err == nil && !slices.Contains(names, exe) {
				names = append(names, exe)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// procName is the base name of a process's executable.
func procName(pid int) string {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return "?"
	}
	return filepath.Base(strings.TrimSuffix(exe, " (deleted)"))
}

// PowerOn boots host again: if it is powered off, its eth0 gets its
// static address back and comes up; then what `up` ran there is started
// if it is not running (tandemd with the same configuration on a node,
// tandem-witness on the witness, dnsmasq or named on dns) and, on a
// node or the witness, PowerOn waits up to wait for /health, asked from
// the host itself so that a partition does not hide it.
func PowerOn(ctx context.Context, log *slog.Logger, name, host string, wait time.Duration, out io.Writer) error {
	l, unlock, err := openLab(name)
	if err != nil {
		return err
	}
	locked := true
	defer func() {
		if locked {
			unlock()
		}
	}()
	h, err := l.LookupHost(host)
	if err != nil {
		return err
	}
	f, err := l.LoadFaults()
	if err != nil {
		return err
	}
	booted := f.IsOff(host)
	if booted {
		if err := bootNetwork(ctx, log, l, h); err != nil {
			return err
		}
		f.setOff(host, false)
		if err := l.SaveFaults(f); err != nil {
			return err
		}
	}
	started := ""
	var pid int
	switch h.Role {
	case RoleNode, RoleWitness:
		if _, ok := readPid(l.PidPath(h.Name), l.Dir+"/"); !ok {
			tandemd := l.Tandemd
			if tandemd == "" || !isExecutable(tandemd) {
				if tandemd, err = FindTandemd(""); err != nil {
					return err
				}
			}
			if pid, err = restartDaemon(log, l, h, tandemd); err != nil {
				return err
			}
			exe, _ := l.DaemonCommand(h, tandemd)
			started = filepath.Base(exe)
		}
	case RoleEtcd:
		if _, ok := readPid(l.EtcdPidPath(h.Name), l.Dir+"/"); !ok {
			bin, err := lookTool(EtcdBinary)
			if err != nil {
				return err
			}
			if _, err := startEtcd(log, l, h, bin); err != nil {
				return err
			}
			started = "etcd"
		}
	case RoleDNS:
		if _, ok := readPid(l.DNSPidPath(), l.Dir+"/"); !ok {
			if err := startDNSServer(ctx, log, l); err != nil {
				return err
			}
			started = l.DNSProgram()
		}
	}
	switch {
	case booted && started != "":
		fmt.Fprintf(out, "lab %s: host %s powered on; %s started\n", l.Name, host, started)
	case booted:
		fmt.Fprintf(out, "lab %s: host %s powered on\n", l.Name, host)
	case started != "":
		fmt.Fprintf(out, "lab %s: host %s was on; %s was not running and is started again\n", l.Name, host, started)
	default:
		fmt.Fprintf(out, "lab %s: host %s is already on\n", l.Name, host)
	}
	if h.Role != RoleNode && h.Role != RoleWitness || started == "" {
		return nil
	}
	// Other lab commands may run while the node starts.
	unlock()
	locked = false
	if wait <= 0 {
		wait = DefaultPowerOnTimeout
	}
	own := func(h Host) string { return h.Netns }
	return waitHealthy(ctx, l, []Host{h}, map[string]int{h.Name: pid}, own, wait, out)
}

// bootNetwork gives host's eth0 its static address, as at boot, and brings
// it up (in a cross-subnet lab with its default route, which went with the
// addresses). IPv6 addresses skip duplicate address detection so they are
// usable at once, as after up.
func bootNetwork(ctx context.Context, log *slog.Logger, l *Layout, h Host) error {
	steps := append([][]string{{"-n", h.Netns, "addr", "flush", "dev", HostIface}}, l.hostUpSteps(h)...)
	for _, s := range steps {
		if _, err := ipTool(ctx, log, s...); err != nil {
			return fmt.Errorf("while bringing %s's network up (ip %s): %w", h.Name, strings.Join(s, " "), err)
		}
	}
	return nil
}

// Partition drops all traffic between h1 and h2, or with oneway only what
// h1 sends to h2. Every other path stays as it is.
func Partition(ctx context.Context, log *slog.Logger, name, h1, h2 string, oneway bool, out io.Writer) error {
	return changeFaults(ctx, log, name, out, func(l *Layout, f *Faults) ([]string, string, error) {
		if err := l.CheckPair(h1, h2); err != nil {
			return nil, "", err
		}
		f.cut(h1, h2, oneway)
		if oneway {
			return []string{h2}, fmt.Sprintf("what %s sends %s is dropped (one way: %s's packets still reach %s, but %s's answers do not come back)", h1, h2, h2, h1, h1), nil
		}
		return []string{h1, h2}, fmt.Sprintf("%s and %s are partitioned", h1, h2), nil
	})
}

// Degrade makes the link between h1 and h2 slow or lossy, in both
// directions, with netem on each host's egress toward the other.
func Degrade(ctx context.Context, log *slog.Logger, name, h1, h2 string, n Netem, out io.Writer) error {
	if err := n.Validate(); err != nil {
		return err
	}
	return changeFaults(ctx, log, name, out, func(l *Layout, f *Faults) ([]string, string, error) {
		if err := l.CheckPair(h1, h2); err != nil {
			return nil, "", err
		}
		a, b := l.ordered(h1, h2)
		f.setLink(a, b, n)
		return []string{a, b}, fmt.Sprintf("link %s <-> %s degraded: %s", a, b, n), nil
	})
}

// Heal removes the partitions and degraded links between h1 and h2, or
// every one in the lab when both are empty. Powered-off hosts and paused
// processes stay as they are.
func Heal(ctx context.Context, log *slog.Logger, name, h1, h2 string, out io.Writer) error {
	return changeFaults(ctx, log, name, out, func(l *Layout, f *Faults) ([]string, string, error) {
		if h1 != "" || h2 != "" {
			if err := l.CheckPair(h1, h2); err != nil {
				return nil, "", err
			}
			touched := f.heal(h1, h2)
			if len(touched) == 0 {
				return nil, fmt.Sprintf("nothing to heal between %s and %s", h1, h2), nil
			}
			return touched, fmt.Sprintf("healed the network between %s and %s", h1, h2), nil
		}
		f.heal("", "")
		// Every host, whatever the record says, so heal also clears a
		// configuration left by an interrupted command.
		return l.HostNames(), "healed every partition and degraded link", nil
	})
}

// changeFaults changes the lab's network faults under its lock: change
// edits the record and names the hosts to reconfigure; their tc
// configuration is then rewritten from the record. On failure the record
// and those hosts go back to how they were.
func changeFaults(ctx context.Context, log *slog.Logger, name string, out io.Writer, change func(*Layout, *Faults) ([]string, string, error)) error {
	l, unlock, err := openLab(name)
	if err != nil {
		return err
	}
	defer unlock()
	if _, err := lookTool("tc"); err != nil {
		return err
	}
	f, err := l.LoadFaults()
	if err != nil {
		return err
	}
	before, err := l.LoadFaults()
	if err != nil {
		return err
	}
	hosts, msg, err := change(l, f)
	if err != nil {
		return err
	}
	if err := l.SaveFaults(f); err != nil {
		return err
	}
	for _, h := range hosts {
		if err := applyTC(ctx, log, l, f, h); err != nil {
			if serr := l.SaveFaults(before); serr != nil {
				log.Warn("cannot restore the fault record", "err", serr)
			}
			for _, h := range hosts {
				if rerr := applyTC(ctx, log, l, before, h); rerr != nil {
					log.Warn("cannot restore the network configuration", "host", h, "err", rerr)
				}
			}
			return err
		}
	}
	fmt.Fprintf(out, "lab %s: %s\n", l.Name, msg)
	return nil
}

// applyTC makes host's tc configuration what f says.
func applyTC(ctx context.Context, log *slog.Logger, l *Layout, f *Faults, host string) error {
	h, err := l.LookupHost(host)
	if err != nil {
		return err
	}
	steps, err := l.tcPlan(f, host)
	if err != nil {
		return err
	}
	tc, err := lookTool("tc")
	if err != nil {
		return err
	}
	for _, s := range steps {
		args := append([]string{"-n", h.Netns}, s.Args...)
		_, err := tool.Run(ctx, log, tool.Cmd{Path: tc, Args: args, Quiet: true})
		var ee *tool.ExitError
		if err != nil && errors.As(err, &ee) && s.Tolerate.tolerated(ee.Stderr) {
			continue
		}
		if err != nil {
			return fmt.Errorf("while configuring %s's network (tc %s): %w%s", host, strings.Join(args, " "), err, tcHint(err))
		}
	}
	return nil
}

// tcHint explains the kernel features the lab's tc configuration needs.
func tcHint(err error) string {
	var ee *tool.ExitError
	if !errors.As(err, &ee) {
		return ""
	}
	switch {
	case strings.Contains(ee.Stderr, "qdisc kind is unknown"):
		return " — this kernel lacks a queueing discipline the lab needs: netem (CONFIG_NET_SCH_NETEM, `modprobe sch_netem`) for degraded links, htb (sch_htb) and clsact (sch_ingress)"
	case strings.Contains(ee.Stderr, "classifier not found"):
		return " — this kernel lacks the BPF classifier (CONFIG_NET_CLS_BPF, `modprobe cls_bpf`) the lab's filters use"
	}
	return ""
}

// Pause stops processes on host with SIGSTOP: every process there (a
// frozen machine), or only tandemd, or only PostgreSQL (the postmaster and
// its children). Their sockets stay open: peers see silence, not errors.
func Pause(ctx context.Context, log *slog.Logger, name, host, process string, out io.Writer) error {
	if err := CheckProcess(process); err != nil {
		return err
	}
	l, unlock, err := openLab(name)
	if err != nil {
		return err
	}
	defer unlock()
	h, err := l.LookupHost(host)
	if err != nil {
		return err
	}
	f, err := l.LoadFaults()
	if err != nil {
		return err
	}
	if f.IsOff(host) {
		return fmt.Errorf("host %s is powered off: nothing runs there to pause", host)
	}
	pids, err := processesOf(ctx, log, h.Netns, process)
	if err != nil {
		return err
	}
	if len(pids) == 0 {
		what := "no process"
		if process != ProcessAll {
			what = "no " + process
		}
		return fmt.Errorf("%s runs on %s: nothing to pause", what, host)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("while pausing process %d on %s: %w", pid, host, err)
		}
	}
	p := Paused{Host: host, Process: process}
	if !slices.Contains(f.Paused, p) {
		f.Paused = append(f.Paused, p)
	}
	if err := l.SaveFaults(f); err != nil {
		return err
	}
	what := "every process"
	if process != ProcessAll {
		what = process
	}
	fmt.Fprintf(out, "lab %s: paused %s on %s (%d processes); `tandem lab resume %s` continues them\n", l.Name, what, host, len(pids), host)
	return nil
}

// Resume continues every stopped process on host (SIGCONT to all of them).
func Resume(ctx context.Context, log *slog.Logger, name, host string, out io.Writer) error {
	l, unlock, err := openLab(name)
	if err != nil {
		return err
	}
	defer unlock()
	h, err := l.LookupHost(host)
	if err != nil {
		return err
	}
	f, err := l.LoadFaults()
	if err != nil {
		return err
	}
	pids, err := processesOf(ctx, log, h.Netns, ProcessAll)
	if err != nil {
		return err
	}
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGCONT)
	}
	f.Paused = slices.DeleteFunc(f.Paused, func(p Paused) bool { return p.Host == host })
	if err := l.SaveFaults(f); err != nil {
		return err
	}
	fmt.Fprintf(out, "lab %s: resumed the processes on %s\n", l.Name, host)
	return nil
}

// processesOf lists the processes in ns, all or only those running the
// named program.
func processesOf(ctx context.Context, log *slog.Logger, ns, program string) ([]int, error) {
	pids, err := netnsPids(ctx, log, ns)
	if err != nil {
		return nil, fmt.Errorf("while listing the processes in %s: %w", ns, err)
	}
	return slices.DeleteFunc(pids, func(p int) bool {
		return p == os.Getpid() || !alive(p) || (program != ProcessAll && !isProgram(procName(p), program))
	}), nil
}

// isProgram says whether a process named name is program: tandemd also
// names the witness's own program (tandem-witness), which is what runs
// tandemd's part on w.
func isProgram(name, program string) bool {
	return name == program || (program == ProcessTandemd && name == WitnessProgram)
}

// continueAll sends SIGCONT to every process in the namespaces, so that a
// paused lab can be stopped.
func continueAll(ctx context.Context, log *slog.Logger, nss []string) {
	for _, ns := range nss {
		pids, _ := netnsPids(ctx, log, ns)
		for _, pid := range pids {
			if pid != os.Getpid() {
				_ = syscall.Kill(pid, syscall.SIGCONT)
			}
		}
	}
}
