package cluster

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tandem-ha/tandem/internal/api"
	"github.com/tandem-ha/tandem/internal/quorum"
)

// The external shape of the quorum (docs/quorum.md, "An external etcd"):
// the site's own etcd cluster instead of members in tandemd and a witness.
// The same keys under the cluster's prefix, the same lease, fence and
// failover; what differs:
//
//   - no member runs here: tandemd is an etcd client only, of all the
//     endpoints (the client fails over between them), with the TLS files
//     of this node's config (quorum.etcd.*): the console sends only the
//     endpoints and the prefix, never a key;
//   - the etcd leader is not ours to place (keepEtcdLeaderOff is for the
//     embedded shape): a site's etcd runs on other machines than the pair,
//     so the primary's death costs no etcd election anyway;
//   - the prefix may be shared with other clusters by mistake: the primary
//     claims it at assembly (and at `failover-mode automatic`) only when no
//     leader key is held there and no live primary is recorded.

// EtcdFiles are this node's TLS files for an external etcd: the CA that
// signed the etcd servers' certificates, and the client certificate and
// key (both empty when etcd does not authenticate clients).
type EtcdFiles struct{ CA, Cert, Key string }

// externalClientConfig reads this node's etcd TLS files, at each start of
// the quorum (so a renewed client certificate needs only a tandemd
// restart or reload, not a reassembly).
func (n *Node) externalClientConfig(q api.QuorumSpec) (quorum.ClientConfig, error) {
	f := n.cfg.Etcd
	if f.CA == "" {
		return quorum.ClientConfig{}, fmt.Errorf("%s has no quorum.etcd.ca_file in its configuration: an external etcd is reached over TLS verified with that CA (see docs/config.md); set it and restart tandemd", n.cfg.Name)
	}
	read := func(key, path string) ([]byte, error) {
		if path == "" {
			return nil, nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("%s: quorum.etcd.%s: %w", n.cfg.Name, key, err)
		}
		return b, nil
	}
	ca, err := read("ca_file", f.CA)
	if err != nil {
		return quorum.ClientConfig{}, err
	}
	cert, err := read("cert_file", f.Cert)
	if err != nil {
		return quorum.ClientConfig{}, err
	}
	key, err := read("key_file", f.Key)
	if err != nil {
		return quorum.ClientConfig{}, err
	}
	return quorum.ClientConfig{Endpoints: q.Etcd, CertPEM: cert, KeyPEM: key, TrustedPEM: [][]byte{ca}, DialTimeout: time.Second}, nil
}

// newExternalClient is this node's client of the external etcd.
func (n *Node) newExternalClient(q api.QuorumSpec) (*clientv3.Client, error) {
	cfg, err := n.externalClientConfig(q)
	if err != nil {
		return nil, err
	}
	cli, err := quorum.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: quorum.etcd.*: %w", n.cfg.Name, err)
	}
	return cli, nil
}

// checkExternalEtcd is a node's check, before anything changes, that it
// can use the external etcd of q: its TLS files, and an answer from etcd
// within a few seconds. With claim (the primary, at assembly or when the
// mode becomes automatic) the prefix must also be free: no leader key held
// under it and no primary recorded but a retired one (a disassembled
// cluster leaves that behind, and its prefix may be used again).
func (n *Node) checkExternalEtcd(ctx context.Context, q api.QuorumSpec, claim bool) error {
	cli, err := n.newExternalClient(q)
	if err != nil {
		return badRequest("%v", err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, quorumCall)
	defer cancel()
	h, held, err := quorum.CurrentHolder(ctx, cli, q.Prefix)
	if err != nil {
		return unavailable("%s cannot use the etcd at %s: %v%s (check quorum.etcd.* in its configuration, that its client certificate is allowed, and the firewall); nothing was changed", n.cfg.Name, strings.Join(q.Etcd, ","), etcdErr(err), n.probeEtcd(q))
	}
	if !claim {
		return nil
	}
	if held {
		return conflict("the key prefix %s at the etcd %s is in use: its leader key is held by %q (another tandem cluster?); give this cluster a prefix of its own with --etcd-prefix", q.Prefix, strings.Join(q.Etcd, ","), h.Name)
	}
	rec, ok, err := quorum.ReadPrimary(ctx, cli, q.Prefix)
	if err != nil {
		return unavailable("%s cannot use the etcd at %s: %v; nothing was changed", n.cfg.Name, strings.Join(q.Etcd, ","), etcdErr(err))
	}
	if ok && rec.Term != math.MaxInt64 {
		return conflict("the key prefix %s at the etcd %s records %q as primary of term %d (another tandem cluster, or one not disassembled); give this cluster a prefix of its own with --etcd-prefix", q.Prefix, strings.Join(q.Etcd, ","), rec.Node, rec.Term)
	}
	return nil
}

// probeEtcd says, for an etcd that gave no answer, what each endpoint does
// with a TLS handshake: a certificate problem is then named instead of a
// bare timeout.
func (n *Node) probeEtcd(q api.QuorumSpec) string {
	cfg, err := n.externalClientConfig(q)
	if err != nil {
		return ""
	}
	var out []string
	for _, e := range q.Etcd {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		if err := quorum.ProbeTLS(ctx, cfg, e); err != nil {
			out = append(out, fmt.Sprintf("%s: %v", e, etcdErr(err)))
		}
		cancel()
	}
	if len(out) == 0 {
		return ""
	}
	return "; " + strings.Join(out, "; ")
}

// etcdErr makes a client error readable: a deadline means no endpoint
// answered, which the operator knows how to look into.
func etcdErr(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return errors.New("no endpoint answered within 3 s")
	}
	return err
}

// externalMembers is the external etcd's health, one entry per endpoint,
// for status and metrics: the same shape as an embedded member's, named by
// the endpoint.
func externalMembers(ctx context.Context, cli *clientv3.Client, q api.QuorumSpec) []api.QuorumMemberStatus {
	var out []api.QuorumMemberStatus
	for _, e := range q.Etcd {
		ms := api.QuorumMemberStatus{Name: strings.TrimPrefix(e, "https://")}
		mctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		st, err := cli.Status(mctx, e)
		cancel()
		if err != nil {
			ms.Error = etcdErr(err).Error()
		} else {
			ms.Healthy = len(st.Errors) == 0
			ms.EtcdLeader = st.Leader == st.Header.MemberId
			if !ms.Healthy {
				ms.Error = st.Errors[0]
			}
		}
		out = append(out, ms)
	}
	return out
}
