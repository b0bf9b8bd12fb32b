package lab

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tandem-ha/tandem/internal/config"
)

// Files tandemd writes to its state dir on first start.
const (
	TokenFile            = "admin-token"
	CertFile             = "node.crt"
	PostgresPasswordFile = "postgres-password"
)

// labStopTimeout bounds each shutdown stage of PostgreSQL in the lab, so
// that `lab down` never waits long for a node.
const labStopTimeout = 10 * time.Second

// NodeConfig is tandemd's configuration for one lab node.
func (l *Layout) NodeConfig(h Host) config.Config {
	c := config.Defaults()
	c.Node.Name = h.Name
	c.Node.IP = h.IP
	// All addresses, so that the node also answers on the cluster IP once
	// it holds it; the namespace has no other addresses to expose.
	c.API.Listen = net.JoinHostPort("", strconv.Itoa(APIPort))
	c.Postgres.DataDir = l.DataDir(h.Name)
	c.Postgres.Port = PostgresPort
	c.Postgres.OSUser = PostgresUser
	c.Postgres.SocketDir = l.SocketDir(h.Name)
	// The namespace holds only this node's addresses.
	c.Postgres.ListenAddresses = "*"
	// The lab's client (where psql, the tests' writer and sampler run)
	// logs in as the superuser over TCP; nothing else may.
	for _, o := range l.Hosts {
		if o.Role == RoleClient {
			c.Postgres.SuperuserAllow = append(c.Postgres.SuperuserAllow, o.IP)
		}
	}
	c.Postgres.StopTimeout = config.Duration(labStopTimeout)
	c.StateDir = l.StateDir(h.Name)
	c.Log.Level = "info"
	// The watchdog (watchdog.go): in automatic mode the node's stand-in,
	// required, so that a lab primary never runs unguarded; in manual mode
	// off (tandemd would not use it), and never the host's /dev/watchdog,
	// which would reset the machine the lab runs on.
	c.Watchdog.Device = l.WatchdogPath(h.Name)
	c.Watchdog.Mode = "off"
	if l.Automatic() {
		c.Watchdog.Mode = "required"
	}
	if l.ExternalEtcd {
		c.Quorum.Etcd = config.EtcdTLS{CAFile: l.EtcdCAPath(), CertFile: l.EtcdCertPath(h.Name), KeyFile: l.EtcdKeyPath(h.Name)}
	}
	if l.CrossSubnet {
		// The cluster's endpoint is its DNS name: each node points it at
		// itself through the lab's BIND with the key the lab made. The key
		// file is a key statement, which names the key and its algorithm.
		c.DNSUpdate.Server = l.DNSServer
		c.DNSUpdate.Zone = l.Domain
		c.DNSUpdate.SecretFile = l.DNSKeyPath(h.Name)
	}
	return c
}

// NodeConfigYAML renders NodeConfig as the file tandemd reads.
func (l *Layout) NodeConfigYAML(h Host) string {
	c := l.NodeConfig(h)
	return fmt.Sprintf("# tandemd configuration of node %s in tandem lab %s; written by `tandem lab up`.\n%s", h.Name, l.Name, c.FileYAML())
}

// WitnessConfig is the part of tandemd's configuration file that
// the witness reads. It is a type of its own, not config.Config,
// so that the witness's file holds no postgres section (and no settings it
// would ignore) and says, in a few lines, all that the witness is.
type WitnessConfig struct {
	Node     config.Node   `yaml:"node"`
	API      config.API    `yaml:"api"`
	StateDir string        `yaml:"state_dir"`
	Quorum   WitnessQuorum `yaml:"quorum"`
	Log      config.Log    `yaml:"log"`
}

// WitnessQuorum is where the witness's etcd member listens, on node.ip.
type WitnessQuorum struct {
	PeerPort   int `yaml:"peer_port"`
	ClientPort int `yaml:"client_port"`
}

// WitnessConfig is the configuration of the lab's witness host h. The API
// listens on the witness's own address only: unlike a node it never holds
// the cluster IP.
func (l *Layout) WitnessConfig(h Host) WitnessConfig {
	return WitnessConfig{
		Node:     config.Node{Name: h.Name, IP: h.IP},
		API:      config.API{Listen: net.JoinHostPort(h.IP, strconv.Itoa(APIPort))},
		StateDir: l.StateDir(h.Name),
		Quorum:   WitnessQuorum{PeerPort: QuorumPeerPort, ClientPort: QuorumClientPort},
		Log:      config.Log{Level: "info", Format: "text"},
	}
}

// WitnessConfigYAML renders WitnessConfig as the file the witness reads.
func (l *Layout) WitnessConfigYAML(h Host) string {
	b, err := yaml.Marshal(l.WitnessConfig(h))
	if err != nil {
		panic(err) // plain strings and ints: cannot fail
	}
	return fmt.Sprintf("# witness configuration (tandem-witness) of host %s in tandem lab %s; written by `tandem lab up --failover automatic`.\n%s", h.Name, l.Name, b)
}

// ConfigYAML is the configuration file of a host that runs tandemd.
func (l *Layout) ConfigYAML(h Host) string {
	if h.Role == RoleWitness {
		return l.WitnessConfigYAML(h)
	}
	return l.NodeConfigYAML(h)
}

// WitnessProgram is the witness's own executable, looked for beside
// tandemd: it links no PostgreSQL driver nor netlink, so it maps less
// memory than `tandemd --witness`, which runs the same code.
const WitnessProgram = "tandem-witness"

// DaemonCommand is the executable and its arguments on host h, given the
// lab's tandemd: the same configuration file on every start; on the
// witness, tandem-witness from tandemd's directory, or `tandemd --witness`
// when that directory has none (a tandemd built alone).
func (l *Layout) DaemonCommand(h Host, tandemd string) (string, []string) {
	cfg := []string{"--config", l.ConfigPath(h.Name)}
	if h.Role != RoleWitness {
		return tandemd, cfg
	}
	if w := filepath.Join(filepath.Dir(tandemd), WitnessProgram); isExecutable(w) {
		return w, cfg
	}
	return tandemd, append([]string{"--witness"}, cfg...)
}

// APIURL is the node API's address.
func APIURL(h Host) string {
	return "https://" + net.JoinHostPort(h.IP, strconv.Itoa(APIPort))
}

// readSecret reads a one-line secret tandemd left in a node's state dir;
// "" when it is not there yet.
func readSecret(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func (l *Layout) secret(node, file string) string {
	return readSecret(filepath.Join(l.StateDir(node), file))
}
