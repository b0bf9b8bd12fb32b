package console

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/tandem-ha/tandem/internal/api"
)

// Failover modes the console offers at assembly.
const (
	failoverManual    = "manual"
	failoverAutomatic = "automatic"
)

// witnessFlags: the third vote of automatic failover.
type witnessFlags struct {
	failover  string
	witness   string
	tokenFile string
	fp        string
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
		return nil, probs
	case failoverAutomatic:
	default:
		return nil, []string{fmt.Sprintf("--failover %q: use manual or automatic", w.failover)}
	}
	if w.witness == "" {
		return nil, []string{"--failover automatic needs --witness HOST: the third machine running `tandemd --witness`"}
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
		return nil, api.WitnessInfo{}, fmt.Errorf("witness %s: %w (is it running `tandemd --witness`?)", t.addr, err)
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
// and the witness's, each with the certificate the console pinned, a new
// cluster token and a key prefix named after the cluster.
func quorumSpec(name string, pc *pairClients, tr *trust, wc *Client, wi api.WitnessInfo) (*api.QuorumSpec, error) {
	var members []api.QuorumMember
	for _, n := range []struct {
		info api.NodeInfo
		addr string
	}{{pc.pInfo, pc.p.Addr()}, {pc.sInfo, pc.s.Addr()}} {
		if n.info.QuorumMember == nil {
			return nil, exitf(ExitConflict, "node %s (%s) runs a tandemd without automatic failover (version %s): upgrade it first", n.info.Name, n.addr, n.info.TandemdVersion)
		}
		if n.info.QuorumMember.Fingerprint != tr.pinned(n.addr) {
			return nil, exitf(ExitRefused, "node %s offers quorum certificate %s, not the one pinned for it", n.info.Name, n.info.QuorumMember.Fingerprint)
		}
		members = append(members, *n.info.QuorumMember)
	}
	if wi.Member.Fingerprint != tr.pinned(wc.Addr()) {
		return nil, exitf(ExitRefused, "the witness offers quorum certificate %s, not the one pinned for it", wi.Member.Fingerprint)
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
	prefix := "/tandem/" + strings.Map(func(r rune) rune {
		if r == '/' {
			return '_'
		}
		return r
	}, name)
	return &api.QuorumSpec{Token: "tandem-" + hex.EncodeToString(b), Prefix: prefix, Members: members}, nil
}

// keepWitnessToken remembers the witness's token like the nodes'.
func keepWitnessToken(addr, token string) error {
	toks, err := LoadTokens()
	if err != nil {
		return err
	}
	toks.ByAddress[addr] = token
	return toks.Save()
}
