package api

import (
	"context"
	"net/http"
)

// WitnessBackend is the witness's: it runs one etcd member of a cluster's
// quorum and no PostgreSQL. A Backend that implements it serves these
// routes, and /health answers from Healthy instead of PostgreSQL's state.
type WitnessBackend interface {
	Witness(ctx context.Context) WitnessInfo
	WitnessJoin(ctx context.Context, req WitnessJoin) (WitnessInfo, error)
	WitnessLeave(ctx context.Context) error
	// Healthy is what /health says: ok is false while the witness cannot
	// do its job (its member failed to start, say), with what is wrong.
	Healthy() (ok bool, status string)
}

func (s *Server) witnessRoutes(wb WitnessBackend) map[string]route {
	return map[string]route{
		"/v1/witness": {method: http.MethodGet, auth: authToken, h: func(r *http.Request) (any, int, error) {
			return wb.Witness(r.Context()), http.StatusOK, nil
		}},
		"/v1/witness/join": {method: http.MethodPost, auth: authToken, h: func(r *http.Request) (any, int, error) {
			var req WitnessJoin
			if err := decode(r, &req); err != nil {
				return nil, 0, err
			}
			v, err := wb.WitnessJoin(r.Context(), req)
			return v, http.StatusOK, err
		}},
		"/v1/witness/leave": {method: http.MethodPost, auth: authToken, h: func(r *http.Request) (any, int, error) {
			return struct{}{}, http.StatusOK, wb.WitnessLeave(r.Context())
		}},
	}
}

// Witness asks a witness about itself.
func (c *Client) Witness(ctx context.Context) (WitnessInfo, error) {
	return get[WitnessInfo](ctx, c, "/v1/witness")
}

// WitnessJoin gives a witness its cluster's quorum; it starts its member.
func (c *Client) WitnessJoin(ctx context.Context, req WitnessJoin) (WitnessInfo, error) {
	return post[WitnessInfo](ctx, c, "/v1/witness/join", req)
}

// WitnessLeave makes a witness stop its member and forget the cluster.
func (c *Client) WitnessLeave(ctx context.Context) error {
	_, err := post[struct{}](ctx, c, "/v1/witness/leave", struct{}{})
	return err
}

// FailsafeBackend is a node's side of failsafe (automatic mode): the
// secondary's promise to a primary that cannot reach etcd.
type FailsafeBackend interface {
	Failsafe(ctx context.Context, req FailsafeRequest) (FailsafeResult, error)
}

func failsafeRoutes(fb FailsafeBackend) map[string]route {
	return map[string]route{
		"/v1/peer/failsafe": {method: http.MethodPost, auth: authPeer, h: func(r *http.Request) (any, int, error) {
			var req FailsafeRequest
			if err := decode(r, &req); err != nil {
				return nil, 0, err
			}
			v, err := fb.Failsafe(r.Context(), req)
			return v, http.StatusOK, err
		}},
	}
}

// FailoverModeBackend changes a running cluster's failover mode.
type FailoverModeBackend interface {
	SetFailoverMode(ctx context.Context, req FailoverModeRequest) (FailoverModeResult, error)
	PeerFailoverMode(ctx context.Context, req FailoverModeRequest) error
}

func failoverModeRoutes(fb FailoverModeBackend) map[string]route {
	return map[string]route{
		"/v1/cluster/failover-mode": {method: http.MethodPost, auth: authToken, h: func(r *http.Request) (any, int, error) {
			var req FailoverModeRequest
			if err := decode(r, &req); err != nil {
				return nil, 0, err
			}
			v, err := fb.SetFailoverMode(r.Context(), req)
			return v, http.StatusOK, err
		}},
		"/v1/peer/failover-mode": {method: http.MethodPost, auth: authPeer, h: func(r *http.Request) (any, int, error) {
			var req FailoverModeRequest
			if err := decode(r, &req); err != nil {
				return nil, 0, err
			}
			return struct{}{}, http.StatusOK, fb.PeerFailoverMode(r.Context(), req)
		}},
	}
}
