//go:build linux

package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tandem-ha/tandem/internal/api"
)

// assemble runs `tandem assemble` on the client host, as an operator
// would: a primary, b secondary, the lab's cluster IP and DNS name; in an
// automatic-mode lab with the witness w as the quorum's third member.
func assemble(ctx context.Context, log *slog.Logger, l *Layout, mode string, out io.Writer) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("while finding this tandem executable to assemble with: %w", err)
	}
	a, _ := l.Host("a")
	b, _ := l.Host("b")
	if err := os.MkdirAll(l.ConsoleDir(), 0o700); err != nil {
		return err
	}
	args := []string{self, "assemble", "--yes", "--trust-new",
		"--primary", a.FQDN, "--secondary", b.FQDN, "--dns-name", l.DNSName}
	if l.CrossSubnet {
		// No cluster IP across subnets: the primary points the DNS name at
		// itself (dns_update.* in NodeConfig).
		args = append(args, "--endpoint", "dns")
	} else {
		args = append(args, "--cluster-ip", l.ClusterPrefix())
	}
	if mode != "" {
		args = append(args, "--replication", mode)
	}
	env := []string{
		"TANDEM_CACHE_DIR=" + l.ConsoleDir(),
		"TANDEM_PRIMARY_TOKEN=" + l.secret("a", TokenFile),
		"TANDEM_SECONDARY_TOKEN=" + l.secret("b", TokenFile),
	}
	if w, ok := l.Witness(); ok {
		// No TANDEM_WITNESS_TOKEN: the console finds the witness's token in
		// its store (keepWitnessToken), as it would after --no-assemble, so
		// every `lab up --failover automatic` proves that path.
		args = append(args, l.witnessAssembleArgs(w)...)
	}
	if l.ExternalEtcd {
		args = append(args, "--failover", "automatic", "--etcd", strings.Join(l.EtcdEndpoints(), ","))
	}
	fmt.Fprintf(out, "lab %s: assembling the cluster from the client: %s\n", l.Name, strings.Join(args[1:], " "))
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code, err := execIn(ctx, log, l, "client", args, env, nil, &stdout, &stderr)
	if err != nil || code != 0 {
		return fmt.Errorf("assembling the lab's cluster failed (exit %d, %v):\n%s%s", code, err, stdout.String(), stderr.String())
	}
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		fmt.Fprintf(out, "  %s\n", line)
	}
	return nil
}

// waitSynchronized returns once the primary a's cluster record, asked from
// the client as the console there would ask it, says synchronized, so that
// `tandem status` right after `lab up` does not show a cluster still
// becoming synchronized.
func waitSynchronized(ctx context.Context, l *Layout, out io.Writer) error {
	a, _ := l.Host("a")
	client, _ := l.Host("client")
	cert, token := filepath.Join(l.StateDir(a.Name), CertFile), l.secret(a.Name, TokenFile)
	view := func(ctx context.Context) (*api.ClusterView, error) {
		body, err := getNode(ctx, client.Netns, a, cert, token, "/v1/cluster")
		if err != nil {
			return nil, err
		}
		var v api.ClusterView
		if err := json.Unmarshal(body, &v); err != nil {
			return nil, fmt.Errorf("GET /v1/cluster: %w", err)
		}
		return &v, nil
	}
	start := time.Now()
	if err := awaitSynchronized(ctx, view, syncTimeout, 200*time.Millisecond); err != nil {
		return fmt.Errorf("lab %s: the cluster is assembled, but on node %s %w; the lab stays up for inspection (`tandem lab down --name %s` removes it)", l.Name, a.Name, err, l.Name)
	}
	fmt.Fprintf(out, "lab %s: cluster synchronized %s after the assembly\n", l.Name, time.Since(start).Round(100*time.Millisecond))
	return nil
}
