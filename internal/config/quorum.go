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
}

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
