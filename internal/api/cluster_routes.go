package api

import (
	"context"
	"net/http"
	"strconv"

	"github.com/tandem-ha/tandem/internal/identity"
)

// ClusterBackend is what the cluster endpoints need. A Backend that does
// not implement it (a bare node, a test fake) serves only /health and
// /v1/node.
type ClusterBackend interface {
	View(ctx context.Context) (ClusterView, error)
	Events(ctx context.Context, limit int) (EventList, error)
	Assemble(ctx context.Context, req AssembleRequest) (AssembleResult, error)
	Join(ctx context.Context, req JoinRequest) (JoinResult, error)
	Disassemble(ctx context.Context, req DisassembleRequest) (DisassembleResult, error)
	Preflight(ctx context.Context, req PreflightRequest) (PreflightResult, error)
	Switchover(ctx context.Context, req SwitchoverRequest) (SwitchoverResult, error)
	Failover(ctx context.Context, req FailoverRequest) (FailoverResult, error)

	// Rotation of this node's certificate (admin token).
	PrepareCert(ctx context.Context) (CertPrepareResult, error)
	SwitchCert(ctx context.Context, req CertSwitchRequest) (CertSwitchResult, error)

	// Peer calls, authenticated by the pinned peer certificate: any of
	// PeerFingerprints (two while the peer rotates its certificate).
	PeerFingerprints() []string
	PeerCert(ctx context.Context, req PeerCertRequest) (PeerCertResult, error)
	Heartbeat(ctx context.Context) Heartbeat
	Leave(ctx context.Context) error
	RecreateSlot(ctx context.Context) error
	PeerEvent(ctx context.Context, e PeerEvent) error
	Promote(ctx context.Context, req PromoteRequest) (PromoteResult, error)
}

// Who may call a route.
const (
	authNone  = iota // load-balancer checks
	authToken        // the node's admin token
	authPeer         // the peer node, by its pinned client certificate
)

func (s *Server) clusterRoutes(cb ClusterBackend) map[string]route {
	return map[string]route{
		"/v1/cluster": {method: http.MethodGet, auth: authToken, h: func(r *http.Request) (any, int, error) {
			v, err := cb.View(r.Context())
			return v, http.StatusOK, err
		}},
		"/v1/events": {method: http.MethodGet, auth: authToken, h: func(r *http.Request) (any, int, error) {
			limit := 100
			if q := r.URL.Query().Get("limit"); q != "" {
				n, err := strconv.Atoi(q)
				if err != nil || n < 1 || n > 10000 {
					return nil, 0, Errorf(http.StatusBadRequest, CodeBadRequest, "limit %q must be a whole number from 1 to 10000", q)
				}
				limit = n
			}
			v, err := cb.Events(r.Context(), limit)
			return v, http.StatusOK, err
		}},
		"/v1/cluster/assemble": {method: http.MethodPost, auth: authToken, h: func(r *http.Request) (any, int, error) {
			var req AssembleRequest
			if err := decode(r, &req); err != nil {
				return nil, 0, err
			}
			v, err := cb.Assemble(r.Context(), req)
			return v, http.StatusOK, err
		}},
		"/v1/cluster/join": {method: http.MethodPost, auth: authToken, h: func(r *http.Request) (any, int, error) {
			var req JoinRequest
			if err := decode(r, &req); err != nil {
				return nil, 0, err
			}
			v, err := cb.Join(r.Context(), req)
			return v, http.StatusOK, err
		}},
		"/v1/cluster/disassemble": {method: http.MethodPost, auth: authToken, h: func(r *http.Request) (any, int, error) {
			var req DisassembleRequest
			if err := decode(r, &req); err != nil {
				return nil, 0, err
			}
			v, err := cb.Disassemble(r.Context(), req)
			return v, http.StatusOK, err
		}},
		"/v1/preflight": {method: http.MethodPost, auth: authToken, h: func(r *http.Request) (any, int, error) {
			var req PreflightRequest
			if err := decode(r, &req); err != nil {
				return nil, 0, err
			}
			v, err := cb.Preflight(r.Context(), req)
			return v, http.StatusOK, err
		}},
		// The same checks asked by the peer (an edit of the cluster's
		// address or name, run from the primary): they change nothing.
		"/v1/peer/preflight": {method: http.MethodPost, auth: authPeer, h: func(r *http.Request) (any, int, error) {
			var req PreflightRequest
			if err := decode(r, &req); err != nil {
				return nil, 0, err
			}
			v, err := cb.Preflight(r.Context(), req)
			return v, http.StatusOK, err
		}},
		"/v1/cluster/switchover": {method: http.MethodPost, auth: authToken, h: func(r *http.Request) (any, int, error) {
			var req SwitchoverRequest
			if err := decode(r, &req); err != nil {
				return nil, 0, err
			}
			v, err := cb.Switchover(r.Context(), req)
			return v, http.StatusOK, err
		}},
		"/v1/cluster/failover": {method: http.MethodPost, auth: authToken, h: func(r *http.Request) (any, int, error) {
			var req FailoverRequest
			if err := decode(r, &req); err != nil {
				return nil, 0, err
			}
			v, err := cb.Failover(r.Context(), req)
			return v, http.StatusOK, err
		}},
		"/v1/cert/prepare": {method: http.MethodPost, auth: authToken, h: func(r *http.Request) (any, int, error) {
			v, err := cb.PrepareCert(r.Context())
			return v, http.StatusOK, err
		}},
		"/v1/cert/switch": {method: http.MethodPost, auth: authToken, h: func(r *http.Request) (any, int, error) {
			var req CertSwitchRequest
			if err := decode(r, &req); err != nil {
				return nil, 0, err
			}
			v, err := cb.SwitchCert(r.Context(), req)
			return v, http.StatusOK, err
		}},
		"/v1/peer/cert": {method: http.MethodPost, auth: authPeer, h: func(r *http.Request) (any, int, error) {
			var req PeerCertRequest
			if err := decode(r, &req); err != nil {
				return nil, 0, err
			}
			v, err := cb.PeerCert(r.Context(), req)
			return v, http.StatusOK, err
		}},
		"/v1/peer/promote": {method: http.MethodPost, auth: authPeer, h: func(r *http.Request) (any, int, error) {
			var req PromoteRequest
			if err := decode(r, &req); err != nil {
				return nil, 0, err
			}
			v, err := cb.Promote(r.Context(), req)
			return v, http.StatusOK, err
		}},
		"/v1/peer/heartbeat": {method: http.MethodGet, auth: authPeer, h: func(r *http.Request) (any, int, error) {
			return cb.Heartbeat(r.Context()), http.StatusOK, nil
		}},
		"/v1/peer/leave": {method: http.MethodPost, auth: authPeer, h: func(r *http.Request) (any, int, error) {
			return struct{}{}, http.StatusOK, cb.Leave(r.Context())
		}},
		"/v1/peer/reseed": {method: http.MethodPost, auth: authPeer, h: func(r *http.Request) (any, int, error) {
			return struct{}{}, http.StatusOK, cb.RecreateSlot(r.Context())
		}},
		"/v1/peer/event": {method: http.MethodPost, auth: authPeer, h: func(r *http.Request) (any, int, error) {
			var e PeerEvent
			if err := decode(r, &e); err != nil {
				return nil, 0, err
			}
			return struct{}{}, http.StatusOK, cb.PeerEvent(r.Context(), e)
		}},
	}
}

// peerAuthorized checks the client certificate against the pinned peer.
func peerAuthorized(r *http.Request, cb ClusterBackend) bool {
	if cb == nil || r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return false
	}
	got := identity.Fingerprint(r.TLS.PeerCertificates[0].Raw)
	for _, want := range cb.PeerFingerprints() {
		if want != "" && got == want {
			return true
		}
	}
	return false
}

type clientFingerprintKey struct{}

// WithClientFingerprint returns ctx carrying the fingerprint of the TLS
// client certificate its request presented. The server sets it on every
// request that presented one; tests set it by hand.
func WithClientFingerprint(ctx context.Context, fp string) context.Context {
	return context.WithValue(ctx, clientFingerprintKey{}, fp)
}

// ClientFingerprint is the fingerprint (sha256:…) of the TLS client
// certificate the request behind ctx presented, "" when it presented none.
// The handshake proved the caller holds the certificate's key; whether
// that certificate is anyone in particular is the backend's to decide
// (Join: the primary the request names).
func ClientFingerprint(ctx context.Context) string {
	fp, _ := ctx.Value(clientFingerprintKey{}).(string)
	return fp
}

// withClientCertificate puts the client certificate's fingerprint into
// r's context, when it presented one.
func withClientCertificate(r *http.Request) *http.Request {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return r
	}
	return r.WithContext(WithClientFingerprint(r.Context(), identity.Fingerprint(r.TLS.PeerCertificates[0].Raw)))
}
