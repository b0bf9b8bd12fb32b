package lab

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The external etcd of a lab built with `lab up --failover automatic
// --etcd-external`: the shape of a site that already runs etcd. Three
// hosts, e1 to e3, each run one member of Debian's etcd (etcd-server),
// with TLS as a site would set it up: one CA of the lab's signs every
// member's certificate and each node's client certificate; members and
// clients must present one (--client-cert-auth, --peer-client-cert-auth).
// The nodes' tandemd reach it with quorum.etcd.* pointing at the node's
// files, and the lab assembles with --etcd.

// EtcdHosts are the external etcd's hosts.
var EtcdHosts = []string{"e1", "e2", "e3"}

// Ports of the external etcd: etcd's own defaults, distinct from the
// embedded members' 7410/7411 so that a reader of the lab's traffic can
// tell the two shapes apart.
const (
	EtcdClientPort = 2379
	EtcdPeerPort   = 2380
)

// EtcdBinary is Debian's etcd server.
const EtcdBinary = "etcd"

// Paths of the external etcd's files: the lab's CA in <lab>/etcd-ca, each
// member's data, certificate, log and pid under its host's directory, and
// each node's client certificate in the node's directory.
func (l *Layout) EtcdCADir() string           { return filepath.Join(l.Dir, "etcd-ca") }
func (l *Layout) EtcdCAPath() string          { return filepath.Join(l.EtcdCADir(), "ca.crt") }
func (l *Layout) etcdCAKeyPath() string       { return filepath.Join(l.EtcdCADir(), "ca.key") }
func (l *Layout) EtcdDataDir(h string) string { return filepath.Join(l.Dir, h, "etcd-data") }
func (l *Layout) EtcdLogPath(h string) string { return filepath.Join(l.Dir, h, "etcd.log") }
func (l *Layout) EtcdPidPath(h string) string { return filepath.Join(l.Dir, h, "etcd.pid") }

// EtcdCertPath and EtcdKeyPath are a member's server certificate on an
// etcd host, a node's client certificate on a node.
func (l *Layout) EtcdCertPath(h string) string { return filepath.Join(l.Dir, h, "etcd.crt") }
func (l *Layout) EtcdKeyPath(h string) string  { return filepath.Join(l.Dir, h, "etcd.key") }

// EtcdMembers are the external etcd's hosts.
func (l *Layout) EtcdMembers() []Host { return l.withRole(RoleEtcd) }

// EtcdEndpoints are the external etcd's client URLs, as --etcd takes them.
func (l *Layout) EtcdEndpoints() []string {
	var out []string
	for _, h := range l.EtcdMembers() {
		out = append(out, "https://"+net.JoinHostPort(h.IP, strconv.Itoa(EtcdClientPort)))
	}
	return out
}

func etcdPeerURL(h Host) string {
	return "https://" + net.JoinHostPort(h.IP, strconv.Itoa(EtcdPeerPort))
}

// EtcdArgs are the command line of h's etcd member. On a restart (power-on)
// the member has its data and etcd ignores the --initial-* flags.
func (l *Layout) EtcdArgs(h Host) []string {
	var initial []string
	for _, m := range l.EtcdMembers() {
		initial = append(initial, m.Name+"="+etcdPeerURL(m))
	}
	client := "https://" + net.JoinHostPort(h.IP, strconv.Itoa(EtcdClientPort))
	ca, cert, key := l.EtcdCAPath(), l.EtcdCertPath(h.Name), l.EtcdKeyPath(h.Name)
	return []string{
		"--name", h.Name,
		"--data-dir", l.EtcdDataDir(h.Name),
		"--listen-peer-urls", etcdPeerURL(h),
		"--initial-advertise-peer-urls", etcdPeerURL(h),
		"--listen-client-urls", client,
		"--advertise-client-urls", client,
		"--initial-cluster", strings.Join(initial, ","),
		"--initial-cluster-state", "new",
		"--initial-cluster-token", "tandem-lab-" + l.Name,
		"--cert-file", cert, "--key-file", key, "--trusted-ca-file", ca, "--client-cert-auth",
		"--peer-cert-file", cert, "--peer-key-file", key, "--peer-trusted-ca-file", ca, "--peer-client-cert-auth",
		"--logger", "zap",
	}
}

// writeEtcdPKI makes the lab's CA, a server (and peer) certificate for
// each etcd member, valid for its address and name, and a client
// certificate for each node, named after it.
func writeEtcdPKI(l *Layout) error {
	if err := os.MkdirAll(l.EtcdCADir(), 0o700); err != nil {
		return err
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "tandem lab " + l.Name + " etcd CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	if err := writePEMPair(l.EtcdCAPath(), l.etcdCAKeyPath(), caDER, caKey); err != nil {
		return err
	}
	issue := func(h Host, serial int64, usage []x509.ExtKeyUsage) error {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: h.Name},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(10 * 365 * 24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  usage,
			DNSNames:     []string{h.FQDN},
			IPAddresses:  []net.IP{net.ParseIP(h.IP)},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(l.NodeDir(h.Name), 0o755); err != nil {
			return err
		}
		return writePEMPair(l.EtcdCertPath(h.Name), l.EtcdKeyPath(h.Name), der, key)
	}
	serial := int64(2)
	for _, h := range l.EtcdMembers() {
		if err := issue(h, serial, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}); err != nil {
			return fmt.Errorf("while making %s's etcd certificate: %w", h.Name, err)
		}
		serial++
	}
	for _, h := range l.Nodes() {
		if err := issue(h, serial, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}); err != nil {
			return fmt.Errorf("while making %s's etcd client certificate: %w", h.Name, err)
		}
		serial++
	}
	return nil
}

func writePEMPair(certPath, keyPath string, der []byte, key *ecdsa.PrivateKey) error {
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return err
	}
	return os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600)
}
