package config

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
)

// Metrics says who may scrape GET /metrics. Unset, anyone who reaches the
// node API's port may (as with most Prometheus exporters): the metrics
// reveal the node's state, not data or secrets, and a scrape costs
// PostgreSQL nothing.
type Metrics struct {
	// TokenFile holds a bearer token scrapes must send
	// ("Authorization: Bearer <token>"; Prometheus: authorization with
	// credentials_file). A secret, so a file, not a setting.
	TokenFile string `yaml:"token_file"`
	// Allow admits only scrapers from these networks (CIDRs, or single
	// addresses).
	Allow []string `yaml:"allow"`
}

// minMetricsToken is the shortest metrics token accepted.
const minMetricsToken = 16

// metricsProblems checks metrics.*.
func (c *Config) metricsProblems() []string {
	var p []string
	if c.Metrics.TokenFile != "" {
		if _, err := ReadMetricsToken(c.Metrics.TokenFile); err != nil {
			p = append(p, "metrics.token_file: "+err.Error())
		}
	}
	for i, a := range c.Metrics.Allow {
		if _, err := parseNetwork(a); err != nil {
			p = append(p, fmt.Sprintf("metrics.allow[%d]: %v", i, err))
		}
	}
	return p
}

// ReadMetricsToken reads and checks the token in path.
func ReadMetricsToken(path string) (string, error) {
	if !filepath.IsAbs(path) {
		return "", fmt.Errorf("%q must be an absolute path", path)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("%v: create it with a random token, for example: (umask 077; openssl rand -hex 32 > %s)", err, path)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a regular file", path)
	}
	if fi.Mode().Perm()&0o027 != 0 {
		return "", fmt.Errorf("%s has mode %#o; it holds a secret: chmod 600 it (or 640 for a group that needs it)", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(b))
	if len(tok) < minMetricsToken {
		return "", fmt.Errorf("the token in %s is shorter than %d characters: use a random one, for example openssl rand -hex 32", path, minMetricsToken)
	}
	for _, r := range tok {
		if r < 0x21 || r > 0x7e {
			return "", fmt.Errorf("the token in %s must be one word of printable ASCII (letters, digits, punctuation)", path)
		}
	}
	return tok, nil
}

// MetricsAllow is metrics.allow, parsed (call after Validate).
func (c *Config) MetricsAllow() []netip.Prefix {
	var out []netip.Prefix
	for _, a := range c.Metrics.Allow {
		if p, err := parseNetwork(a); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// parseNetwork reads a CIDR such as 10.0.0.0/24, or a single address
// (10.0.0.5 is 10.0.0.5/32). A CIDR with host bits set is refused rather
// than guessed at.
func parseNetwork(s string) (netip.Prefix, error) {
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a network such as 10.0.0.0/24 or an address such as 10.0.0.5", s)
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("%q has bits set past its prefix length: write %s (the network) or %s (the address alone)", s, p.Masked(), p.Addr())
	}
	return p, nil
}
