//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/packet"
	"golang.org/x/sys/unix"

	"github.com/tandem-ha/tandem/internal/api"
)

// Helpers that look at a lab's network from outside, as an operator with
// root on the machine would: `ip` in the hosts' namespaces, sockets opened
// inside a host's namespace, and the node API called from the client.

// inNetns runs fn on an OS thread that has entered the network namespace
// ns (a file under /run/netns), then takes the thread back to its own
// namespace. That matters: were it the main thread, this test process
// would count as a lab process, and `lab down` would stop it. A thread
// that cannot go back stays locked and is discarded. Sockets fn opens
// stay in ns for life.
func inNetns(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		home, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer home.Close()
		f, err := os.Open(filepath.Join("/run/netns", ns))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		err = unix.Setns(int(f.Fd()), unix.CLONE_NEWNET)
		f.Close()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		err = fn()
		if unix.Setns(int(home.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// netnsOf is the namespace of a lab host.
func (l *testLab) netnsOf(host string) string { return l.name + "-" + host }

// dialFrom opens a TCP connection to addr (ip:port) from a lab host.
func (l *testLab) dialFrom(host, addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := inNetns(l.netnsOf(host), func() error {
		var err error
		c, err = net.DialTimeout("tcp", addr, timeout)
		return err
	})
	return c, err
}

// reaches tells whether host can open a TCP connection to addr within timeout.
func (l *testLab) reaches(host, addr string, timeout time.Duration) error {
	c, err := l.dialFrom(host, addr, timeout)
	if err == nil {
		c.Close()
	}
	return err
}

// ipJSON runs `ip -j args…` in a host's namespace and decodes its output.
func (l *testLab) ipJSON(host string, v any, args ...string) {
	l.t.Helper()
	out, err := exec.Command("ip", append([]string{"-n", l.netnsOf(host), "-j"}, args...)...).Output()
	if err != nil {
		l.t.Fatalf("ip -n %s -j %v: %v", l.netnsOf(host), args, err)
	}
	if len(bytes.TrimSpace(out)) == 0 {
		out = []byte("[]")
	}
	if err := json.Unmarshal(out, v); err != nil {
		l.t.Fatalf("ip -n %s -j %v: %v\n%s", l.netnsOf(host), args, err, out)
	}
}

// ipRun runs `ip -n <host ns> args…` and fails the test if it fails.
func (l *testLab) ipRun(host string, args ...string) {
	l.t.Helper()
	if out, err := exec.Command("ip", append([]string{"-n", l.netnsOf(host)}, args...)...).CombinedOutput(); err != nil {
		l.t.Fatalf("ip -n %s %s: %v\n%s", l.netnsOf(host), strings.Join(args, " "), err, out)
	}
}

// addrsOf lists the addresses on a host's eth0.
func (l *testLab) addrsOf(host string) []string {
	l.t.Helper()
	var links []struct {
		AddrInfo []struct {
			Local string `json:"local"`
		} `json:"addr_info"`
	}
	l.ipJSON(host, &links, "addr", "show", "dev", "eth0")
	var out []string
	for _, k := range links {
		for _, a := range k.AddrInfo {
			out = append(out, a.Local)
		}
	}
	return out
}

func (l *testLab) hasAddr(host, ip string) bool {
	return slices.Contains(l.addrsOf(host), ip)
}

// neighOf is a host's neighbour entry for ip: its MAC and state ("" when
// there is none).
func (l *testLab) neighOf(host, ip string) (mac string, state []string) {
	l.t.Helper()
	var ents []struct {
		Dst    string   `json:"dst"`
		LLAddr string   `json:"lladdr"`
		State  []string `json:"state"`
	}
	l.ipJSON(host, &ents, "neigh", "show", ip, "dev", "eth0")
	for _, e := range ents {
		if e.Dst == ip {
			return e.LLAddr, e.State
		}
	}
	return "", nil
}

// macOf is a lab host's MAC address, from `lab env`.
func (e labEnv) macOf(host string) string {
	for _, h := range e.Hosts {
		if h.Name == host {
			return h.MAC
		}
	}
	return ""
}

// nodeIP is a node's IP, from `lab env`.
func (e labEnv) nodeIP(node string) string {
	for _, n := range e.Nodes {
		if n.Name == node {
			return n.IP
		}
	}
	return ""
}

func (e labEnv) pgPassword(node string) string {
	for _, n := range e.Nodes {
		if n.Name == node {
			return n.PostgresPassword
		}
	}
	return ""
}

func (e labEnv) token(node string) string {
	for _, n := range e.Nodes {
		if n.Name == node {
			return n.Token
		}
	}
	return ""
}

// fingerprint is a node's certificate fingerprint (sha256 of its DER), read
// from the node's state dir: the way an operator would check it by hand.
func (l *testLab) fingerprint(node string) string {
	l.t.Helper()
	b, err := os.ReadFile(filepath.Join(labBase, l.name, node, "state", "node.crt"))
	if err != nil {
		l.t.Fatalf("certificate of node %s: %v", node, err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		l.t.Fatalf("certificate of node %s: no PEM block", node)
	}
	sum := sha256.Sum256(blk.Bytes)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// apiError is a node API error as the client saw it (no answer at all is
// one too: status 503, the cause in Err).
type apiError = api.Error

// call makes a node API call from the client host: method on
// https://ip:7400/path with node's admin token, in encoded as the body,
// the answer decoded into out. The server's certificate must be one of the
// lab's two nodes' (the cluster IP is answered by either).
func (l *testLab) call(e labEnv, ip, node, method, path string, in, out any, timeout time.Duration) error {
	l.t.Helper()
	c := api.NewClient(api.ClientConfig{
		Addr:        net.JoinHostPort(ip, "7400"),
		Token:       e.token(node),
		Fingerprint: l.fingerprint("a"),
		AlsoAccept:  []string{l.fingerprint("b")},
		// Bounded by the call's timeout alone, netem delays included.
		DialTimeout:      timeout,
		HandshakeTimeout: timeout,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := inNetns(l.netnsOf("client"), func() error {
				var d net.Dialer
				var err error
				c, err = d.DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
	})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return c.Do(ctx, method, path, in, out)
}

// view is GET /v1/cluster on a node, by its node IP.
func (l *testLab) view(e labEnv, node string) api.ClusterView {
	l.t.Helper()
	var v api.ClusterView
	if err := l.call(e, e.nodeIP(node), node, http.MethodGet, "/v1/cluster", nil, &v, 10*time.Second); err != nil {
		l.t.Fatalf("GET /v1/cluster on %s: %v", node, err)
	}
	return v
}

// nodeInfo is GET /v1/node on a node, by its node IP.
func (l *testLab) nodeInfo(e labEnv, node string) api.NodeInfo {
	l.t.Helper()
	var v api.NodeInfo
	if err := l.call(e, e.nodeIP(node), node, http.MethodGet, "/v1/node", nil, &v, 10*time.Second); err != nil {
		l.t.Fatalf("GET /v1/node on %s: %v", node, err)
	}
	return v
}

// assembleRequest is the request that makes a the primary and b its
// secondary, with the lab's cluster IP and DNS name unless changed.
func (l *testLab) assembleRequest(e labEnv) api.AssembleRequest {
	return api.AssembleRequest{
		ClusterIP: e.ClusterPrefix,
		DNSName:   e.DNSName,
		Secondary: api.PeerRef{
			Address:     net.JoinHostPort(e.nodeIP("b"), "7400"),
			Token:       e.token("b"),
			Fingerprint: l.fingerprint("b"),
		},
	}
}

// assembleAPI sends POST /v1/cluster/assemble to a from the client.
func (l *testLab) assembleAPI(e labEnv, req api.AssembleRequest) (api.AssembleResult, error) {
	var res api.AssembleResult
	err := l.call(e, e.nodeIP("a"), "a", http.MethodPost, "/v1/cluster/assemble", req, &res, 3*time.Minute)
	return res, err
}

// assemble makes the lab a cluster (a primary, b secondary, the lab's
// cluster IP and DNS name) with `tandem assemble` from the client, the
// nodes' certificates pinned by their fingerprints, and fails the test if
// the assembly fails.
func assemble(t *testing.T, l *testLab, e labEnv) {
	t.Helper()
	start := time.Now()
	env := []string{
		"TANDEM_PRIMARY_TOKEN=" + e.token("a"),
		"TANDEM_SECONDARY_TOKEN=" + e.token("b"),
		"XDG_CACHE_HOME=" + t.TempDir(),
	}
	out, errOut, err := l.execErr("client", env, filepath.Join(l.bin, "tandem"), "assemble", "--yes",
		"--primary", "a."+e.Domain, "--secondary", "b."+e.Domain,
		"--primary-fingerprint", l.fingerprint("a"), "--secondary-fingerprint", l.fingerprint("b"),
		"--cluster-ip", e.ClusterPrefix, "--dns-name", e.DNSName, "-o", "json")
	if err != nil {
		t.Fatalf("tandem assemble: %v\nstdout:\n%s\nstderr:\n%s", err, out, errOut)
	}
	t.Logf("assembled with `tandem assemble` in %s", time.Since(start).Round(time.Millisecond))
}

// preflight is POST /v1/preflight on node (by its node IP) about the other
// node, with the given cluster IP; the checks by ID.
func (l *testLab) preflight(e labEnv, node, clusterIP string) (map[string]checkResult, api.PreflightResult) {
	l.t.Helper()
	peer := "b"
	if node == "b" {
		peer = "a"
	}
	req := api.PreflightRequest{
		Peer:      api.Member{Name: peer, IP: e.nodeIP(peer), APIPort: 7400, PGPort: 5432},
		ClusterIP: clusterIP,
		DNSName:   e.DNSName,
	}
	var res api.PreflightResult
	if err := l.call(e, e.nodeIP(node), node, http.MethodPost, "/v1/preflight", req, &res, time.Minute); err != nil {
		l.t.Fatalf("POST /v1/preflight on %s: %v", node, err)
	}
	byID := map[string]checkResult{}
	for _, c := range res.Checks {
		byID[c.ID] = checkResult{Status: c.Status, Detail: c.Detail, Fix: c.Fix}
	}
	return byID, res
}

type checkResult struct{ Status, Detail, Fix string }

// problems lists the IDs of the checks that found a problem.
func problems(res api.PreflightResult) []string {
	var out []string
	for _, c := range res.Checks {
		if c.Status == "problem" {
			out = append(out, c.ID)
		}
	}
	return out
}

// pgQuery runs one SQL statement with psql from a lab host against
// target (an address or name), as the lab's superuser with the primary's
// password.
func (l *testLab) pgQuery(e labEnv, from, target, sql string) (string, error) {
	return l.pgQueryAs(e, e.Postgres.Password, from, target, sql)
}

// pgQueryAs is pgQuery with a given password (a node's own, before assembly).
func (l *testLab) pgQueryAs(e labEnv, password, from, target, sql string) (string, error) {
	out, errOut, err := l.execErr(from, []string{"PGPASSWORD=" + password, "PGCONNECT_TIMEOUT=5"},
		"psql", "-h", target, "-p", strconv.Itoa(e.Postgres.Port), "-U", e.Postgres.User, "-d", "postgres", "-XAtc", sql)
	if err != nil {
		return "", fmt.Errorf("psql -h %s: %v: %s", target, err, strings.TrimSpace(errOut))
	}
	return strings.TrimSpace(out), nil
}

// labCommand runs `tandem lab VERB --name <lab> args…` and fails the test
// if it fails.
func (l *testLab) labCommand(verb string, args ...string) string {
	l.t.Helper()
	out, errOut, err := l.tandem(nil, 3*time.Minute, append([]string{"lab", verb, "--name", l.name}, args...)...)
	if err != nil {
		l.t.Fatalf("tandem lab %s %s: %v\nstdout:\n%s\nstderr:\n%s", verb, strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// sendGARP announces ip from a lab host's eth0 the way tandemd does:
// count gratuitous ARPs (request form, sender = target = ip) every gap.
// It stands in for tandemd until switchover moves the address itself.
func (l *testLab) sendGARP(host string, ip netip.Addr, count int, gap time.Duration) error {
	return inNetns(l.netnsOf(host), func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		c, err := packet.Listen(ifi, packet.Raw, int(ethernet.EtherTypeARP), nil)
		if err != nil {
			return err
		}
		defer c.Close()
		p, err := arp.NewPacket(arp.OperationRequest, ifi.HardwareAddr, ip, net.HardwareAddr{0, 0, 0, 0, 0, 0}, ip)
		if err != nil {
			return err
		}
		pb, err := p.MarshalBinary()
		if err != nil {
			return err
		}
		fb, err := (&ethernet.Frame{Destination: ethernet.Broadcast, Source: ifi.HardwareAddr, EtherType: ethernet.EtherTypeARP, Payload: pb}).MarshalBinary()
		if err != nil {
			return err
		}
		for i := 0; i < count; i++ {
			if i > 0 {
				time.Sleep(gap)
			}
			if _, err := c.WriteTo(fb, &packet.Addr{HardwareAddr: ethernet.Broadcast}); err != nil {
				return err
			}
		}
		return nil
	})
}
