package console

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"strings"

	"github.com/tandem-ha/tandem/internal/api"
	"github.com/tandem-ha/tandem/internal/valid"
)

// Failover modes the console offers at assembly.
const (
	failoverManual    = "manual"
	failoverAutomatic = "automatic"
)

// witnessFlags: the third vote of automatic failover, a witness or an
// external etcd.
type witnessFlags struct {
	failover   string
	witness    string
	tokenFile  string
	fp         string
	etcd       string // comma-separated client URLs of an external etcd
	etcdPrefix string
}

var etcdPrefixRE = valid.Bounded(`^/[A-Za-z0-9/_.-]+$`, 2, 201)

// externalQuorum is the quorum of --etcd for cluster name: the endpoints
// and the key prefix (by default /tandem/NAME). The nodes check that they
// reach it, with their own TLS files, before anything changes.
func (w *witnessFlags) externalQuorum(name string) *api.QuorumSpec {
	prefix := w.etcdPrefix
	if prefix == "" {
		prefix = defaultQuorumPrefix(name)
	}
	return &api.QuorumSpec{Prefix: prefix, Etcd: splitEndpoints(w.etcd)}
}

func splitEndpoints(s string) []string {
	var out []string
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSuffix(strings.TrimSpace(e), "/"); e != "" {
			out = append(out, e)
		}
	}
	return out
}

// etcdProblems checks --etcd and --etcd-prefix as far as the console can
// (the nodes check the rest: that etcd answers them, and the prefix is
// free).
func (w *witnessFlags) etcdProblems() []string {
	var probs []string
	eps := splitEndpoints(w.etcd)
	if len(eps) == 0 {
		probs = append(probs, "--etcd: give the etcd cluster's client URLs, comma-separated, such as https://etcd1.example.net:2379,https://etcd2.example.net:2379,https://etcd3.example.net:2379")
	}
	for _, e := range eps {
		u, err := url.Parse(e)
		if err != nil || u.Scheme != "https" || u.Port() == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			probs = append(probs, fmt.Sprintf("--etcd: %q must be an https URL with a port, such as https://etcd1.example.net:2379 (tandemd reaches etcd over TLS only)", e))
		}
	}
	if w.etcdPrefix != "" && !etcdPrefixRE.MatchString(w.etcdPrefix) {
		probs = append(probs, fmt.Sprintf("--etcd-prefix %q must start with / and hold only letters, digits and /_.-", w.etcdPrefix))
	}
	return probs
}

// witnessTarget is the witness as resolved from the flags.
type witnessTarget struct {
	addr, token, fp string
}

func (w *witnessFlags) resolve(toks *Tokens, cache *Cache) (*witnessTarget, []string) {
	var probs []string
	switch w.failover {
	case failoverManual:
		if w.witness != "" {
			probs = append(probs, "--witness is only for --failover automatic (manual mode has no quorum)")
		}
		if w.etcd != "" || w.etcdPrefix != "" {
			probs = append(probs, "--etcd and --etcd-prefix are only for --failover automatic (manual mode has no quorum)")
		}
		return nil, probs
	case failoverAutomatic:
	default:
		return nil, []string{fmt.Sprintf("--failover %q: use manual or automatic", w.failover)}
	}
	switch {
	case w.witness != "" && w.etcd != "":
		return nil, []string{"give either --witness (a quorum embedded in tandemd, with a witness) or --etcd (an external etcd), not both"}
	case w.etcd != "":
		if w.tokenFile != "" || w.fp != "" {
			probs = append(probs, "--witness-token-file and --witness-fingerprint are for --witness, not --etcd")
		}
		return nil, append(probs, w.etcdProblems()...)
	case w.etcdPrefix != "":
		return nil, []string{"--etcd-prefix is for --etcd (with --witness the prefix is the cluster's own etcd's)"}
	case w.witness == "":
		return nil, []string{"--failover automatic needs --witness HOST (the third machine running `tandem-witness`) or --etcd URL,... (an etcd cluster the site runs)"}
	}
	t := &witnessTarget{}
	var err error
	if t.addr, err = NormalizeEndpoint(w.witness); err != nil {
		probs = append(probs, "--witness: "+err.Error())
	}
	if t.fp, err = parseFingerprint("--witness-fingerprint", w.fp); err != nil {
		probs = append(probs, err.Error())
	}
	var kept keptToken
	if toks != nil && t.addr != "" {
		kept = toks.lookup(cache, t.addr)
	}
	var prob string
	t.token, _, prob = pairToken("witness", w.tokenFile, "TANDEM_WITNESS_TOKEN", kept)
	if prob != "" {
		probs = append(probs, prob)
	}
	return t, probs
}

// dialWitness reaches the witness and asks about it: it must be a
// witness, serve no other cluster, and present the certificate pinned.
func dialWitness(ctx context.Context, tr *trust, t *witnessTarget, cluster string) (*Client, api.WitnessInfo, error) {
	want := t.fp
	if want == "" {
		want = tr.fingerprint
	}
	c, err := dialWant(ctx, t.addr, t.token, tr, want)
	if err != nil {
		return nil, api.WitnessInfo{}, fmt.Errorf("witness: %w", err)
	}
	var wi api.WitnessInfo
	if err := c.Get(ctx, "/v1/witness", &wi); err != nil {
		return nil, api.WitnessInfo{}, fmt.Errorf("witness %s: %w (is it running `tandem-witness`?)", t.addr, err)
	}
	if wi.Cluster != "" && wi.Cluster != cluster {
		return nil, api.WitnessInfo{}, exitf(ExitConflict, "the witness %s (%s) already serves cluster %q: disassemble that cluster, or have the witness leave it, first", wi.Name, t.addr, wi.Cluster)
	}
	if pinned := tr.pinned(c.Addr()); pinned != "" && pinned != wi.Fingerprint {
		return nil, api.WitnessInfo{}, exitf(ExitRefused, "the witness %s reports certificate %s but presented %s", t.addr, wi.Fingerprint, pinned)
	}
	return c, wi, nil
}

// quorumSpec is the quorum the console proposes: the two nodes' members
// and the witness's, each as that machine described it over its pinned API
// connection (the member certificate is its own, apart from the API's so
// that a certificate rotation leaves the quorum alone), a new cluster
// token and a key prefix named after the cluster.
func quorumSpec(name string, pc *pairClients, wi api.WitnessInfo) (*api.QuorumSpec, error) {
	var members []api.QuorumMember
	for _, n := range []struct {
		info api.NodeInfo
		addr string
	}{{pc.pInfo, pc.p.Addr()}, {pc.sInfo, pc.s.Addr()}} {
		if n.info.QuorumMember == nil {
			return nil, exitf(ExitConflict, "node %s (%s) runs a tandemd without automatic failover (version %s): upgrade it first", n.info.Name, n.addr, n.info.TandemdVersion)
		}
		members = append(members, *n.info.QuorumMember)
	}
	for _, m := range members {
		if m.Name == wi.Name {
			return nil, exitf(ExitUsage, "the witness is named %q like a node: give it its own node.name", wi.Name)
		}
	}
	members = append(members, wi.Member)
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	return &api.QuorumSpec{Token: "tandem-" + hex.EncodeToString(b), Prefix: defaultQuorumPrefix(name), Members: members}, nil
}

// defaultQuorumPrefix is the key prefix of cluster name: /tandem/NAME.
func defaultQuorumPrefix(name string) string {
	return "/tandem/" + strings.Map(func(r rune) rune {
		if r == '/' {
			return '_'
		}
		return r
	}, name)
}
