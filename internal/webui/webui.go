// Package webui is the web console tandemd serves under /ui/ on its
// HTTPS API port: a page built into the binary, a login with the admin or
// the viewer token, cookie sessions with CSRF protection, the status of
// both nodes, and the switchover and failover with the console's checks.
package webui

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/tandem-ha/tandem/internal/api"
	"github.com/tandem-ha/tandem/internal/identity"
)

//go:embed static
var static embed.FS

// Backend is what the web console needs from the node: the same calls
// the node API's handlers make.
type Backend interface {
	View(ctx context.Context) (api.ClusterView, error)
	Events(ctx context.Context, limit int) (api.EventList, error)
	Switchover(ctx context.Context, req api.SwitchoverRequest) (api.SwitchoverResult, error)
	Failover(ctx context.Context, req api.FailoverRequest) (api.FailoverResult, error)
	// PeerFingerprints are the pinned certificates of the peer node,
	// whose web console asks this one for its view.
	PeerFingerprints() []string
	// Certificate is this node's certificate in force, presented to the
	// peer as the peer calls do.
	Certificate() *tls.Certificate
}

// Config builds a Server.
type Config struct {
	Backend     Backend
	AdminToken  string
	ViewerToken string
	Log         *slog.Logger
	// IdleTimeout ends a session unused this long; Lifetime ends any
	// session this long after login. Zero: the defaults.
	IdleTimeout time.Duration
	Lifetime    time.Duration
	// Now is the clock (tests); nil: time.Now.
	Now func() time.Time
}

const (
	defaultIdle     = 30 * time.Minute
	defaultLifetime = 12 * time.Hour
	// CookieName holds the session id.
	CookieName = "tandem_session"
	// CSRFHeader carries the session's CSRF token on every POST.
	CSRFHeader = "X-CSRF-Token"
	// SessionHeader carries a session the peer opened for the page's
	// origin (PeerTicket), when the page asks the peer directly.
	SessionHeader = "X-Tandem-Session"
	maxBody       = 64 << 10
)

// Server serves the web console. It is an http.Handler for /ui/.
type Server struct {
	cfg      Config
	sessions *sessions
	mux      *http.ServeMux
	hist     *history
	views    viewCache

	tokMu         sync.Mutex
	admin, viewer string

	peerMu  sync.Mutex
	peerKey string
	peerC   *api.Client
}

// New returns the web console's handler.
func New(cfg Config) *Server {
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = defaultIdle
	}
	if cfg.Lifetime <= 0 {
		cfg.Lifetime = defaultLifetime
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, sessions: newSessions(cfg.IdleTimeout, cfg.Lifetime, cfg.Now), admin: cfg.AdminToken, viewer: cfg.ViewerToken, hist: newHistory(historySlots)}
	sub, _ := fs.Sub(static, "static")
	files := http.StripPrefix("/ui/", http.FileServer(http.FS(sub)))
	m := http.NewServeMux()
	m.Handle("GET /ui/", s.securityHeaders(files))
	m.HandleFunc("POST /ui/login", s.login)
	m.HandleFunc("POST /ui/logout", s.withSession(false, s.logout))
	m.HandleFunc("GET /ui/api/status", s.withSession(false, s.status))
	m.HandleFunc("POST /ui/api/plan", s.withSession(false, s.plan))
	m.HandleFunc("POST /ui/api/run", s.withSession(true, s.run))
	// The peer's web console asks this node for its view and its
	// samples, authenticated by its pinned certificate like the peer API.
	m.HandleFunc("GET /ui/peer/status", s.peerOnly(s.peerStatus))
	m.HandleFunc("POST /ui/peer/switchover", s.peerOnly(s.peerSwitchover))
	m.HandleFunc("POST /ui/peer/session", s.peerOnly(s.peerSession))
	s.mux = m
	return s
}

// SetTokens puts rotated tokens in force; sessions logged in with a token
// no longer in force end.
func (s *Server) SetTokens(admin, viewer string) {
	s.tokMu.Lock()
	s.admin, s.viewer = admin, viewer
	s.tokMu.Unlock()
	s.sessions.endUnless(tokenHash(admin), tokenHash(viewer))
}

func (s *Server) tokens() (admin, viewer string) {
	s.tokMu.Lock()
	defer s.tokMu.Unlock()
	return s.admin, s.viewer
}

// tokenHash identifies a token in a session without keeping the token.
func tokenHash(tok string) string {
	h := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(h[:8])
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/ui" {
		http.Redirect(w, r, "/ui/", http.StatusMovedPermanently)
		return
	}
	if s.cors(w, r) {
		return
	}
	s.mux.ServeHTTP(w, r)
}

// securityHeaders: the page loads nothing from elsewhere and is never
// framed, so a CSP of 'self' costs nothing and blocks injected scripts.
// Its script may connect to one other origin: the peer node's web
// console, which it asks when this node stops answering (fallback.go).
func (s *Server) securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		connect := "'self'"
		if v, err := s.recentView(r.Context()); err == nil && v.Peer != nil {
			connect += " https://" + peerAddr(v.Peer)
		}
		w.Header().Set("Content-Security-Policy", "default-src 'self'; connect-src "+connect+"; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Referrer-Policy", "no-referrer")
		w.Header().Set("Cache-Control", "no-cache")
		h.ServeHTTP(w, r)
	})
}

// LoginRequest is POST /ui/login.
type LoginRequest struct {
	Token string `json:"token"`
}

// LoginResult answers a login; the session id is only in the cookie.
type LoginResult struct {
	Role string `json:"role"`
	CSRF string `json:"csrf"`
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	var req LoginRequest
	if err := decodeJSON(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	tok := strings.TrimSpace(req.Token)
	admin, viewer := s.tokens()
	// Both compared, in constant time, whichever matches: the answer's
	// timing says nothing about which token or how much of it was right.
	isAdmin := identity.TokenMatches(tok, admin)
	isViewer := identity.TokenMatches(tok, viewer)
	var role string
	switch {
	case isAdmin:
		role = RoleAdmin
	case isViewer:
		role = RoleViewer
	default:
		s.cfg.Log.Info("web console login refused", "remote", r.RemoteAddr)
		writeError(w, api.Errorf(http.StatusUnauthorized, api.CodeUnauthorized, "wrong or missing token: use the admin token (state_dir/admin-token) or the viewer token (state_dir/viewer-token) of this node"))
		return
	}
	ss := s.sessions.create(role, tokenHash(tok))
	s.cfg.Log.Info("web console login", "role", role, "remote", r.RemoteAddr)
	s.ticketFromPeer(r, ss)
	http.SetCookie(w, &http.Cookie{
		Name: CookieName, Value: ss.id, Path: "/ui/",
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode,
		MaxAge: int(s.cfg.Lifetime / time.Second),
	})
	writeJSON(w, http.StatusOK, LoginResult{Role: role, CSRF: ss.csrf})
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request, ss *session) {
	s.sessions.remove(ss.id)
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/ui/", HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode, MaxAge: -1})
	writeJSON(w, http.StatusOK, struct{}{})
}

// withSession admits a request with a live session; a POST must also
// carry the session's CSRF token in X-CSRF-Token (a header a form or a
// cross-site page cannot set), and an admin-only route refuses viewers.
func (s *Server) withSession(adminOnly bool, h func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var ss *session
		if id := r.Header.Get(SessionHeader); id != "" {
			// A session the peer opened for its page, asked across
			// origins: only from the origin it was opened for.
			ss = s.sessions.get(id)
			if ss != nil && (ss.origin == "" || r.Header.Get("Origin") != ss.origin) {
				ss = nil
			}
		} else if c, err := r.Cookie(CookieName); err == nil {
			ss = s.sessions.get(c.Value)
			if ss != nil && ss.origin != "" {
				ss = nil // a peer-opened session never travels as a cookie
			}
		}
		if ss == nil {
			writeError(w, api.Errorf(http.StatusUnauthorized, api.CodeUnauthorized, "not logged in, or the session expired: log in again"))
			return
		}
		if r.Method == http.MethodPost && !identity.TokenMatches(r.Header.Get(CSRFHeader), ss.csrf) {
			writeError(w, api.Errorf(http.StatusForbidden, api.CodeForbidden, "missing or wrong %s header: reload the page", CSRFHeader))
			return
		}
		if adminOnly && ss.role != RoleAdmin {
			writeError(w, api.Errorf(http.StatusForbidden, api.CodeForbidden, "a viewer session may only look: log in with the admin token to act"))
			return
		}
		h(w, r, ss)
	}
}

// peerOnly admits only the peer node, by its pinned client certificate.
func (s *Server) peerOnly(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ok := false
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			got := identity.Fingerprint(r.TLS.PeerCertificates[0].Raw)
			for _, want := range s.cfg.Backend.PeerFingerprints() {
				ok = ok || (want != "" && want == got)
			}
		}
		if !ok {
			writeError(w, api.Errorf(http.StatusForbidden, api.CodeForbidden, "peer endpoints answer only the pinned peer node's certificate"))
			return
		}
		h(w, r)
	}
}

func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	// Only JSON: a cross-site form cannot send it without a CORS
	// preflight, which this server never grants.
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return api.Errorf(http.StatusUnsupportedMediaType, api.CodeBadRequest, "send the body as application/json, not %q", ct)
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return api.Errorf(http.StatusBadRequest, api.CodeBadRequest, "the body is not the JSON expected: %v", err)
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers with the node API's envelope. Anything not an
// *api.Error is reported by code only, as the node API does: its text
// may name paths a browser should not learn.
func writeError(w http.ResponseWriter, err error) {
	var e *api.Error
	if !errors.As(err, &e) {
		e = &api.Error{Status: http.StatusInternalServerError, Code: api.CodeInternal, Message: "internal error; the node's log has the details"}
	}
	writeJSON(w, e.Status, api.ErrorBody{Error: api.ErrorDetail{Code: e.Code, Message: e.Message}})
}
