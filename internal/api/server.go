package api

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tandem-ha/tandem/internal/identity"
	"github.com/tandem-ha/tandem/internal/version"
)

// Backend is what the API needs from the daemon. It is small so handler
// tests can fake it.
type Backend interface {
	Node(ctx context.Context) NodeInfo
}

// Config builds a Server.
type Config struct {
	Listen string
	Cert   tls.Certificate
	// GetCertificate, when set, is asked for the certificate at every
	// handshake instead of Cert: a rotated certificate is served from the
	// next connection on, without a restart.
	GetCertificate func() *tls.Certificate
	Token          string
	Backend        Backend
	Log            *slog.Logger
	// Metrics, when set, serves GET /metrics, to whom MetricsAccess says.
	Metrics       http.Handler
	MetricsAccess MetricsAccess
	// UI, when set, serves the web console under /ui/ (internal/webui),
	// which authenticates its own sessions.
	UI http.Handler
}

// Server is the node API component.
type Server struct {
	cfg  Config
	http *http.Server
	ln   net.Listener
	done chan struct{}
	err  error
	once sync.Once

	metricsSlots chan struct{} // scrapes of /metrics in flight

	// The tokens in force: Config's until SetTokens replaces them.
	tokMu        sync.Mutex
	token        string
	metricsToken string
}

// NewServer returns a server that is not yet listening.
func NewServer(cfg Config) *Server {
	inFlight := cfg.MetricsAccess.InFlight
	if inFlight <= 0 {
		inFlight = DefaultMetricsInFlight
	}
	s := &Server{cfg: cfg, done: make(chan struct{}), metricsSlots: make(chan struct{}, inFlight), token: cfg.Token, metricsToken: cfg.MetricsAccess.Token}
	s.http = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		// No write timeout: assembly streams a whole clone before it
		// answers; handlers bound their own work with contexts.
		WriteTimeout: 0,
		IdleTimeout:  2 * time.Minute,
		ErrorLog:     slog.NewLogLogger(cfg.Log.Handler(), slog.LevelDebug),
		TLSConfig: &tls.Config{
			MinVersion: tls.VersionTLS12,
			// Peers present their node certificate; it is checked against
			// the pinned fingerprint on peer routes, not against a CA.
			ClientAuth: tls.RequestClientCert,
		},
	}
	if cfg.GetCertificate != nil {
		s.http.TLSConfig.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cfg.GetCertificate(), nil }
	} else {
		s.http.TLSConfig.Certificates = []tls.Certificate{cfg.Cert}
	}
	return s
}

// maxBody caps a request body.
const maxBody = 1 << 20

// route is one endpoint: its method, whether it needs the admin token, and
// the handler that returns a value to encode or an error.
type route struct {
	method string
	auth   int
	h      func(r *http.Request) (any, int, error)
}

// Handler returns the API's routes. Load-balancer checks (/health,
// /primary, /replica) answer without a token, as HAProxy and friends
// cannot send one and they reveal only up/down; /metrics answers whom
// MetricsAccess admits; everything under /v1 needs the admin token.
func (s *Server) Handler() http.Handler {
	routes := map[string]route{
		"/health":  {method: http.MethodGet, auth: authNone, h: s.health},
		"/primary": {method: http.MethodGet, auth: authNone, h: s.rolecheck("primary")},
		"/replica": {method: http.MethodGet, auth: authNone, h: s.rolecheck("secondary")},
		"/v1/node": {method: http.MethodGet, auth: authToken, h: s.node},
	}
	cb, _ := s.cfg.Backend.(ClusterBackend)
	if cb != nil {
		for p, rt := range s.clusterRoutes(cb) {
			routes[p] = rt
		}
	}
	if fb, ok := s.cfg.Backend.(FailsafeBackend); ok && cb != nil {
		for p, rt := range failsafeRoutes(fb) {
			routes[p] = rt
		}
	}
	if fb, ok := s.cfg.Backend.(FailoverModeBackend); ok && cb != nil {
		for p, rt := range failoverModeRoutes(fb) {
			routes[p] = rt
		}
	}
	if ub, ok := s.cfg.Backend.(UpgradeBackend); ok && cb != nil {
		for p, rt := range upgradeRoutes(ub) {
			routes[p] = rt
		}
	}
	if hb, ok := s.cfg.Backend.(ClusterIPHandoffBackend); ok && cb != nil {
		for p, rt := range clusterIPHandoffRoutes(hb) {
			routes[p] = rt
		}
	}
	if pb, ok := s.cfg.Backend.(PromotionPrepareBackend); ok && cb != nil {
		for p, rt := range promotionPrepareRoutes(pb) {
			routes[p] = rt
		}
	}
	if pb, ok := s.cfg.Backend.(PostgresRestartBackend); ok && cb != nil {
		for p, rt := range postgresRestartRoutes(pb) {
			routes[p] = rt
		}
	}
	if eb, ok := s.cfg.Backend.(EditBackend); ok && cb != nil {
		for p, rt := range editRoutes(eb) {
			routes[p] = rt
		}
	}
	if mb, ok := s.cfg.Backend.(MaintenanceBackend); ok && cb != nil {
		for p, rt := range maintenanceRoutes(mb) {
			routes[p] = rt
		}
	}
	if wb, ok := s.cfg.Backend.(WitnessBackend); ok {
		for p, rt := range s.witnessRoutes(wb) {
			routes[p] = rt
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/metrics" && s.cfg.Metrics != nil {
			s.serveMetrics(w, r)
			return
		}
		if s.cfg.UI != nil && (r.URL.Path == "/ui" || strings.HasPrefix(r.URL.Path, "/ui/")) {
			s.cfg.UI.ServeHTTP(w, r)
			return
		}
		rt, ok := routes[r.URL.Path]
		switch {
		case !ok:
			s.writeError(w, r, Errorf(http.StatusNotFound, CodeNotFound, "no endpoint %s; see the node API section of the docs", r.URL.Path))
			return
		case rt.auth == authToken && !s.authorized(r):
			w.Header().Set("WWW-Authenticate", `Bearer realm="tandem"`)
			s.writeError(w, r, Errorf(http.StatusUnauthorized, CodeUnauthorized, "missing or wrong admin token: send \"Authorization: Bearer <token>\" with the token from the node's state dir (admin-token)"))
			return
		case rt.auth == authPeer && !peerAuthorized(r, cb):
			s.writeError(w, r, Errorf(http.StatusForbidden, CodeForbidden, "peer endpoints answer only the pinned peer node's certificate"))
			return
		case r.Method != rt.method && !(rt.method == http.MethodGet && r.Method == http.MethodHead):
			w.Header().Set("Allow", rt.method)
			s.writeError(w, r, Errorf(http.StatusMethodNotAllowed, CodeMethodNotAllowed, "%s does not accept %s; use %s", r.URL.Path, r.Method, rt.method))
			return
		}
		w.Header().Set(ProtocolHeader, version.Protocol)
		if err := protocolRefusal(r, rt.method); err != nil {
			s.writeError(w, r, err)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		v, status, err := rt.h(withClientCertificate(r))
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		writeJSON(w, status, v)
	})
}

// ProtocolHeader carries the sender's version.Protocol on every request
// and answer of the node API.
const ProtocolHeader = "Tandem-Protocol"

// steadyRoutes are the POSTs the pair's steady state needs (the failsafe
// promise, an event handed to the primary) and the upgrade that makes a
// pair compatible again: they are never refused for the protocol, so
// that a pair at incompatible versions keeps running until it is fixed.
var steadyRoutes = map[string]bool{
	"/v1/peer/failsafe": true,
	"/v1/peer/event":    true,
	"/v1/node/upgrade":  true,
}

// protocolRefusal refuses an operation (a POST) from a caller whose
// protocol this build does not work with, before anything is done. Reads
// (status, heartbeats, metrics) are answered whatever the caller speaks:
// a console must be able to see what is wrong.
func protocolRefusal(r *http.Request, method string) error {
	if method != http.MethodPost || steadyRoutes[r.URL.Path] {
		return nil
	}
	h := r.Header.Get(ProtocolHeader)
	if h == "" {
		return nil
	}
	p, err := strconv.Atoi(h)
	if err != nil {
		return Errorf(http.StatusBadRequest, CodeBadRequest, "%s header %q is not a number", ProtocolHeader, h)
	}
	if version.Compatible(p) {
		return nil
	}
	return Errorf(http.StatusConflict, CodeIncompatible,
		"this node runs tandem %s (protocol %d) and the caller speaks protocol %d: tandem works only between protocols at most one apart, so nothing was done; upgrade the older side first (tandem upgrade --version …, or the console's package)",
		version.Version, version.ProtocolLevel(), p)
}

// SetTokens replaces the admin token and the metrics token ("": none)
// from the next request on: a rotated token takes effect without a
// restart.
func (s *Server) SetTokens(admin, metrics string) {
	s.tokMu.Lock()
	defer s.tokMu.Unlock()
	s.token, s.metricsToken = admin, metrics
}

func (s *Server) tokens() (admin, metrics string) {
	s.tokMu.Lock()
	defer s.tokMu.Unlock()
	return s.token, s.metricsToken
}

func (s *Server) authorized(r *http.Request) bool {
	admin, _ := s.tokens()
	return bearerMatches(r, admin)
}

func bearerMatches(r *http.Request, want string) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && identity.TokenMatches(strings.TrimSpace(tok), want)
}

func (s *Server) health(r *http.Request) (any, int, error) {
	if wb, ok := s.cfg.Backend.(WitnessBackend); ok {
		if ok, status := wb.Healthy(); !ok {
			return Health{Status: status, Postgres: "none"}, http.StatusServiceUnavailable, nil
		}
		return Health{Status: "ok", Postgres: "none"}, http.StatusOK, nil
	}
	n := s.cfg.Backend.Node(r.Context())
	if n.Postgres.State == "running" {
		return Health{Status: "ok", Postgres: n.Postgres.State}, http.StatusOK, nil
	}
	return Health{Status: "unavailable", Postgres: n.Postgres.State}, http.StatusServiceUnavailable, nil
}

// RoleCheck answers GET /primary and /replica.
type RoleCheck struct {
	Role     string `json:"role"`
	Postgres string `json:"postgres"`
	Recovery bool   `json:"in_recovery"`
}

// rolecheck answers 200 when this node is in role with PostgreSQL
// running accordingly (read-write for the primary, in recovery for the
// replica), 503 otherwise: the checks HAProxy users know from Patroni.
func (s *Server) rolecheck(role string) func(r *http.Request) (any, int, error) {
	return func(r *http.Request) (any, int, error) {
		n := s.cfg.Backend.Node(r.Context())
		body := RoleCheck{Role: n.Role, Postgres: n.Postgres.State, Recovery: n.Postgres.InRecovery}
		ok := n.Role == role && n.Postgres.State == "running" && n.Postgres.InRecovery == (role == "secondary")
		if ok {
			return body, http.StatusOK, nil
		}
		return body, http.StatusServiceUnavailable, nil
	}
}

func (s *Server) node(r *http.Request) (any, int, error) {
	return s.cfg.Backend.Node(r.Context()), http.StatusOK, nil
}

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	e := errorFor(err)
	if e.Status >= 500 {
		s.cfg.Log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	} else {
		s.cfg.Log.Debug("request refused", "method", r.Method, "path", r.URL.Path, "code", e.Code, "remote", r.RemoteAddr)
	}
	writeJSON(w, e.Status, ErrorBody{Error: ErrorDetail{Code: e.Code, Message: e.Message}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// Start listens and serves in the background; it returns once the socket
// is bound, so a port conflict is reported at start-up.
func (s *Server) Start(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("while listening on %s for the node API: %w", s.cfg.Listen, err)
	}
	s.ln = ln
	s.cfg.Log.Info("node API listening", "addr", ln.Addr().String())
	go func() {
		defer close(s.done)
		err := s.http.Serve(tls.NewListener(ln, s.http.TLSConfig))
		if !errors.Is(err, http.ErrServerClosed) {
			s.err = err
			s.cfg.Log.Error("node API stopped", "err", err)
		}
	}()
	return nil
}

// Addr is the bound address (useful when Listen asked for port 0).
func (s *Server) Addr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Stop finishes in-flight requests within ctx's deadline, then closes.
func (s *Server) Stop(ctx context.Context) error {
	var err error
	s.once.Do(func() {
		err = s.http.Shutdown(ctx)
		if s.ln != nil {
			<-s.done
		}
	})
	return err
}
