package api

import (
	"context"
	"net/http"
	"time"
)

// UpgradeRequest is POST /v1/node/upgrade: install tandem at Version with
// the node's upgrade.command, then reload into it.
type UpgradeRequest struct {
	Version string `json:"version"`
}

// UpgradeInfo is a node's upgrade as it last went (in GET /v1/node while
// this tandemd has run one; a reload into the new version starts afresh,
// and the node's tandemd_version then says the rest). State: running (the
// command), reloading (installed, the reload asked), failed.
type UpgradeInfo struct {
	Version   string    `json:"version"`
	State     string    `json:"state"`
	Error     string    `json:"error,omitempty"`
	Output    string    `json:"output,omitempty"` // the command's last output lines
	StartedAt time.Time `json:"started_at"`
}

// UpgradeBackend runs a node's upgrade.
type UpgradeBackend interface {
	Upgrade(ctx context.Context, req UpgradeRequest) (UpgradeInfo, error)
}

func upgradeRoutes(ub UpgradeBackend) map[string]route {
	return map[string]route{
		"/v1/node/upgrade": {method: http.MethodPost, auth: authToken, h: func(r *http.Request) (any, int, error) {
			var req UpgradeRequest
			if err := decode(r, &req); err != nil {
				return nil, 0, err
			}
			v, err := ub.Upgrade(r.Context(), req)
			return v, http.StatusAccepted, err
		}},
	}
}

// PostgresRestartResult answers POST /v1/node/postgres-restart: the
// secondary's PostgreSQL restarted in place (a minor update's new
// binaries), streaming again.
type PostgresRestartResult struct {
	Node          string `json:"node"`
	VersionBefore string `json:"version_before"`
	VersionAfter  string `json:"version_after"`
	PIDBefore     int    `json:"pid_before"`
	PIDAfter      int    `json:"pid_after"`
	Took          string `json:"took"`
}

// ClusterIPHandoffBackend takes the cluster IP the old primary of a
// switchover has just dropped.
type ClusterIPHandoffBackend interface {
	TakeClusterIP(ctx context.Context, req ClusterIPHandoff) error
}

func clusterIPHandoffRoutes(hb ClusterIPHandoffBackend) map[string]route {
	return map[string]route{
		"/v1/peer/cluster-ip": {method: http.MethodPost, auth: authPeer, h: func(r *http.Request) (any, int, error) {
			var req ClusterIPHandoff
			if err := decode(r, &req); err != nil {
				return nil, 0, err
			}
			return struct{}{}, http.StatusOK, hb.TakeClusterIP(r.Context(), req)
		}},
	}
}

// PromotionPrepareBackend readies a secondary for a switchover's
// promotion.
type PromotionPrepareBackend interface {
	PreparePromotion(ctx context.Context, req PromotionPrepare) error
}

func promotionPrepareRoutes(pb PromotionPrepareBackend) map[string]route {
	return map[string]route{
		"/v1/peer/prepare-promotion": {method: http.MethodPost, auth: authPeer, h: func(r *http.Request) (any, int, error) {
			var req PromotionPrepare
			if err := decode(r, &req); err != nil {
				return nil, 0, err
			}
			return struct{}{}, http.StatusOK, pb.PreparePromotion(r.Context(), req)
		}},
	}
}

// PostgresRestartBackend restarts a secondary's PostgreSQL.
type PostgresRestartBackend interface {
	RestartPostgres(ctx context.Context) (PostgresRestartResult, error)
}

func postgresRestartRoutes(pb PostgresRestartBackend) map[string]route {
	return map[string]route{
		"/v1/node/postgres-restart": {method: http.MethodPost, auth: authToken, h: func(r *http.Request) (any, int, error) {
			v, err := pb.RestartPostgres(r.Context())
			return v, http.StatusOK, err
		}},
	}
}
