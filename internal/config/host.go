package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"strings"
)

// CheckHost checks what a valid configuration needs from this machine
// before tandemd starts on it, for `tandemd --check`: that node.ip is one
// of its addresses and that state_dir exists and is private. Validate
// first; CheckHost returns every problem, as a *Problems.
func (c *Config) CheckHost() error {
	addrs, err := interfaceAddrs()
	if err != nil {
		return fmt.Errorf("while listing this machine's addresses: %w", err)
	}
	var p []string
	if msg := nodeIPProblem(c.Node.IP, addrs); msg != "" {
		p = append(p, msg)
	}
	if msg := stateDirProblem(c.StateDir); msg != "" {
		p = append(p, msg)
	}
	if len(p) > 0 {
		return &Problems{List: p}
	}
	return nil
}

// hostAddr is one address of an interface.
type hostAddr struct {
	iface  string
	prefix netip.Prefix
}

func interfaceAddrs() ([]hostAddr, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var out []hostAddr
	for _, ifc := range ifs {
		as, err := ifc.Addrs()
		if err != nil {
			return nil, fmt.Errorf("interface %s: %w", ifc.Name, err)
		}
		for _, a := range as {
			n, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(n.IP)
			if !ok {
				continue
			}
			ones, _ := n.Mask.Size()
			out = append(out, hostAddr{iface: ifc.Name, prefix: netip.PrefixFrom(ip.Unmap(), ones)})
		}
	}
	return out, nil
}

// nodeIPProblem says why ip is not an address of this machine, or "".
// Replication, the peer's calls and the cluster IP's subnet all hang on
// it: a node IP that is nowhere means a node the other cannot reach.
func nodeIPProblem(ip string, addrs []hostAddr) string {
	want, err := netip.ParseAddr(ip)
	if err != nil {
		return "" // Validate's to report
	}
	var have []string
	for _, a := range addrs {
		if a.prefix.Addr() == want {
			return ""
		}
		if !a.prefix.Addr().IsLoopback() && !a.prefix.Addr().IsLinkLocalUnicast() {
			have = append(have, fmt.Sprintf("%s on %s", a.prefix, a.iface))
		}
	}
	found := "it has no address but loopback and link-local ones"
	if len(have) > 0 {
		found = "it has " + strings.Join(have, ", ")
	}
	return fmt.Sprintf("node.ip %s is on none of this machine's interfaces (%s): set node.ip to this node's static address, or configure that address on its interface first", want, found)
}

// stateDirProblem says what is wrong with the state directory, or "".
// The package creates it; if it is missing, state_dir is mistyped or the
// package's postinst did not run, and a tandemd started so would make a
// new key and token and forget any cluster this node is in.
func stateDirProblem(dir string) string {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Sprintf("state_dir %s does not exist: if this node has run tandemd before, state_dir is wrong (point it at the directory holding its state file, node.crt and admin-token); for a new node create it with `install -d -m 0700 %s` (the package's postinst makes /var/lib/tandem/state)", dir, dir)
	case err != nil:
		return fmt.Sprintf("state_dir %s: %v", dir, err)
	case !fi.IsDir():
		return fmt.Sprintf("state_dir %s is not a directory: point state_dir at a directory (mode 0700)", dir)
	case fi.Mode().Perm()&0o077 != 0:
		return fmt.Sprintf("state_dir %s has mode %04o; it holds the node key and the admin token: chmod 700 %s", dir, fi.Mode().Perm(), dir)
	}
	return ""
}
