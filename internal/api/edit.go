package api

import (
	"context"
	"net/http"
)

// EditRequest is POST /v1/cluster/edit (sent to the primary) and
// /v1/peer/edit (the primary to its secondary): the new cluster IP, DNS
// name or replication mode of a running cluster; an empty field keeps what
// the cluster has. Term is the cluster's term (the peer refuses another).
type EditRequest struct {
	ClusterIP   string `json:"cluster_ip,omitempty"`
	DNSName     string `json:"dns_name,omitempty"`
	Replication string `json:"replication,omitempty"`
	Term        int64  `json:"term,omitempty"`
}

// EditResult says what changed ("cluster IP 10.0.0.10/24 → 10.0.0.20/24"),
// empty when the cluster already was as asked, the record after, and the
// values now in force.
type EditResult struct {
	Changed []string `json:"changed"`
	Record  Record   `json:"record"`
	// The values in force on both nodes now (the record may lag, should
	// its write have failed).
	ClusterIP   string `json:"cluster_ip"`
	DNSName     string `json:"dns_name"`
	Replication string `json:"replication"`
}

// EditBackend changes a running cluster's settings.
type EditBackend interface {
	Edit(ctx context.Context, req EditRequest) (EditResult, error)
	PeerEdit(ctx context.Context, req EditRequest) error
}

func editRoutes(eb EditBackend) map[string]route {
	return map[string]route{
		"/v1/cluster/edit": {method: http.MethodPost, auth: authToken, h: func(r *http.Request) (any, int, error) {
			var req EditRequest
			if err := decode(r, &req); err != nil {
				return nil, 0, err
			}
			v, err := eb.Edit(r.Context(), req)
			return v, http.StatusOK, err
		}},
		"/v1/peer/edit": {method: http.MethodPost, auth: authPeer, h: func(r *http.Request) (any, int, error) {
			var req EditRequest
			if err := decode(r, &req); err != nil {
				return nil, 0, err
			}
			return struct{}{}, http.StatusOK, eb.PeerEdit(r.Context(), req)
		}},
	}
}
