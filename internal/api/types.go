// Package api is the node API: HTTPS + JSON on each node. This file holds
// the wire types, shared with the console, so both sides agree on field
// names; it imports nothing platform-specific, because the console builds
// for Windows and macOS too.
package api

// NodeInfo answers GET /v1/node.
type NodeInfo struct {
	Name           string       `json:"name"`
	IP             string       `json:"ip"`
	TandemdVersion string       `json:"tandemd_version"`
	Postgres       PostgresInfo `json:"postgres"`
}

// PostgresInfo is the supervised PostgreSQL instance as tandemd sees it.
type PostgresInfo struct {
	// State is stopped, starting, running, stopping, crashed, no_data or failed.
	State      string `json:"state"`
	PID        int    `json:"pid,omitempty"`
	Port       int    `json:"port"`
	InRecovery bool   `json:"in_recovery"`
	LSN        string `json:"lsn,omitempty"`
	Version    string `json:"version,omitempty"`
	Restarts   int    `json:"restarts"`
	Error      string `json:"error,omitempty"`
}

// Health answers GET /health.
type Health struct {
	Status   string `json:"status"` // "ok" or "unavailable"
	Postgres string `json:"postgres"`
}

// ErrorBody is the envelope of every error: {"error":{"code":…,"message":…}}.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail names what went wrong; Code is stable, Message is for people.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}
