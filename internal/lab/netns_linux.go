//go:build linux

package lab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"github.com/tandem-ha/tandem/internal/tool"
)

const (
	netnsRunDir = "/run/netns"
	netnsEtcDir = "/etc/netns"
)

// ipTool runs `ip` with args.
func ipTool(ctx context.Context, log *slog.Logger, args ...string) (tool.Result, error) {
	ip, err := lookTool("ip")
	if err != nil {
		return tool.Result{}, err
	}
	return tool.Run(ctx, log, tool.Cmd{Path: ip, Args: args, Quiet: true})
}

// buildNetwork creates the namespaces, the bridge in the switch namespace,
// one veth pair per host (eth0 inside the host, with the layout's MAC, and
// veth-<host> on the bridge) and the hosts' addresses. Nothing is created
// in the root namespace. The bridge does no multicast snooping: it would
// forward IPv6 neighbour discovery only to ports it has seen join, which
// an address added a moment ago may not have done yet.
//
// A cross-subnet lab has one bridge per segment and a router namespace
// with a port on each (eth1-eth3, their peers veth-r1-3 on the bridges),
// forwarding between them; each host's default route is the router's
// address in its segment.
func buildNetwork(ctx context.Context, log *slog.Logger, l *Layout) error {
	steps := [][]string{
		{"netns", "add", l.SwitchNetns},
		{"-n", l.SwitchNetns, "link", "set", "lo", "up"},
	}
	bridges := []string{BridgeName}
	if l.CrossSubnet {
		bridges = nil
		for _, s := range l.Segments {
			bridges = append(bridges, s.Bridge)
		}
	}
	for _, br := range bridges {
		steps = append(steps,
			[]string{"-n", l.SwitchNetns, "link", "add", br, "type", "bridge", "mcast_snooping", "0"},
			[]string{"-n", l.SwitchNetns, "link", "set", br, "up"},
		)
	}
	if l.CrossSubnet {
		steps = append(steps,
			[]string{"netns", "add", l.RouterNetns},
			[]string{"-n", l.RouterNetns, "link", "set", "lo", "up"},
		)
		for _, s := range l.Segments {
			steps = append(steps,
				[]string{"-n", l.SwitchNetns, "link", "add", s.RouterVeth, "type", "veth", "peer", "name", s.RouterIface, "address", s.RouterMAC, "netns", l.RouterNetns},
				[]string{"-n", l.SwitchNetns, "link", "set", s.RouterVeth, "master", s.Bridge},
				[]string{"-n", l.SwitchNetns, "link", "set", s.RouterVeth, "up"},
				[]string{"-n", l.RouterNetns, "addr", "add", s.Gateway + "/" + strconv.Itoa(netip.MustParsePrefix(s.Subnet).Bits()), "dev", s.RouterIface},
				[]string{"-n", l.RouterNetns, "link", "set", s.RouterIface, "up"},
			)
		}
	}
	for _, h := range l.Hosts {
		steps = append(steps,
			[]string{"netns", "add", h.Netns},
			[]string{"-n", h.Netns, "link", "set", "lo", "up"},
			// Created in the switch namespace, its peer moved straight into the host's.
			[]string{"-n", l.SwitchNetns, "link", "add", h.Veth, "type", "veth", "peer", "name", HostIface, "address", h.MAC, "netns", h.Netns},
			[]string{"-n", l.SwitchNetns, "link", "set", h.Veth, "master", l.bridgeOf(h)},
			[]string{"-n", l.SwitchNetns, "link", "set", h.Veth, "up"},
		)
		steps = append(steps, l.hostUpSteps(h)...)
	}
	for _, s := range steps {
		if _, err := ipTool(ctx, log, s...); err != nil {
			return fmt.Errorf("while building the lab network (ip %s): %w", strings.Join(s, " "), err)
		}
	}
	if l.CrossSubnet {
		if err := enableForwarding(l.RouterNetns); err != nil {
			return err
		}
	}
	return nil
}

// hostUpSteps give a host's eth0 its static address and bring it up, as
// at boot, with its default route in a cross-subnet lab (added once the
// link is up: the kernel refuses a gateway it cannot reach yet).
func (l *Layout) hostUpSteps(h Host) [][]string {
	steps := [][]string{
		l.addrAddArgs(h),
		{"-n", h.Netns, "link", "set", HostIface, "up"},
	}
	if h.Gateway != "" {
		steps = append(steps, []string{"-n", h.Netns, "route", "replace", "default", "via", h.Gateway, "dev", HostIface})
	}
	return steps
}

// enableForwarding makes namespace ns route IPv4 between its interfaces.
// /proc/sys/net is the opening thread's namespace's, so it is written from
// inside ns (no sysctl program needed).
func enableForwarding(ns string) error {
	err := inNetns(ns, func() error {
		return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1\n"), 0o644)
	})
	if err != nil {
		return fmt.Errorf("while turning on forwarding in the router namespace %s: %w", ns, err)
	}
	return nil
}

// addrAddArgs adds a host's static address to its eth0. IPv6 addresses
// skip duplicate address detection (nodad): the lab's addresses are unique
// by construction, and a tentative address could not be bound or used for
// a second or more.
func (l *Layout) addrAddArgs(h Host) []string {
	args := []string{"-n", h.Netns, "addr", "add", l.HostPrefix(h), "dev", HostIface}
	if l.IPv6() {
		args = append(args, "nodad")
	}
	return args
}

// writeEtc writes the files `ip netns exec` binds over /etc for each host,
// so every lab host resolves names through the lab's DNS server only.
func writeEtc(l *Layout) error {
	nss, err := os.ReadFile("/etc/nsswitch.conf")
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("while reading /etc/nsswitch.conf: %w", err)
	}
	files := map[string]string{
		"resolv.conf":   l.ResolvConf(),
		"hosts":         HostsFile(),
		"nsswitch.conf": NsswitchConf(string(nss)),
	}
	for _, h := range l.Hosts {
		dir := filepath.Join(netnsEtcDir, h.Netns)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("while creating %s: %w", dir, err)
		}
		for name, content := range files {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
				return fmt.Errorf("while writing %s: %w", filepath.Join(dir, name), err)
			}
		}
	}
	return nil
}

// listNetns lists the names of all named network namespaces.
func listNetns() ([]string, error) {
	ents, err := os.ReadDir(netnsRunDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out, nil
}

// netnsPids lists the processes inside a namespace.
func netnsPids(ctx context.Context, log *slog.Logger, ns string) ([]int, error) {
	res, err := ipTool(ctx, log, "netns", "pids", ns)
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(res.Stdout) {
		if n, err := strconv.Atoi(f); err == nil {
			pids = append(pids, n)
		}
	}
	return pids, nil
}

// inNetns runs fn on an OS thread that has entered namespace ns, and
// brings the thread back to its own namespace afterwards, so that nothing
// else of this process ever runs in the lab's namespace (were the thread
// the main one, the whole process would count as a lab process). A thread
// that cannot go back stays locked and the runtime discards it. Sockets fn
// opens keep the namespace for life.
func inNetns(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		nr, ok := setnsNumbers[runtime.GOARCH]
		if !ok {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("entering a namespace is not supported on %s", runtime.GOARCH)
			return
		}
		home, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", syscall.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("while noting this thread's namespace: %w", err)
			return
		}
		defer home.Close()
		f, err := os.Open(filepath.Join(netnsRunDir, ns))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("while opening namespace %s: %w", ns, err)
			return
		}
		_, _, e := syscall.RawSyscall(nr, f.Fd(), syscall.CLONE_NEWNET, 0)
		f.Close()
		if e != 0 {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("while entering namespace %s: %w", ns, e)
			return
		}
		err = fn()
		if _, _, e := syscall.RawSyscall(nr, home.Fd(), syscall.CLONE_NEWNET, 0); e == 0 {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// setnsNumbers is setns(2)'s number per architecture; the syscall package
// lacks it on some (amd64 among them).
var setnsNumbers = map[string]uintptr{
	"amd64": 308, "386": 346, "arm64": 268, "arm": 375, "riscv64": 268,
	"loong64": 268, "ppc64": 350, "ppc64le": 350, "s390x": 339,
	"mips": 4344, "mipsle": 4344, "mips64": 5303, "mips64le": 5303,
}

// dialerIn returns a DialContext that opens its connections inside ns.
func dialerIn(ns string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := inNetns(ns, func() error {
			var d net.Dialer
			var err error
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// resolverIn returns a resolver that asks server (ip:53) from inside ns.
func resolverIn(ns, server string) *net.Resolver {
	dial := dialerIn(ns)
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return dial(ctx, network, net.JoinHostPort(server, "53"))
		},
	}
}
