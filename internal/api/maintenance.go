package api

import (
	"context"
	"net/http"
	"time"
)

// MaintenanceInfo is the cluster's maintenance mode (Patroni's pause):
// while On, tandemd reports but takes no automatic action. Gen orders the
// changes: each switch takes one more than the highest either node knew,
// and a node that hears of a higher Gen from its peer adopts it (the later
// At breaks a tie, a change made on each side of a partition).
type MaintenanceInfo struct {
	On     bool      `json:"on"`
	By     string    `json:"by,omitempty"`
	Reason string    `json:"reason,omitempty"`
	At     time.Time `json:"at"`
	Gen    int64     `json:"gen"`
}

// Newer reports whether m is a later change than o (o nil: any m is).
func (m *MaintenanceInfo) Newer(o *MaintenanceInfo) bool {
	switch {
	case m == nil:
		return false
	case o == nil:
		return true
	case m.Gen != o.Gen:
		return m.Gen > o.Gen
	}
	return m.At.After(o.At)
}

// MaintenanceRequest is POST /v1/cluster/maintenance, sent to either
// node: it switches maintenance on or off on that node and its peer.
type MaintenanceRequest struct {
	On     bool   `json:"on"`
	Reason string `json:"reason,omitempty"`
	// By is who asked (the console sends user@host).
	By string `json:"by,omitempty"`
}

// MaintenanceNode is one node's part of a maintenance switch.
type MaintenanceNode struct {
	Name    string `json:"name"`
	Applied bool   `json:"applied"`
	Error   string `json:"error,omitempty"`
}

// MaintenanceResult answers POST /v1/cluster/maintenance. Changed is false
// when maintenance already was as asked (nothing recorded). A node in
// Nodes with Applied false did not answer: it learns the change from the
// heartbeat once the two nodes hear each other again.
type MaintenanceResult struct {
	Maintenance MaintenanceInfo   `json:"maintenance"`
	Changed     bool              `json:"changed"`
	Nodes       []MaintenanceNode `json:"nodes"`
}

// MaintenanceBackend is what the maintenance endpoints need; a backend
// without it does not serve them.
type MaintenanceBackend interface {
	SetMaintenance(ctx context.Context, req MaintenanceRequest) (MaintenanceResult, error)
	PeerMaintenance(ctx context.Context, m MaintenanceInfo) (MaintenanceInfo, error)
}

func maintenanceRoutes(mb MaintenanceBackend) map[string]route {
	return map[string]route{
		"/v1/cluster/maintenance": {method: http.MethodPost, auth: authToken, h: func(r *http.Request) (any, int, error) {
			var req MaintenanceRequest
			if err := decode(r, &req); err != nil {
				return nil, 0, err
			}
			v, err := mb.SetMaintenance(r.Context(), req)
			return v, http.StatusOK, err
		}},
		"/v1/peer/maintenance": {method: http.MethodPost, auth: authPeer, h: func(r *http.Request) (any, int, error) {
			var m MaintenanceInfo
			if err := decode(r, &m); err != nil {
				return nil, 0, err
			}
			v, err := mb.PeerMaintenance(r.Context(), m)
			return v, http.StatusOK, err
		}},
	}
}

// SetMaintenance is POST /v1/cluster/maintenance.
func (c *Client) SetMaintenance(ctx context.Context, req MaintenanceRequest) (MaintenanceResult, error) {
	var res MaintenanceResult
	return res, c.Do(ctx, http.MethodPost, "/v1/cluster/maintenance", req, &res)
}

// PeerMaintenance is POST /v1/peer/maintenance.
func (c *Client) PeerMaintenance(ctx context.Context, m MaintenanceInfo) (MaintenanceInfo, error) {
	var res MaintenanceInfo
	return res, c.Do(ctx, http.MethodPost, "/v1/peer/maintenance", m, &res)
}
