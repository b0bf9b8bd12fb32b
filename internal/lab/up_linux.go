//go:build linux

package lab

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tandem-ha/tandem/internal/tool"
)

// Up builds the lab described by o, after clearing any leftovers of a lab
// with the same name, and returns once both nodes (and in automatic mode
// the witness) answer /health and,
// unless o.NoAssemble, once the cluster is assembled (in sync and strict
// mode: and synchronized). It reports progress to out. On failure the lab is left as it is, for
// inspection; `lab down` removes it.
func Up(ctx context.Context, log *slog.Logger, o UpOptions, out io.Writer) (*Layout, error) {
	if err := CheckHost(); err != nil {
		return nil, err
	}
	subnet := o.Subnet
	if o.IPv6 && o.CrossSubnet {
		return nil, fmt.Errorf("--cross-subnet builds an IPv4 lab only for now: leave out --ipv6")
	}
	if o.IPv6 && subnet == "" {
		subnet = DefaultSubnet6
	}
	l, err := PlanLayout(Spec{Name: o.Name, Subnet: subnet, Failover: o.Failover, ExternalEtcd: o.ExternalEtcd, CrossSubnet: o.CrossSubnet})
	if err != nil {
		return nil, err
	}
	if o.IPv6 && !l.IPv6() {
		return nil, fmt.Errorf("--ipv6 with the IPv4 subnet %s: give an IPv6 --subnet (such as %s) or leave it out", l.Subnet, DefaultSubnet6)
	}
	if _, err := lookTool("ip"); err != nil {
		return nil, err
	}
	if _, err := lookTool(l.DNSProgram()); err != nil {
		return nil, err
	}
	var tandemd string
	if !o.NoTandemd {
		if tandemd, err = FindTandemd(o.Tandemd); err != nil {
			return nil, err
		}
		if _, err := tool.LookupUser(PostgresUser); err != nil {
			return nil, fmt.Errorf("PostgreSQL runs as OS user %q in the lab: %w (install PostgreSQL, which creates it)", PostgresUser, err)
		}
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultUpTimeout
	}

	if err := Down(ctx, log, l.Name); err != nil {
		return nil, fmt.Errorf("while clearing leftovers of lab %s: %w", l.Name, err)
	}
	if err := makeDirs(l); err != nil {
		return nil, err
	}
	l.Tandemd = tandemd
	if err := l.Save(); err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "lab %s: building hosts %v on %s (%s)\n", l.Name, l.HostNames(), l.Subnet, l.Family())
	if err := buildNetwork(ctx, log, l); err != nil {
		return l, err
	}
	if err := writeEtc(l); err != nil {
		return l, err
	}
	if l.CrossSubnet {
		fmt.Fprintf(out, "lab %s: subnets %s joined by router %s\n", l.Name, segmentList(l), l.RouterNetns)
		if err := writeNamedFiles(l); err != nil {
			return l, err
		}
	}
	if err := startDNS(ctx, log, l); err != nil {
		return l, err
	}
	fmt.Fprintf(out, "lab %s: DNS server (%s) answering on %s for %s\n", l.Name, l.DNSProgram(), l.DNSServer, l.Domain)
	if l.CrossSubnet {
		fmt.Fprintf(out, "lab %s: %s takes updates to %s signed with TSIG key %s (%s), in %s\n", l.Name, NamedBinary, l.Domain, l.TSIGKeyName(), TSIGAlgorithm, strings.Join(l.dnsKeyPaths(), " and "))
	}
	if l.ExternalEtcd {
		// The site's etcd is there before tandemd, as it would be.
		if err := startEtcdCluster(ctx, log, l, out); err != nil {
			return l, err
		}
	}
	if o.NoTandemd {
		printSummary(out, l, false, false)
		return l, nil
	}
	if l.Automatic() {
		// The watchdogs before tandemd: a node may take the primary role
		// (and arm its watchdog) as soon as it runs.
		if err := startWatchdogs(log, l); err != nil {
			return l, err
		}
		fmt.Fprintf(out, "lab %s: a watchdog stand-in serves each node (%s); unfed, it powers the node off\n", l.Name, l.WatchdogPath("<node>"))
	}
	pids := map[string]int{}
	for _, h := range l.Daemons() {
		pid, err := startDaemon(log, l, h, tandemd)
		if err != nil {
			return l, err
		}
		pids[h.Name] = pid
	}
	fmt.Fprintf(out, "lab %s: tandemd started on %v; waiting up to %s for /health\n", l.Name, daemonNames(l), o.Timeout)
	client, _ := l.Host("client")
	fromClient := func(Host) string { return client.Netns }
	if err := waitHealthy(ctx, l, l.Daemons(), pids, fromClient, o.Timeout, out); err != nil {
		return l, err
	}
	if w, ok := l.Witness(); ok {
		// Also with --no-assemble: the client's console then has what an
		// operator's would, for `tandem assemble … --witness` by hand.
		if err := l.keepWitnessToken(w); err != nil {
			return l, err
		}
	}
	if !o.NoAssemble {
		if err := assemble(ctx, log, l, o.Replication, out); err != nil {
			return l, err
		}
		if waitsForSync(o.Replication) {
			if err := waitSynchronized(ctx, l, out); err != nil {
				return l, err
			}
		}
	}
	printSummary(out, l, true, !o.NoAssemble)
	return l, nil
}

func segmentList(l *Layout) string {
	var out []string
	for _, s := range l.Segments {
		out = append(out, s.Subnet+" ("+s.Name+")")
	}
	return strings.Join(out, ", ")
}

// dnsKeyPaths are the nodes' copies of the lab's TSIG key.
func (l *Layout) dnsKeyPaths() []string {
	var out []string
	for _, h := range l.Nodes() {
		out = append(out, l.DNSKeyPath(h.Name))
	}
	return out
}

func daemonNames(l *Layout) []string {
	var out []string
	for _, h := range l.Daemons() {
		out = append(out, h.Name)
	}
	return out
}

// makeDirs creates the lab directory. Every directory on the way to a
// node's data and socket dirs is 0755 so the postgres user can traverse
// it; state dirs (the nodes' and the witness's, which hold keys, tokens
// and etcd data) are private to root.
func makeDirs(l *Layout) error {
	pg, err := tool.LookupUser(PostgresUser)
	if err != nil {
		pg = nil // only --no-tandemd labs get here without the user
	}
	mk := func(dir string, mode os.FileMode) error {
		if err := os.MkdirAll(dir, mode); err != nil {
			return fmt.Errorf("while creating %s: %w", dir, err)
		}
		return os.Chmod(dir, mode) // MkdirAll obeys the umask
	}
	for _, d := range []string{BaseDir, l.Dir} {
		if err := mk(d, 0o755); err != nil {
			return err
		}
	}
	for _, h := range l.Daemons() {
		if err := mk(l.NodeDir(h.Name), 0o755); err != nil {
			return err
		}
		if err := mk(l.StateDir(h.Name), 0o700); err != nil {
			return err
		}
	}
	for _, h := range l.Nodes() {
		if err := mk(l.SocketDir(h.Name), 0o755); err != nil {
			return err
		}
		if pg != nil {
			if err := os.Chown(l.SocketDir(h.Name), int(pg.UID), int(pg.GID)); err != nil {
				return fmt.Errorf("while handing %s to %s: %w", l.SocketDir(h.Name), PostgresUser, err)
			}
		}
	}
	return nil
}

// startDNS writes the lab's zone, starts dnsmasq in the dns host and waits
// until the client can resolve a node's name through it.
func startDNS(ctx context.Context, log *slog.Logger, l *Layout) error {
	if err := l.SaveZone(l.DefaultZone()); err != nil {
		return err
	}
	if err := startDNSServer(ctx, log, l); err != nil {
		return err
	}
	client, _ := l.Host("client")
	probe := l.Nodes()[0]
	res := resolverIn(client.Netns, l.DNSServer)
	deadline := time.Now().Add(10 * time.Second)
	for {
		actx, cancel := context.WithTimeout(ctx, time.Second)
		addrs, err := res.LookupHost(actx, probe.FQDN)
		cancel()
		if err == nil && len(addrs) == 1 && addrs[0] == probe.IP {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the lab DNS server at %s did not answer %s with %s within 10s (last: %v %v); see %s", l.DNSServer, probe.FQDN, probe.IP, addrs, err, l.DNSLogPath())
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// startDaemon writes the configuration of a node or the witness and
// starts tandemd in its namespace.
func startDaemon(log *slog.Logger, l *Layout, h Host, tandemd string) (int, error) {
	if err := os.WriteFile(l.ConfigPath(h.Name), []byte(l.ConfigYAML(h)), 0o644); err != nil {
		return 0, fmt.Errorf("while writing the configuration of %s %s: %w", h.Role, h.Name, err)
	}
	return restartDaemon(log, l, h, tandemd)
}

// restartDaemon starts tandemd (or the witness) on h with the
// configuration up wrote.
func restartDaemon(log *slog.Logger, l *Layout, h Host, tandemd string) (int, error) {
	exe, args := l.DaemonCommand(h, tandemd)
	return startDetached(log, h.Netns, l.LogPath(h.Name), l.PidPath(h.Name), exe, args...)
}

// waitHealthy polls the /health of every host in hosts (nodes, the
// witness), each from the namespace from names, until all answer 200, a
// tandemd exits, or timeout passes.
func waitHealthy(ctx context.Context, l *Layout, hosts []Host, pids map[string]int, from func(Host) string, timeout time.Duration, out io.Writer) error {
	start := time.Now()
	deadline := start.Add(timeout)
	healthy := map[string]bool{}
	last := map[string]string{}
	for {
		for _, h := range hosts {
			if healthy[h.Name] {
				continue
			}
			if !alive(pids[h.Name]) {
				return fmt.Errorf("tandemd on %s %s exited; the end of %s:\n%s", h.Role, h.Name, l.LogPath(h.Name), tailFile(l.LogPath(h.Name), 30))
			}
			err := checkHealth(ctx, from(h), h, filepath.Join(l.StateDir(h.Name), CertFile))
			if err == nil {
				healthy[h.Name] = true
				fmt.Fprintf(out, "lab %s: %s %s healthy after %s\n", l.Name, h.Role, h.Name, time.Since(start).Round(100*time.Millisecond))
				continue
			}
			last[h.Name] = err.Error()
		}
		if len(healthy) == len(hosts) {
			return nil
		}
		if time.Now().After(deadline) {
			var b bytes.Buffer
			for _, h := range hosts {
				if !healthy[h.Name] {
					fmt.Fprintf(&b, "\n%s %s: %s; the end of %s:\n%s\n", h.Role, h.Name, last[h.Name], l.LogPath(h.Name), tailFile(l.LogPath(h.Name), 30))
				}
			}
			return fmt.Errorf("not healthy within %s (the lab stays up for inspection; `tandem lab down --name %s` removes it):%s", timeout, l.Name, b.String())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// checkHealth asks one node's /health from namespace ns. The node's
// certificate must be the one tandemd wrote to its state dir.
func checkHealth(ctx context.Context, ns string, h Host, certPath string) error {
	_, err := getNode(ctx, ns, h, certPath, "", "/health")
	return err
}

// getNode sends GET path to node h from namespace ns, with token if not
// empty, and returns the body of a 200 answer. The node's certificate must
// be the one tandemd wrote to certPath, its state dir.
func getNode(ctx context.Context, ns string, h Host, certPath, token, path string) ([]byte, error) {
	want, err := readCert(certPath)
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{
		DialContext: dialerIn(ns),
		TLSClientConfig: &tls.Config{
			// Verified below by pinning, as the console does after first contact.
			InsecureSkipVerify: true,
			VerifyConnection: func(cs tls.ConnectionState) error {
				if len(cs.PeerCertificates) == 0 || !bytes.Equal(cs.PeerCertificates[0].Raw, want.Raw) {
					return errors.New("the node's certificate is not the one in its state dir")
				}
				return nil
			},
		},
		DisableKeepAlives: true,
	}
	defer tr.CloseIdleConnections()
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, APIURL(h)+path, nil)
	if err != nil {
		return nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s %s", path, resp.Status, bytes.TrimSpace(body))
	}
	return body, err
}

func readCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("no certificate yet (%w)", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return x509.ParseCertificate(blk.Bytes)
}

func printSummary(out io.Writer, l *Layout, withNodes, assembled bool) {
	fmt.Fprintf(out, "\nlab %s is up.\n\n", l.Name)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	for _, h := range l.Hosts {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", h.Name, h.IP, h.FQDN)
	}
	if l.CrossSubnet {
		fmt.Fprintf(tw, "  %s\t%s\t%s  (no cluster IP: the primary points the name at its node IP by dynamic DNS)\n", "cluster", "-", l.DNSName)
	} else {
		fmt.Fprintf(tw, "  %s\t%s\t%s  (cluster IP %s, reserved for the primary)\n", "cluster", l.ClusterIP, l.DNSName, l.ClusterPrefix())
	}
	tw.Flush()
	if l.CrossSubnet {
		fmt.Fprintf(out, "\n  subnets %s, joined by router %s (.1 in each)\n", segmentList(l), l.RouterNetns)
		fmt.Fprintf(out, "  DNS: BIND 9 on %s; updates to %s signed with TSIG key %s (%s): %s\n", l.DNSServer, l.Domain, l.TSIGKeyName(), TSIGAlgorithm, strings.Join(l.dnsKeyPaths(), ", "))
	}
	if withNodes {
		fmt.Fprintln(out)
		for _, h := range l.Nodes() {
			fmt.Fprintf(out, "  tandemd on %s: %s  (log %s)\n", h.Name, APIURL(h), l.LogPath(h.Name))
		}
		if w, ok := l.Witness(); ok {
			fmt.Fprintf(out, "  tandem-witness on %s: %s, quorum ports %d and %d  (log %s)\n", w.Name, APIURL(w), QuorumPeerPort, QuorumClientPort, l.LogPath(w.Name))
		}
	}
	flag := ""
	if l.Name != DefaultName {
		flag = " --name " + l.Name
	}
	probe := l.DNSName
	if l.CrossSubnet {
		probe = "a." + l.Domain
		if withNodes && !assembled {
			fmt.Fprintf(out, "\n  not assembled: a cross-subnet cluster has no cluster IP; assemble it with\n  `tandem assemble --endpoint dns --dns-name %s ...`\n", l.DNSName)
		}
	}
	fmt.Fprintf(out, `
Next:
  tandem lab env%[1]s
      addresses, names, API tokens and the PostgreSQL password (--json for scripts)
  tandem lab exec%[1]s client -- getent hosts %[2]s
  tandem lab exec%[1]s client -- bash
      a command, or a shell, on a lab host (%[3]s)
  tandem lab power-off%[1]s b, partition%[1]s a b, heal%[1]s, dns%[1]s …
      faults to see what tandem does (tandem lab --help lists them)%[4]s
  tandem lab down%[1]s
      stop everything and remove the lab
`, flag, probe, strings.Join(l.HostNames(), ", "), witnessHint(l, flag))
}

// witnessHint is the summary's line about the witness's faults, in an
// automatic-mode lab.
func witnessHint(l *Layout, flag string) string {
	w, ok := l.Witness()
	if !ok {
		return ""
	}
	return fmt.Sprintf("\n  tandem lab power-off%[1]s %[2]s, partition%[1]s a %[2]s, pause%[1]s %[2]s …\n      the same faults on the witness, to see what the quorum does", flag, w.Name)
}
