package cluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tandem-ha/tandem/internal/api"
	"github.com/tandem-ha/tandem/internal/version"
)

// A node's part of a rolling update (`tandem upgrade --version V`,
// docs/operations.md): run upgrade.command for V, check that the
// executable on disk is now V, and reload into it (the live reload: no
// write gap, PostgreSQL and the cluster IP kept). The console orders the
// nodes (the secondary first) and waits for each to come back at V; this
// node only does its own part, in the background, and reports it in GET
// /v1/node, since the reload ends this process's memory of it (the new
// tandemd's version then tells the rest).

// Events of an upgrade.
const (
	EventUpgradeInstalled = "upgrade_installed"
	EventUpgradeFailed    = "upgrade_failed"
)

// UpgradeConfig is upgrade.* of the node's configuration, and what the
// daemon gives the node to carry it out.
type UpgradeConfig struct {
	Argv    func(version string) []string // the command for a version; nil or empty: refused
	Timeout time.Duration
	// Executable is tandemd's own path (its version is asked after the
	// command); Reload checks the executable against the configuration
	// (`--check`) and, if it passes, asks the daemon to reload into it.
	Executable string
	Reload     func() error
	// ValidVersion checks a version string (config.VersionRE).
	ValidVersion func(string) bool
}

type upgradeState struct {
	mu   sync.Mutex
	info *api.UpgradeInfo
}

func (u *upgradeState) get() *api.UpgradeInfo {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.info == nil {
		return nil
	}
	i := *u.info
	return &i
}

func (u *upgradeState) set(fn func(i *api.UpgradeInfo)) {
	u.mu.Lock()
	defer u.mu.Unlock()
	fn(u.info)
}

// Upgrade starts this node's upgrade to req.Version and answers at once
// (202): the command may take minutes, and its end is a reload.
func (n *Node) Upgrade(ctx context.Context, req api.UpgradeRequest) (api.UpgradeInfo, error) {
	u := n.cfg.Upgrade
	if u.ValidVersion == nil || !u.ValidVersion(req.Version) {
		return api.UpgradeInfo{}, badRequest("version %q must be letters, digits and .+~:- (a package version such as 1.4.2), at most 64", req.Version)
	}
	if req.Version == version.Version {
		return api.UpgradeInfo{Version: req.Version, State: "done", StartedAt: time.Now().UTC()}, nil
	}
	if u.Argv == nil || len(u.Argv(req.Version)) == 0 || u.Reload == nil || u.Executable == "" {
		return api.UpgradeInfo{}, conflict("%s has no upgrade.command (or cannot reload itself): it refuses upgrades; install the package by hand and run `systemctl reload tandemd`", n.cfg.Name)
	}
	n.up.mu.Lock()
	if i := n.up.info; i != nil && (i.State == "running" || i.State == "reloading") {
		n.up.mu.Unlock()
		return api.UpgradeInfo{}, conflict("%s is already upgrading to %s (%s, since %s)", n.cfg.Name, i.Version, i.State, i.StartedAt.Format(time.RFC3339))
	}
	// The answer is a copy: the upgrade's goroutine changes the stored
	// one from the start.
	info := api.UpgradeInfo{Version: req.Version, State: "running", StartedAt: time.Now().UTC()}
	stored := info
	n.up.info = &stored
	n.up.mu.Unlock()
	if n.run.isStopping() {
		n.up.set(func(i *api.UpgradeInfo) { i.State, i.Error = "failed", "tandemd is stopping" })
		return api.UpgradeInfo{}, unavailable("%s is stopping", n.cfg.Name)
	}
	// Not on the node's lifetime (goAttach): a package's own upgrade
	// reloads tandemd while the command still runs, and the command must
	// not be killed for it, nor the reload wait for the command.
	go n.upgrade(req.Version)
	n.log.Info("upgrade started", "version", req.Version, "command", strings.Join(u.Argv(req.Version), " "))
	return info, nil
}

// upgrade runs the command in a session of its own, its output going to
// state_dir/upgrade.log rather than to a pipe: should this process be
// replaced meanwhile (the package's postinst reloads tandemd), the command
// goes on undisturbed — no SIGPIPE, no kill — and finishes the install.
func (n *Node) upgrade(v string) {
	ctx := context.Background()
	u := n.cfg.Upgrade
	fail := func(msg, out string) {
		n.up.set(func(i *api.UpgradeInfo) { i.State, i.Error, i.Output = "failed", msg, out })
		n.log.Error("upgrade failed", "version", v, "err", msg)
		n.event(ctx, EventUpgradeFailed, n.cfg.Name, fmt.Sprintf("%s: upgrade to %s failed: %s", n.cfg.Name, v, msg))
	}
	argv := u.Argv(v)
	cctx, cancel := context.WithTimeout(ctx, u.Timeout)
	defer cancel()
	logPath := filepath.Join(n.cfg.StateDir, "upgrade.log")
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		fail(err.Error(), "")
		return
	}
	readOut := func() string {
		b, _ := os.ReadFile(logPath)
		return tail(string(b), 2048)
	}
	cmd := exec.CommandContext(cctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "TANDEM_UPGRADE_VERSION="+v, "DEBIAN_FRONTEND=noninteractive")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	// At the timeout the whole session goes (dpkg and the maintainer
	// scripts too), not only the command: a dpkg left running would hold
	// its lock against a retry, and might still replace the binary.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	err = cmd.Run()
	logf.Close()
	if err != nil {
		if cctx.Err() == context.DeadlineExceeded {
			err = fmt.Errorf("timed out after %s (upgrade.timeout)", u.Timeout)
		}
		fail(fmt.Sprintf("%s: %v", argv[0], err), readOut())
		return
	}
	out := readOut()
	got, err := executableVersion(ctx, u.Executable)
	if err != nil {
		fail(err.Error(), out)
		return
	}
	if got != v {
		fail(fmt.Sprintf("the command succeeded, but %s is at version %s, not %s", u.Executable, got, v), out)
		return
	}
	if err := u.Reload(); err != nil {
		fail(fmt.Sprintf("tandem %s is installed, but this tandemd refused to reload into it (it runs on at %s): %v", v, version.Version, err), out)
		return
	}
	n.up.set(func(i *api.UpgradeInfo) { i.State, i.Output = "reloading", out })
	n.event(ctx, EventUpgradeInstalled, n.cfg.Name, fmt.Sprintf("%s: tandem %s installed (was %s); reloading into it", n.cfg.Name, v, version.Version))
}

// executableVersion asks a tandemd executable for its version
// (`tandemd --version` prints "tandemd version V").
func executableVersion(ctx context.Context, exe string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	b, err := exec.CommandContext(ctx, exe, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("%s --version: %v", exe, err)
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "", fmt.Errorf("%s --version printed nothing", exe)
	}
	return f[len(f)-1], nil
}

// tail is the end of s, at most n bytes, from a line start.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[len(s)-n:]
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}
