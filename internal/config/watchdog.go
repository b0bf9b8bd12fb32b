package config

import (
	"fmt"
	"path/filepath"
)

// Watchdog configures the watchdog device the primary arms in automatic
// failover mode (docs/quorum.md, "Watchdog"). Its timeout is not a
// setting: it follows from the leader lease (watchdog.TimeoutFor).
type Watchdog struct {
	// Mode is off, automatic (use it if it opens, say loudly if not) or
	// required (no primary role in automatic failover mode without it).
	Mode string `yaml:"mode"`
	// Device is the watchdog's path: /dev/watchdog, or in the lab the
	// stand-in's socket.
	Device string `yaml:"device"`
}

func defaultWatchdog() Watchdog {
	return Watchdog{Mode: "automatic", Device: "/dev/watchdog"}
}

func (c *Config) watchdogProblems() []string {
	var p []string
	switch c.Watchdog.Mode {
	case "off", "automatic", "required":
	default:
		p = append(p, fmt.Sprintf("watchdog.mode %q must be off, automatic or required", c.Watchdog.Mode))
	}
	if c.Watchdog.Mode != "off" && !filepath.IsAbs(c.Watchdog.Device) {
		p = append(p, fmt.Sprintf("watchdog.device %q must be an absolute path such as /dev/watchdog", c.Watchdog.Device))
	}
	return p
}
