package config

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/tandem-ha/tandem/internal/dnsupdate"
)

// DNSUpdate says how this node points the cluster DNS name at itself when
// it becomes primary in a cluster assembled with --endpoint dns (nodes in
// different subnets, no cluster IP): an RFC 2136 update signed with TSIG,
// sent to the zone's primary server (internal/dnsupdate). All empty: this
// node cannot serve such a cluster, and assembly says so.
type DNSUpdate struct {
	// Server is the zone's primary server, an IP address with an optional
	// port: never a host name, which would need DNS during a failover.
	Server string `yaml:"server"`
	// Zone holds the cluster DNS name ("example.test" for db.example.test).
	Zone string `yaml:"zone"`
	// KeyName and Algorithm may be left empty when SecretFile is a BIND key
	// statement, which names both.
	KeyName   string `yaml:"key_name"`
	Algorithm string `yaml:"algorithm"`
	// SecretFile holds the TSIG secret (base64) or a BIND key statement,
	// readable by root only.
	SecretFile string `yaml:"secret_file"`
	// TTL of the record written: short, so that resolvers ask again soon
	// after the primary changes.
	TTL Duration `yaml:"ttl"`
}

func defaultDNSUpdate() DNSUpdate {
	return DNSUpdate{TTL: Duration(dnsupdate.DefaultTTL)}
}

// Configured says whether any dns_update setting names a server, zone or
// key: the TTL alone, which has a default, does not count.
func (d DNSUpdate) Configured() bool {
	return d.Server != "" || d.Zone != "" || d.KeyName != "" || d.Algorithm != "" || d.SecretFile != ""
}

// Updater is the dnsupdate configuration these settings name.
func (d DNSUpdate) Updater() dnsupdate.Config {
	return dnsupdate.Config{
		Zone: d.Zone, Server: d.Server, KeyName: d.KeyName, Algorithm: d.Algorithm,
		SecretFile: d.SecretFile, TTL: d.TTL.D(),
	}
}

func (c *Config) dnsUpdateProblems(garbled map[string]bool) []string {
	d := c.DNSUpdate
	var p []string
	ttl := d.TTL.D()
	if ttl < time.Second || ttl%time.Second != 0 || ttl > time.Hour {
		p = append(p, fmt.Sprintf("dns_update.ttl %s must be a whole number of seconds from 1s to 1h (a few seconds, so that clients follow a failover soon)", ttl))
	}
	if !d.Configured() {
		return p
	}
	for _, k := range []string{"dns_update.server", "dns_update.zone", "dns_update.key_name", "dns_update.algorithm", "dns_update.secret_file"} {
		if garbled[k] {
			return p
		}
	}
	if d.Server == "" {
		p = append(p, "dns_update.server is required with the other dns_update settings: the zone's primary server, an IP address (192.0.2.53 or 192.0.2.53:5353)")
	}
	if d.Zone == "" {
		p = append(p, "dns_update.zone is required with the other dns_update settings: the zone holding the cluster DNS name, such as example.test")
	}
	if d.SecretFile == "" {
		p = append(p, "dns_update.secret_file is required with the other dns_update settings: the file holding the TSIG key's secret")
	} else if !filepath.IsAbs(d.SecretFile) {
		p = append(p, fmt.Sprintf("dns_update.secret_file %q must be an absolute path", d.SecretFile))
	}
	if d.Server == "" || d.Zone == "" || d.SecretFile == "" {
		return p
	}
	cfg := d.Updater()
	cfg.TTL = 0 // judged above, with the setting's own name
	if err := cfg.Validate(); err != nil {
		// One problem a line, as every other setting's.
		for _, line := range strings.Split(err.Error(), "\n") {
			p = append(p, "dns_update: "+line)
		}
	}
	return p
}
