// Package dnsupdate points a cluster's DNS name at its primary, for a
// cluster whose nodes are in different subnets and so share no cluster IP.
//
// The name is an A/AAAA record with a short TTL in a zone the site already
// runs. The new primary replaces it at switchover and failover with an RFC
// 2136 dynamic update signed with TSIG (RFC 8945), sent to the zone's
// primary server; the old primary removes its own address where it still
// can. CheckKey proves beforehand that the server accepts the key, without
// changing the zone.
package dnsupdate

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Defaults for the zero values of Config.
const (
	// DefaultTTL is short so that clients that resolved the old primary
	// ask again soon after a failover.
	DefaultTTL = 5 * time.Second
	// DefaultTimeout bounds one exchange with the server.
	DefaultTimeout = 2 * time.Second
)

// Config names the zone, its primary server and the key to sign with.
type Config struct {
	// Zone holds the cluster name: "example.test." for db.example.test.
	Zone string
	// Server is the zone's primary server: an IP address, with a port
	// when it is not 53 ("192.0.2.53", "192.0.2.53:5353", "[2001:db8::53]:53").
	Server string
	// KeyName is the TSIG key's name as the server knows it. It may be left
	// empty when SecretFile holds a key statement, which names it.
	KeyName string
	// Algorithm is the key's algorithm as BIND writes it ("hmac-sha256",
	// "hmac-sha512", "hmac-sha1"...). Empty: the secret file's, or
	// DefaultAlgorithm.
	Algorithm string
	// SecretFile holds the key's secret, mode 0600: see ReadKeyFile.
	SecretFile string
	// TTL of the records written, in whole seconds; DefaultTTL when zero.
	TTL time.Duration
	// Timeout bounds one exchange with the server; DefaultTimeout when zero.
	Timeout time.Duration
}

// Validate checks the fields that need no file, and returns every problem.
func (c Config) Validate() error {
	var errs []error
	if _, ok := dns.IsDomainName(c.Zone); !ok || strings.TrimSpace(c.Zone) == "" {
		errs = append(errs, fmt.Errorf("zone %q is not a DNS name", c.Zone))
	}
	if _, err := parseServer(c.Server); err != nil {
		errs = append(errs, fmt.Errorf("zone primary server: %w", err))
	}
	if c.KeyName != "" {
		if _, ok := dns.IsDomainName(c.KeyName); !ok {
			errs = append(errs, fmt.Errorf("TSIG key name %q is not a DNS name", c.KeyName))
		}
	}
	if c.Algorithm != "" {
		if _, err := algorithmName(c.Algorithm); err != nil {
			errs = append(errs, err)
		}
	}
	if c.SecretFile == "" {
		errs = append(errs, errors.New("no TSIG secret file"))
	}
	if c.TTL < 0 || (c.TTL > 0 && c.TTL < time.Second) || c.TTL%time.Second != 0 {
		errs = append(errs, fmt.Errorf("TTL %s is not a whole number of seconds of at least 1s", c.TTL))
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("timeout %s is negative", c.Timeout))
	}
	return errors.Join(errs...)
}

// parseServer turns "ip", "ip:port" or "[ip6]:port" into host:port. A host
// name is refused: resolving it would need DNS in the middle of a failover,
// when DNS may be what is failing.
func parseServer(s string) (string, error) {
	s = strings.TrimSpace(s)
	if ap, err := netip.ParseAddrPort(s); err == nil {
		if ap.Port() == 0 || ap.Addr().IsUnspecified() {
			return "", fmt.Errorf("%q is not a server address and port", s)
		}
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String(), nil
	}
	if a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")); err == nil && !a.IsUnspecified() {
		return netip.AddrPortFrom(a.Unmap(), 53).String(), nil
	}
	return "", fmt.Errorf("%q is not an IP address or IP:port (a host name would need DNS to be found, during a failover too)", s)
}

// Updater sends signed updates for one zone to its primary server.
// It is safe for concurrent use.
type Updater struct {
	zone    string // canonical
	server  string // host:port
	key     signer
	alg     string // wire name
	ttl     uint32
	timeout time.Duration
	now     func() time.Time // the signing time; tests move it
}

// New checks cfg and reads the key's secret.
func New(cfg Config) (*Updater, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	k, err := ReadKeyFile(cfg.SecretFile)
	if err != nil {
		return nil, err
	}
	name, alg, err := reconcileKey(cfg, k)
	if err != nil {
		return nil, err
	}
	server, _ := parseServer(cfg.Server)
	u := &Updater{
		zone:    dns.CanonicalName(cfg.Zone),
		server:  server,
		key:     signer{name: name, secret: k.Secret},
		alg:     alg,
		ttl:     uint32(DefaultTTL / time.Second),
		timeout: DefaultTimeout,
		now:     time.Now,
	}
	if cfg.TTL > 0 {
		u.ttl = uint32(cfg.TTL / time.Second)
	}
	if cfg.Timeout > 0 {
		u.timeout = cfg.Timeout
	}
	return u, nil
}

// reconcileKey settles the key's name and algorithm from the configuration
// and the secret file. Where both name one, they must agree: a mismatch is
// a key the server would refuse, better said now than as BADKEY later.
func reconcileKey(cfg Config, k Key) (name, alg string, err error) {
	name = k.Name
	if cfg.KeyName != "" {
		name = dns.CanonicalName(cfg.KeyName)
		if k.Name != "" && k.Name != name {
			return "", "", fmt.Errorf("TSIG secret file %s holds key %q, but the key name is set to %q", cfg.SecretFile, show(k.Name), show(name))
		}
	}
	if name == "" {
		return "", "", fmt.Errorf("no TSIG key name: TSIG secret file %s holds only a secret, so the key name must be set", cfg.SecretFile)
	}
	alg = k.Algorithm
	if cfg.Algorithm != "" {
		alg, _ = algorithmName(cfg.Algorithm)
		if k.Algorithm != "" && k.Algorithm != alg {
			return "", "", fmt.Errorf("TSIG secret file %s holds a key for %s, but the algorithm is set to %s", cfg.SecretFile, show(k.Algorithm), show(alg))
		}
	}
	if alg == "" {
		alg = dns.CanonicalName(DefaultAlgorithm)
	}
	return name, alg, nil
}

// String names the zone, server and key, never the secret: fmt would
// print the unexported secret's bytes of a struct it cannot call String on.
func (u *Updater) String() string {
	return fmt.Sprintf("updates to %s at %s with TSIG key %s (%s)", show(u.zone), u.server, show(u.key.name), show(u.alg))
}

// Zone is the zone updated, canonical ("example.test.").
func (u *Updater) Zone() string { return u.zone }

// Server is the zone primary's host:port.
func (u *Updater) Server() string { return u.server }
