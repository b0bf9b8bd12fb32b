// Package quorumspec checks the quorum a console proposes (the three
// embedded members, or an external etcd) and turns it into an etcd
// member's configuration. It is shared by tandemd's nodes and the witness,
// and links neither PostgreSQL nor netlink, so the witness program stays
// small.
package quorumspec

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"

	"github.com/tandem-ha/tandem/internal/api"
	"github.com/tandem-ha/tandem/internal/config"
	"github.com/tandem-ha/tandem/internal/identity"
	"github.com/tandem-ha/tandem/internal/quorum"
	"github.com/tandem-ha/tandem/internal/valid"
)

var quorumTokenRE = valid.Bounded(`^[A-Za-z0-9-]+$`, 16, 128)
var quorumPrefixRE = valid.Bounded(`^/[A-Za-z0-9/_.-]+$`, 2, 201)

// Check checks a quorum as the console proposes it: three
// members with distinct names and addresses, each certificate readable and
// matching its fingerprint, and self among them. The problems are listed
// at once, each naming the member. An external etcd's spec has endpoints
// and a prefix instead (checkExternalSpec).
func Check(q api.QuorumSpec, self string) error {
	if q.External() {
		return checkExternalSpec(q)
	}
	var errs []error
	if !quorumTokenRE.MatchString(q.Token) {
		errs = append(errs, errors.New("quorum token must be 16-128 letters, digits or '-'"))
	}
	if !quorumPrefixRE.MatchString(q.Prefix) {
		errs = append(errs, fmt.Errorf("quorum prefix %q must start with / and hold only letters, digits and /_.-", q.Prefix))
	}
	if len(q.Members) != 3 {
		errs = append(errs, fmt.Errorf("a quorum has exactly three members (two nodes and the witness), not %d", len(q.Members)))
	}
	names, addrs := map[string]bool{}, map[string]bool{}
	found := false
	for _, m := range q.Members {
		if !valid.Label(m.Name, true) {
			errs = append(errs, fmt.Errorf("quorum member name %q must be a node name (lowercase letters, digits, '-')", m.Name))
		}
		if names[m.Name] {
			errs = append(errs, fmt.Errorf("quorum member %q is named twice", m.Name))
		}
		names[m.Name] = true
		found = found || m.Name == self
		for _, a := range []string{m.PeerAddr, m.ClientAddr} {
			if _, _, err := net.SplitHostPort(a); err != nil {
				errs = append(errs, fmt.Errorf("quorum member %s: address %q must be host:port", m.Name, a))
			} else if addrs[a] {
				errs = append(errs, fmt.Errorf("quorum member %s: address %s is used twice", m.Name, a))
			}
			addrs[a] = true
		}
		if fp, err := pemFingerprint(m.CertPEM); err != nil {
			errs = append(errs, fmt.Errorf("quorum member %s: %w", m.Name, err))
		} else if fp != m.Fingerprint {
			errs = append(errs, fmt.Errorf("quorum member %s: its certificate's fingerprint is %s, not the pinned %s", m.Name, fp, m.Fingerprint))
		}
	}
	if !found {
		errs = append(errs, fmt.Errorf("the quorum does not name this node (%s) as a member", self))
	}
	return errors.Join(errs...)
}

// maxEtcdEndpoints bounds --etcd: etcd clusters have an odd number of
// members, rarely more than 7.
const maxEtcdEndpoints = 9

// checkExternalSpec checks the quorum of an external etcd: the key prefix
// and the endpoints, each an https URL of a host and port (tandemd talks
// TLS to it, verified with quorum.etcd.ca_file), none twice.
func checkExternalSpec(q api.QuorumSpec) error {
	var errs []error
	if !quorumPrefixRE.MatchString(q.Prefix) {
		errs = append(errs, fmt.Errorf("quorum prefix %q must start with / and hold only letters, digits and /_.-", q.Prefix))
	}
	if len(q.Members) > 0 || q.Token != "" {
		errs = append(errs, errors.New("a quorum is either embedded (members and a token) or an external etcd (endpoints), not both"))
	}
	if len(q.Etcd) > maxEtcdEndpoints {
		errs = append(errs, fmt.Errorf("%d etcd endpoints: give at most %d (one per etcd member)", len(q.Etcd), maxEtcdEndpoints))
	}
	seen := map[string]bool{}
	for _, e := range q.Etcd {
		if err := checkEtcdEndpoint(e); err != nil {
			errs = append(errs, err)
		}
		if seen[e] {
			errs = append(errs, fmt.Errorf("etcd endpoint %s is given twice", e))
		}
		seen[e] = true
	}
	return errors.Join(errs...)
}

// checkEtcdEndpoint checks one --etcd URL: https://HOST:PORT and nothing
// more (no path, user or query: etcd's client takes none).
func checkEtcdEndpoint(e string) error {
	u, err := url.Parse(e)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("etcd endpoint %q must be an https URL of a host and port, such as https://etcd1.example.net:2379 (tandemd reaches etcd over TLS only)", e)
	}
	if _, port, err := net.SplitHostPort(u.Host); err != nil || port == "" {
		return fmt.Errorf("etcd endpoint %q has no port: give it, such as https://%s:2379", e, u.Host)
	}
	return nil
}

func pemFingerprint(certPEM string) (string, error) {
	b, rest := pem.Decode([]byte(certPEM))
	if b == nil || b.Type != "CERTIFICATE" {
		return "", errors.New("no PEM certificate")
	}
	// Exactly one: every certificate a member's PEM holds is trusted by
	// the others, and only this one is pinned by its fingerprint.
	if more, _ := pem.Decode(rest); more != nil {
		return "", errors.New("more than one PEM block: a member's certificate is one certificate")
	}
	if _, err := x509.ParseCertificate(b.Bytes); err != nil {
		return "", fmt.Errorf("unreadable certificate: %w", err)
	}
	return identity.Fingerprint(b.Bytes), nil
}

// MemberConfig turns a checked quorum spec into the etcd member config of
// member self, whose data lives in dir; certPEM and keyPEM are its own
// (the node certificate).
func MemberConfig(q api.QuorumSpec, self, dir string, certPEM, keyPEM []byte) (quorum.MemberConfig, error) {
	c := quorum.MemberConfig{Name: self, Dir: dir, Token: q.Token, Peers: map[string]string{}, ClientAddrs: map[string]string{}, CertPEM: certPEM, KeyPEM: keyPEM}
	for _, m := range q.Members {
		c.Peers[m.Name] = m.PeerAddr
		c.ClientAddrs[m.Name] = m.ClientAddr
		c.TrustedPEM = append(c.TrustedPEM, []byte(m.CertPEM))
		if m.Name == self {
			c.PeerAddr, c.ClientAddr = m.PeerAddr, m.ClientAddr
		}
	}
	if c.PeerAddr == "" {
		return quorum.MemberConfig{}, fmt.Errorf("the quorum does not name %s", self)
	}
	return c, nil
}

// Endpoints are the members' client URLs.
func Endpoints(q api.QuorumSpec) []string {
	var out []string
	for _, m := range q.Members {
		out = append(out, "https://"+m.ClientAddr)
	}
	return out
}

// Self is this machine's quorum member entry: node.ip and the quorum
// ports, and the member certificate with its fingerprint.
func Self(cfg config.Config, certPEM []byte, fp string) api.QuorumMember {
	return api.QuorumMember{
		Name:        cfg.Node.Name,
		PeerAddr:    joinHostPort(cfg.Node.IP, cfg.Quorum.PeerPort),
		ClientAddr:  joinHostPort(cfg.Node.IP, cfg.Quorum.ClientPort),
		CertPEM:     string(certPEM),
		Fingerprint: fp,
	}
}

func joinHostPort(ip string, port int) string {
	return net.JoinHostPort(ip, strconv.Itoa(port))
}
