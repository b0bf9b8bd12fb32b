package config

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/tandem-ha/tandem/internal/valid"
)

// Upgrade is how this node installs another version of tandem when the
// console runs `tandem upgrade --version V` (a rolling update: the
// secondary first, then the primary, each by a live reload).
type Upgrade struct {
	// Command is run as argv, never through a shell: every "{version}" in
	// it is replaced by the version asked (checked against VersionRE
	// first), which is also in TANDEM_UPGRADE_VERSION. The default installs
	// the Debian package at that version from the node's apt sources.
	Command []string `yaml:"command"`
	// Timeout bounds the command.
	Timeout Duration `yaml:"timeout"`
}

// VersionRE is what `tandem upgrade --version` accepts: the characters of
// a Debian version (no spaces, quotes or shell metacharacters), at most
// 64.
var VersionRE = valid.Bounded(`^[0-9A-Za-z][0-9A-Za-z.+~:-]*$`, 1, 64)

// defaultUpgrade installs the package with apt, run by systemd as a
// transient unit of its own: the packaged tandemd.service makes /usr and
// /etc read-only for tandemd and its children (ProtectSystem=full), where
// dpkg could not unpack, and a child of tandemd would share its fate when
// the package's postinst reloads it.
func defaultUpgrade() Upgrade {
	return Upgrade{
		Command: []string{"/usr/bin/systemd-run", "--unit=tandem-upgrade", "--wait", "--collect", "--pipe", "--quiet",
			"--setenv=DEBIAN_FRONTEND=noninteractive",
			"/usr/bin/apt-get", "install", "-y", "--allow-downgrades", "-o", "Dpkg::Options::=--force-confold", "tandem={version}"},
		Timeout: Duration(10 * time.Minute),
	}
}

func (c *Config) upgradeProblems() []string {
	var p []string
	if len(c.Upgrade.Command) > 0 && !filepath.IsAbs(c.Upgrade.Command[0]) {
		p = append(p, fmt.Sprintf("upgrade.command: the program %q must be an absolute path", c.Upgrade.Command[0]))
	}
	if c.Upgrade.Timeout <= 0 {
		p = append(p, "upgrade.timeout must be positive")
	}
	return p
}

// UpgradeArgv is the command for version v: {version} replaced in every
// argument. v must match VersionRE.
func (u Upgrade) UpgradeArgv(v string) []string {
	out := make([]string, len(u.Command))
	for i, a := range u.Command {
		out[i] = strings.ReplaceAll(a, "{version}", v)
	}
	return out
}
