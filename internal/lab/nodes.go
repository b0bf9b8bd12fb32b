package lab

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

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
	return c
}

// NodeConfigYAML renders NodeConfig as the file tandemd reads.
func (l *Layout) NodeConfigYAML(h Host) string {
	c := l.NodeConfig(h)
	return fmt.Sprintf("# tandemd configuration of node %s in tandem lab %s; written by `tandem lab up`.\n%s", h.Name, l.Name, c.FileYAML())
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
