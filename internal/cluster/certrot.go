package cluster

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tandem-ha/tandem/internal/api"
	"github.com/tandem-ha/tandem/internal/identity"
	"github.com/tandem-ha/tandem/internal/state"
)

// Rotating this node's certificate, with no outage and nothing
// reassembled. Three parties pin it: the peer (its state file), the
// cluster record (informational) and the consoles. The sequence:
//
//  1. prepare (POST /v1/cert/prepare): the peer must answer; the next key
//     and certificate are written beside the ones in force; the peer is
//     told of the next one over the old one (POST /v1/peer/cert) and
//     from then on accepts both. The console pins both too.
//  2. switch (POST /v1/cert/switch, naming the prepared certificate): the
//     peer is told once more (so it certainly accepts it), the files are
//     renamed into force, the API server and the peer client use the new
//     certificate from their next connection, and the peer is told over
//     the new certificate, which makes it drop the old one; the primary
//     updates the record.
//
// The files are the journal on this node (identity.Settle); on the peer,
// "both pinned" lasts until it sees the new certificate, at a confirmation
// or at any later call of this node (its heartbeat). So a tandemd killed
// anywhere comes back with a certificate the peer accepts, and a console
// that pinned both reaches it either way.
const OpRotateCert state.OpKind = "rotate-cert"

// Crash-test points of a rotation (crashAt; they are not journaled: the
// certificate files are the rotation's record).
const (
	stepCertPrepared    state.Step = "prepared"     // the next files written, the peer not told yet
	stepCertPeerTold    state.Step = "peer-told"    // the peer accepts both
	stepCertKeySwitched state.Step = "key-switched" // node.key is the new key, node.crt still the old certificate
	stepCertSwitched    state.Step = "switched"     // the new pair in force, the peer not confirmed yet
)

// EventCertRotated is recorded when a node's certificate changed.
const EventCertRotated = "certificate_rotated"

func (n *Node) certificate() tls.Certificate {
	n.certMu.RLock()
	defer n.certMu.RUnlock()
	return n.cert
}

// Certificate is the certificate in force, for the API server's every
// handshake.
func (n *Node) Certificate() *tls.Certificate {
	c := n.certificate()
	return &c
}

func (n *Node) fingerprint() string {
	n.certMu.RLock()
	defer n.certMu.RUnlock()
	return n.certFP
}

func (n *Node) nextFingerprint() string {
	n.certMu.RLock()
	defer n.certMu.RUnlock()
	return n.nextFP
}

// loadPreparedCert finds a rotation prepared before a restart, so status
// shows it and a new prepare resumes it.
func (n *Node) loadPreparedCert() {
	if n.cfg.StateDir == "" {
		return
	}
	next, err := identity.LoadNext(n.cfg.StateDir)
	if err != nil {
		n.log.Warn("a prepared certificate rotation cannot be read", "err", err)
		return
	}
	if next != nil {
		n.nextFP = identity.FingerprintOf(*next)
		n.log.Info("a certificate rotation is prepared, not switched: `tandem rotate-cert` finishes it", "next_fingerprint", n.nextFP)
	}
}

// PrepareCert is step 1: POST /v1/cert/prepare.
func (n *Node) PrepareCert(ctx context.Context) (api.CertPrepareResult, error) {
	return runOp(n, ctx, OpRotateCert, byConsole, func(ctx context.Context, _ func(api.CertPrepareResult, error)) (api.CertPrepareResult, error) {
		return n.prepareCert(ctx)
	})
}

func (n *Node) prepareCert(ctx context.Context) (api.CertPrepareResult, error) {
	s := n.State()
	if s.Operation != nil {
		return api.CertPrepareResult{}, conflict("operation %s is unfinished on %s; a certificate rotation waits until it is settled. Nothing was changed", opString(s.Operation), n.cfg.Name)
	}
	res := api.CertPrepareResult{Node: n.cfg.Name, Fingerprint: n.fingerprint()}
	peer, err := n.rotationPeer(ctx, s)
	if err != nil {
		return res, err
	}
	prepared, err := identity.LoadNext(n.cfg.StateDir)
	if err != nil {
		return res, err
	}
	next, err := identity.PrepareNext(n.cfg.StateDir, n.cfg.Name, []string{n.cfg.IP})
	if err != nil {
		return res, fmt.Errorf("while preparing the next certificate: %w", err)
	}
	res.NextFingerprint = identity.FingerprintOf(next)
	crashAt(n.log, OpRotateCert, stepCertPrepared)
	if peer != nil {
		res.Peer = peer.Name
		if err := n.announceCert(ctx, peer, res.NextFingerprint); err != nil {
			if prepared == nil {
				// Made by this call and known to nobody: it goes, so a
				// refused rotation leaves this node as it was.
				if derr := identity.DiscardNext(n.cfg.StateDir); derr != nil {
					n.log.Warn("could not drop the next certificate", "err", derr)
				}
				res.NextFingerprint = ""
			}
			return res, err
		}
		crashAt(n.log, OpRotateCert, stepCertPeerTold)
	}
	n.certMu.Lock()
	n.nextFP = res.NextFingerprint
	n.certMu.Unlock()
	n.log.Info("certificate rotation prepared", "fingerprint", res.Fingerprint, "next_fingerprint", res.NextFingerprint, "peer", res.Peer)
	return res, nil
}

// rotationPeer is the peer that must learn the new certificate, nil when
// this node has none (no cluster, standalone). A peer that does not answer
// refuses the rotation: it would refuse this node's new certificate.
func (n *Node) rotationPeer(ctx context.Context, s state.State) (*api.Member, error) {
	if s.Cluster == nil || s.Cluster.Peer == nil {
		return nil, nil
	}
	peer := memberOf(s.Cluster.Peer)
	hb, err := n.askPeer(ctx, peer, 3*time.Second)
	if err != nil {
		return nil, unavailable("%s cannot rotate its certificate while its peer %s does not answer (%v): the peer must learn the new certificate before %s presents it, or it would refuse %s. Rotate once both nodes answer (if %s is gone for good, `tandem disassemble --force` first). Nothing was changed",
			n.cfg.Name, peer.Name, err, n.cfg.Name, n.cfg.Name, peer.Name)
	}
	if err := n.peerCompatible(peer.Name, hb); err != nil {
		return nil, err
	}
	return peer, nil
}

// announceCert tells the peer of the next certificate over the one in
// force: from its answer on, it accepts both.
func (n *Node) announceCert(ctx context.Context, peer *api.Member, next string) error {
	var pr api.PeerCertResult
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := n.peerOf(peer).do(cctx, http.MethodPost, "/v1/peer/cert", api.PeerCertRequest{Fingerprint: next}, &pr); err != nil {
		return fmt.Errorf("while telling %s of the next certificate: %w", peer.Name, err)
	}
	if pr.Next != next && pr.Pinned != next {
		return fmt.Errorf("%s answered that it pins %s (next %q) for %s, not the next certificate %s", peer.Name, pr.Pinned, pr.Next, n.cfg.Name, next)
	}
	return nil
}

// SwitchCert is step 2: POST /v1/cert/switch.
func (n *Node) SwitchCert(ctx context.Context, req api.CertSwitchRequest) (api.CertSwitchResult, error) {
	return runOp(n, ctx, OpRotateCert, byConsole, func(ctx context.Context, _ func(api.CertSwitchResult, error)) (api.CertSwitchResult, error) {
		return n.switchCert(ctx, req)
	})
}

func (n *Node) switchCert(ctx context.Context, req api.CertSwitchRequest) (api.CertSwitchResult, error) {
	res := api.CertSwitchResult{Node: n.cfg.Name, Old: n.fingerprint()}
	if !fingerprintRE.MatchString(req.Fingerprint) {
		return res, badRequest("fingerprint %q must be sha256: and 64 lowercase hex digits: the next certificate POST /v1/cert/prepare answered", req.Fingerprint)
	}
	next, err := identity.LoadNext(n.cfg.StateDir)
	if err != nil {
		return res, err
	}
	switch {
	case next == nil && req.Fingerprint == res.Old:
		// Already switched (a console that lost the answer asks again).
		res.Fingerprint = res.Old
		res.Notes = append(res.Notes, "this certificate was already in force")
		return res, nil
	case next == nil:
		return res, conflict("no certificate rotation is prepared on %s: POST /v1/cert/prepare first (`tandem rotate-cert` does both). Nothing was changed", n.cfg.Name)
	case identity.FingerprintOf(*next) != req.Fingerprint:
		return res, conflict("the certificate prepared on %s is %s, not %s: switch to the prepared one, or prepare again. Nothing was changed", n.cfg.Name, identity.FingerprintOf(*next), req.Fingerprint)
	}
	s := n.State()
	if s.Operation != nil {
		return res, conflict("operation %s is unfinished on %s; the switch waits until it is settled. Nothing was changed", opString(s.Operation), n.cfg.Name)
	}
	peer, err := n.rotationPeer(ctx, s)
	if err != nil {
		return res, err
	}
	if peer != nil {
		res.Peer = peer.Name
		// Told again right before the switch: whatever happened since the
		// prepare (a peer restored from a backup), it accepts the new one.
		if err := n.announceCert(ctx, peer, req.Fingerprint); err != nil {
			return res, fmt.Errorf("%w. Nothing was switched", err)
		}
	}
	cert, err := identity.SwitchToNext(n.cfg.StateDir, func() { crashAt(n.log, OpRotateCert, stepCertKeySwitched) })
	if err != nil {
		return res, fmt.Errorf("while switching to the new certificate: %w", err)
	}
	n.certMu.Lock()
	n.cert, n.certFP, n.nextFP = cert, req.Fingerprint, ""
	n.certMu.Unlock()
	res.Fingerprint = req.Fingerprint
	n.log.Info("node certificate switched", "fingerprint", res.Fingerprint, "old_fingerprint", res.Old)
	crashAt(n.log, OpRotateCert, stepCertSwitched)

	if peer != nil {
		// Over the new certificate now (the peer client is rebuilt for it):
		// the peer sees it and drops the old pin.
		var pr api.PeerCertResult
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := n.peerOf(peer).do(cctx, http.MethodPost, "/v1/peer/cert", api.PeerCertRequest{Fingerprint: res.Fingerprint}, &pr)
		cancel()
		switch {
		case err != nil:
			n.log.Warn("the peer has not confirmed the new certificate; it accepts both until this node next calls it", "peer", peer.Name, "err", err)
			res.Notes = append(res.Notes, fmt.Sprintf("%s has not confirmed yet (%v); it accepts both certificates until %s next calls it, within seconds", peer.Name, err, n.cfg.Name))
		case pr.Pinned == res.Fingerprint && pr.Next == "":
			res.PeerConfirmed = true
		default:
			res.Notes = append(res.Notes, fmt.Sprintf("%s answered that it pins %s (next %q)", peer.Name, pr.Pinned, pr.Next))
		}
	}
	if s.Role == state.RolePrimary || s.Role == state.RoleStandalone {
		res.RecordUpdated = n.recordFingerprint(ctx, n.cfg.Name, res.Fingerprint) == nil
	} else {
		// The primary updated its record when it confirmed.
		res.RecordUpdated = res.PeerConfirmed
	}
	n.event(ctx, EventCertRotated, n.cfg.Name, fmt.Sprintf("%s rotated its certificate: %s replaces %s", n.cfg.Name, res.Fingerprint, res.Old))
	return res, nil
}

// PeerCert answers POST /v1/peer/cert: the peer announces its next
// certificate (over the pinned one) or confirms it (over the new one).
func (n *Node) PeerCert(ctx context.Context, req api.PeerCertRequest) (api.PeerCertResult, error) {
	if !fingerprintRE.MatchString(req.Fingerprint) {
		return api.PeerCertResult{}, badRequest("fingerprint %q must be sha256: and 64 lowercase hex digits", req.Fingerprint)
	}
	caller := api.ClientFingerprint(ctx)
	var out api.PeerCertResult
	err := n.update(func(s *state.State) error {
		if s.Cluster == nil || s.Cluster.Peer == nil {
			return conflict("%s has no peer", n.cfg.Name)
		}
		p := s.Cluster.Peer
		switch {
		case req.Fingerprint == p.Fingerprint:
			// Nothing to learn (a repeated confirmation).
		case caller == req.Fingerprint:
			// The peer holds the key of the certificate it names: the
			// switch happened; the old one is refused from now on.
			p.Fingerprint, p.NextFingerprint = req.Fingerprint, ""
		case caller == p.Fingerprint:
			p.NextFingerprint = req.Fingerprint
		default:
			return conflict("%s announces certificate %s over %s, which is not the one pinned (%s): confirm the pending switch first", p.Name, req.Fingerprint, caller, p.Fingerprint)
		}
		out = api.PeerCertResult{Pinned: p.Fingerprint, Next: p.NextFingerprint}
		return nil
	})
	if err != nil {
		return out, err
	}
	if out.Pinned == req.Fingerprint && caller == req.Fingerprint {
		n.peerCertConfirmed(ctx)
	}
	return out, nil
}

// notePeerCert promotes the peer's next certificate when a peer call
// presents it (its heartbeat): a peer killed between its switch and its
// confirmation is confirmed here instead.
func (n *Node) notePeerCert(ctx context.Context) {
	caller := api.ClientFingerprint(ctx)
	s := n.State()
	if caller == "" || s.Cluster == nil || s.Cluster.Peer == nil || s.Cluster.Peer.NextFingerprint != caller {
		return
	}
	if _, err := n.PeerCert(ctx, api.PeerCertRequest{Fingerprint: caller}); err != nil {
		n.log.Warn("could not pin the peer's new certificate", "err", err)
	}
}

// peerCertConfirmed logs the change of pin and, on the primary, writes the
// peer's new certificate into the record.
func (n *Node) peerCertConfirmed(ctx context.Context) {
	s := n.State()
	if s.Cluster == nil || s.Cluster.Peer == nil {
		return
	}
	p := s.Cluster.Peer
	n.log.Info("the peer's new certificate is pinned; its old one is refused from now on", "peer", p.Name, "fingerprint", p.Fingerprint)
	if s.Role == state.RolePrimary {
		_ = n.recordFingerprint(ctx, p.Name, p.Fingerprint)
	}
}

// recordFingerprint writes a member's certificate into the record
// (primary only). The record's copy is what status shows; the pins that
// admit a node are in the state files, so a failure here is only logged.
func (n *Node) recordFingerprint(ctx context.Context, member, fp string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err := n.withConn(ctx, func(c *pgx.Conn) error {
		return pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
			if err := localCommit(ctx, tx); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `UPDATE tandem.members SET fingerprint = $1 WHERE name = $2`, fp, member)
			return err
		})
	})
	if err != nil {
		n.log.Warn("could not write the new certificate into the cluster record", "member", member, "err", err)
	}
	return err
}
