package config

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Quorum configures this machine's etcd member, used only when the
// cluster's failover mode is automatic (and always on the witness). The
// member listens on node.ip.
type Quorum struct {
	// PeerPort is where the member talks to the other two members.
	PeerPort int `yaml:"peer_port"`
	// ClientPort is where the member serves clients (the nodes' tandemd).
	ClientPort int `yaml:"client_port"`
	// MaxLag: in async mode, a secondary promotes by itself only if it had
	// received all but at most this much of the primary's WAL at the last
	// contact (sync and strict go by the sync record instead).
	MaxLag string `yaml:"max_lag"`
	// Etcd is how this node reaches an external etcd (a cluster assembled
	// with --etcd): the files stay on the node, the console sends only
	// the endpoints and the key prefix.
	Etcd EtcdTLS `yaml:"etcd"`
}

// EtcdTLS are the TLS files for an external etcd: CAFile verifies its
// servers; CertFile and KeyFile are this node's client certificate, for
// an etcd that authenticates clients by certificate (--client-cert-auth).
type EtcdTLS struct {
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Configured says whether any external etcd file is set.
func (e EtcdTLS) Configured() bool { return e.CAFile != "" || e.CertFile != "" || e.KeyFile != "" }

// Default quorum ports: beside the node API's 7400.
const (
	DefaultQuorumPeerPort   = 7410
	DefaultQuorumClientPort = 7411
)

func defaultQuorum() Quorum {
	return Quorum{PeerPort: DefaultQuorumPeerPort, ClientPort: DefaultQuorumClientPort, MaxLag: "1MB"}
}

var sizeRE = regexp.MustCompile(`^([0-9]+)(B|kB|MB|GB)$`)

// MaxLagBytes is quorum.max_lag in bytes (the value is validated).
func (c *Config) MaxLagBytes() int64 {
	n, _ := parseSize(c.Quorum.MaxLag)
	return n
}

func parseSize(s string) (int64, error) {
	m := sizeRE.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return 0, fmt.Errorf("%q is not a size such as 0B, 512kB, 1MB or 1GB", s)
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil || n > 1<<40 {
		return 0, fmt.Errorf("%q is too large", s)
	}
	mult := map[string]int64{"B": 1, "kB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}[m[2]]
	return n * mult, nil
}

func (c *Config) quorumProblems() []string {
	var p []string
	for _, port := range []struct {
		key string
		v   int
	}{{"quorum.peer_port", c.Quorum.PeerPort}, {"quorum.client_port", c.Quorum.ClientPort}} {
		if port.v < 1 || port.v > 65535 {
			p = append(p, fmt.Sprintf("%s %d must be 1-65535", port.key, port.v))
		}
	}
	if c.Quorum.PeerPort == c.Quorum.ClientPort {
		p = append(p, fmt.Sprintf("quorum.peer_port and quorum.client_port are both %d: give them different ports", c.Quorum.PeerPort))
	}
	if api := apiPortOf(c.API.Listen); api != 0 && (api == c.Quorum.PeerPort || api == c.Quorum.ClientPort) {
		p = append(p, fmt.Sprintf("quorum ports %d/%d must differ from the node API's port %d", c.Quorum.PeerPort, c.Quorum.ClientPort, api))
	}
	if _, err := parseSize(c.Quorum.MaxLag); err != nil {
		p = append(p, "quorum.max_lag: "+err.Error())
	}
	return append(p, c.Quorum.Etcd.problems()...)
}

// problems checks the external etcd files: a CA is needed (an etcd reached
// without verifying it could be anyone's), the certificate and key come
// together, each is an absolute path. Whether the files can be read is
// checked when a cluster is assembled with --etcd, and reported then.
func (e EtcdTLS) problems() []string {
	if !e.Configured() {
		return nil
	}
	var p []string
	if e.CAFile == "" {
		p = append(p, "quorum.etcd.ca_file is missing: give the CA certificate that signed the etcd servers' certificates")
	}
	if (e.CertFile == "") != (e.KeyFile == "") {
		p = append(p, "quorum.etcd.cert_file and quorum.etcd.key_file come together: give both (a client certificate and its key) or neither")
	}
	for _, f := range []struct{ key, v string }{{"ca_file", e.CAFile}, {"cert_file", e.CertFile}, {"key_file", e.KeyFile}} {
		if f.v != "" && !strings.HasPrefix(f.v, "/") {
			p = append(p, fmt.Sprintf("quorum.etcd.%s %q must be an absolute path", f.key, f.v))
		}
	}
	return p
}

func apiPortOf(listen string) int {
	i := strings.LastIndex(listen, ":")
	if i < 0 {
		return 0
	}
	n, _ := strconv.Atoi(listen[i+1:])
	return n
}

// ValidateWitness checks a witness's configuration: the same file format
// as a node's, of which the witness uses node.name, node.ip, api.listen,
// state_dir, quorum.* and log.*; it runs no PostgreSQL, so the postgres,
// replication, services and other node sections are not checked.
func (c *Config) ValidateWitness() error {
	p, _ := c.identityProblems()
	p = append(p, c.quorumProblems()...)
	p = append(p, c.logProblems()...)
	if len(p) > 0 {
		return &Problems{List: p}
	}
	return nil
}
