package lab

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"time"
)

// ErrUnsupported is returned on machines that cannot hold a lab.
var ErrUnsupported = errors.New("the lab needs Linux network namespaces: run `tandem lab` on a Linux machine")

// ErrCommandNotFound is returned by Exec, with status 127, when the
// command is not on PATH.
var ErrCommandNotFound = errors.New("command not found")

// CheckHost refuses machines and users that cannot build a lab.
func CheckHost() error {
	if runtime.GOOS != "linux" {
		return fmt.Errorf("%w (this is %s)", ErrUnsupported, runtime.GOOS)
	}
	if os.Geteuid() != 0 {
		return errors.New("the lab creates network namespaces and runs tandemd and PostgreSQL: run it as root (for example with sudo)")
	}
	return nil
}

// UpOptions says what `lab up` builds.
type UpOptions struct {
	Name   string
	Subnet string
	// Tandemd is the tandemd executable; empty means FindTandemd("").
	Tandemd string
	// NoTandemd builds the hosts and DNS only.
	NoTandemd bool
	// IPv6 builds an IPv6 lab; an empty Subnet is then DefaultSubnet6.
	IPv6 bool
	// Timeout bounds the wait for both nodes to answer /health.
	Timeout time.Duration
	// NoAssemble stops before assembling the cluster; Replication is the
	// mode to assemble with (empty: the default, sync).
	NoAssemble  bool
	Replication string
	// Failover is the mode to build for: manual (empty) or automatic, which
	// adds the witness host w and assembles with it.
	Failover string
	// ExternalEtcd (automatic only): hosts e1-e3 run an etcd cluster, the
	// quorum, instead of the witness (etcd.go).
	ExternalEtcd bool
	// CrossSubnet puts a, b and the other hosts in three subnets joined by
	// a router, with BIND 9 as the DNS server (crosssubnet.go). IPv4 only.
	// The cluster is assembled with --endpoint dns: no cluster IP, the
	// primary points the DNS name at itself.
	CrossSubnet bool
}

// DefaultUpTimeout is how long up waits for both nodes (and the witness)
// to become healthy.
const DefaultUpTimeout = 60 * time.Second

// FindTandemd picks the tandemd executable: flag if given, else tandemd
// next to the running executable, else tandemd on PATH.
func FindTandemd(flag string) (string, error) {
	if flag != "" {
		p, err := filepath.Abs(flag)
		if err != nil {
			return "", err
		}
		if !isExecutable(p) {
			return "", fmt.Errorf("--tandemd %s is not an executable file", flag)
		}
		return p, nil
	}
	var looked []string
	if self, err := os.Executable(); err == nil {
		if real, err := filepath.EvalSymlinks(self); err == nil {
			self = real
		}
		p := filepath.Join(filepath.Dir(self), "tandemd")
		if isExecutable(p) {
			return p, nil
		}
		looked = append(looked, p)
	}
	if p, err := exec.LookPath("tandemd"); err == nil {
		return filepath.Abs(p)
	}
	looked = append(looked, "PATH")
	return "", fmt.Errorf("tandemd not found (looked at %v): build it (go build -o DIR ./cmd/tandemd ./cmd/tandem) or pass --tandemd PATH", looked)
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// lookTool finds a system program, also in the sbin directories that a
// non-login root shell may lack on its PATH.
func lookTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
		if p := filepath.Join(d, name); isExecutable(p) {
			return p, nil
		}
	}
	hint := map[string]string{"ip": "iproute2", "dnsmasq": "dnsmasq-base", "etcd": "etcd-server", "named": "bind9"}[name]
	return "", fmt.Errorf("%s not found: install the %s package", name, hint)
}
