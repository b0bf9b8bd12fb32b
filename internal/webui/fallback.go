package webui

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/tandem-ha/tandem/internal/api"
)

// When the node that served the page stops answering (powered off, cut
// off), the page asks the other node itself, as the console's cache does.
// The browser holds no cookie for the other node's origin, and a
// SameSite=Strict cookie would not go there anyway; so at login (or at
// the first poll the peer answers) the node asks its peer, over the
// pinned peer link, to open a session bound to the page's origin, and
// hands that PeerTicket to the page. The page sends it in
// X-Tandem-Session (a header: nothing a third site can make a browser
// send), and the peer accepts it only with that Origin, with CORS granted
// to that origin alone.

// PeerTicket is a session the peer opened for this page.
type PeerTicket struct {
	// URL is the peer's web console, https://ip:port/ui/.
	URL     string `json:"url"`
	Session string `json:"session"`
	CSRF    string `json:"csrf"`
}

// PeerSessionRequest is the node's POST /ui/peer/session to its peer.
type PeerSessionRequest struct {
	Role   string `json:"role"`
	Origin string `json:"origin"`
}

func pageOrigin(r *http.Request) string { return "https://" + r.Host }

// ticketFromPeer asks the peer for a session for ss's page, within the
// peer's time of a poll; a peer that does not answer leaves none, and
// the next poll asks again.
func (s *Server) ticketFromPeer(r *http.Request, ss *session) {
	ctx, cancel := context.WithTimeout(r.Context(), peerTimeout)
	defer cancel()
	v, err := s.recentView(ctx)
	if err != nil || v.Peer == nil {
		return
	}
	var t PeerTicket
	if err := s.peerClient(v.Peer).Do(ctx, http.MethodPost, "/ui/peer/session", PeerSessionRequest{Role: ss.role, Origin: pageOrigin(r)}, &t); err != nil {
		s.cfg.Log.Debug("the peer opened no session for the page", "err", err)
		return
	}
	t.URL = "https://" + peerAddr(v.Peer) + "/ui/"
	s.sessions.setPeer(ss.id, &t)
	ss.peer = &t
}

func (s *Server) peerSession(w http.ResponseWriter, r *http.Request) {
	var req PeerSessionRequest
	if err := decodeJSON(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	if (req.Role != RoleAdmin && req.Role != RoleViewer) || !strings.HasPrefix(req.Origin, "https://") {
		writeError(w, api.Errorf(http.StatusBadRequest, api.CodeBadRequest, "role %q or origin %q is not one a page has", req.Role, req.Origin))
		return
	}
	// Bound to the token in force here of the same role: a rotation on
	// this node ends it as it ends this node's own sessions.
	admin, viewer := s.tokens()
	tok := viewer
	if req.Role == RoleAdmin {
		tok = admin
	}
	ss := s.sessions.createFor(req.Role, tokenHash(tok), req.Origin)
	writeJSON(w, http.StatusOK, PeerTicket{Session: ss.id, CSRF: ss.csrf})
}

// cors answers the browser's preflight, and marks the answers, for the
// origins the peer's page can have: the peer's address, the cluster IP
// and the cluster's DNS name, on this API port. It reports whether it
// answered the request itself.
func (s *Server) cors(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" || origin == pageOrigin(r) || !strings.HasPrefix(r.URL.Path, "/ui/api/") {
		return false
	}
	if !s.originAllowed(r.Context(), origin) {
		return false // no CORS headers: the browser refuses the answer
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	h.Add("Vary", "Origin")
	if r.Method == http.MethodOptions {
		h.Set("Access-Control-Allow-Methods", "GET, POST")
		h.Set("Access-Control-Allow-Headers", strings.Join([]string{"Content-Type", CSRFHeader, SessionHeader}, ", "))
		h.Set("Access-Control-Max-Age", "600")
		w.WriteHeader(http.StatusNoContent)
		return true
	}
	return false
}

func (s *Server) originAllowed(ctx context.Context, origin string) bool {
	v, err := s.recentView(ctx)
	if err != nil || v.Peer == nil {
		return false
	}
	port := strconv.Itoa(v.Node.APIPort)
	allowed := []string{"https://" + peerAddr(v.Peer)}
	if rec := v.Record; rec != nil {
		if ip, _, ok := strings.Cut(rec.ClusterIP, "/"); ok || ip != "" {
			allowed = append(allowed, "https://"+net.JoinHostPort(ip, port))
		}
		if rec.DNSName != "" {
			allowed = append(allowed, "https://"+net.JoinHostPort(strings.TrimSuffix(rec.DNSName, "."), port))
		}
	}
	for _, a := range allowed {
		if origin == a {
			return true
		}
	}
	return false
}
