package webui

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/tandem-ha/tandem/internal/api"
)

// peerTimeout bounds the question to the peer within one poll of the
// page (about a second): a dead peer must not stall the page's view of
// this node.
const peerTimeout = 800 * time.Millisecond

// NodeStatus is one node as the page shows it.
type NodeStatus struct {
	Name      string           `json:"name"`
	Address   string           `json:"address,omitempty"`
	Reachable bool             `json:"reachable"`
	Error     string           `json:"error,omitempty"`
	View      *api.ClusterView `json:"view,omitempty"`
	// Via says who answered for this node: "itself" (the node that
	// served the page) or "peer API from <node>".
	Via string `json:"via"`
}

// Status is GET /ui/api/status: what `tandem status` shows, for the page.
type Status struct {
	// AnsweredBy is the node that answered this request.
	AnsweredBy string       `json:"answered_by"`
	Role       string       `json:"session_role"`
	CSRF       string       `json:"csrf"`
	Nodes      []NodeStatus `json:"nodes"`
	Events     []api.Event  `json:"events"`
	History    []Sample     `json:"history"`
	At         time.Time    `json:"at"`
	// Peer is the session the peer opened for this page: the page asks
	// the peer with it when this node stops answering.
	Peer *PeerTicket `json:"peer_ticket,omitempty"`
}

// PeerStatus is GET /ui/peer/status: a node's view and samples, for its
// peer's page.
type PeerStatus struct {
	View    api.ClusterView `json:"view"`
	History []Sample        `json:"history"`
}

func (s *Server) status(w http.ResponseWriter, r *http.Request, ss *session) {
	ctx := r.Context()
	v, err := s.recentView(ctx)
	if err != nil {
		writeError(w, err)
		return
	}
	s.hist.observe(s.cfg.Now(), v, s.commits(ctx))
	out := Status{AnsweredBy: v.Node.Name, Role: ss.role, CSRF: ss.csrf, At: s.cfg.Now().UTC()}
	self := NodeStatus{Name: v.Node.Name, Address: net.JoinHostPort(v.Node.IP, strconv.Itoa(v.Node.APIPort)), Reachable: true, View: &v, Via: "itself"}
	out.Nodes = append(out.Nodes, self)
	history := s.hist.samples()
	if v.Peer != nil {
		ps := NodeStatus{Name: v.Peer.Name, Address: peerAddr(v.Peer), Via: "peer API from " + v.Node.Name}
		pctx, cancel := context.WithTimeout(ctx, peerTimeout)
		p, err := s.askPeer(pctx, v.Peer)
		cancel()
		if err != nil {
			ps.Error = err.Error()
		} else {
			ps.Reachable, ps.View = true, &p.View
			// The primary's samples are the ones with a commit rate and
			// the lag of the secondary as the primary sees it.
			if p.View.Node.Role == "primary" {
				history = p.History
			}
		}
		out.Nodes = append(out.Nodes, ps)
	}
	out.History = history
	if ss.peer == nil && ss.origin == "" && len(out.Nodes) > 1 && out.Nodes[1].Reachable {
		s.ticketFromPeer(r, ss)
	}
	out.Peer = ss.peer
	if ev, err := s.cfg.Backend.Events(ctx, 30); err == nil {
		out.Events = ev.Events
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) peerStatus(w http.ResponseWriter, r *http.Request) {
	v, err := s.recentView(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	s.hist.observe(s.cfg.Now(), v, s.commits(r.Context()))
	writeJSON(w, http.StatusOK, PeerStatus{View: v, History: s.hist.samples()})
}

func peerAddr(m *api.Member) string {
	return net.JoinHostPort(m.IP, strconv.Itoa(m.APIPort))
}

// peerClient is one kept-alive client to the peer, pinned to its
// certificate(s) and presenting this node's: rebuilt when any changes.
func (s *Server) peerClient(m *api.Member) *api.Client {
	cert := s.cfg.Backend.Certificate()
	// A rotation hands out a new *tls.Certificate: its pointer is the key.
	key := fmt.Sprintf("%s|%s|%s|%p", peerAddr(m), m.Fingerprint, m.NextFingerprint, cert)
	s.peerMu.Lock()
	defer s.peerMu.Unlock()
	if s.peerC != nil && s.peerKey == key {
		return s.peerC
	}
	cfg := api.ClientConfig{
		Addr: peerAddr(m), Fingerprint: m.Fingerprint, Cert: cert,
		DialTimeout: 700 * time.Millisecond, HandshakeTimeout: 700 * time.Millisecond,
	}
	if m.NextFingerprint != "" {
		cfg.AlsoAccept = []string{m.NextFingerprint}
	}
	s.peerC, s.peerKey = api.NewClient(cfg), key
	return s.peerC
}

func (s *Server) askPeer(ctx context.Context, m *api.Member) (PeerStatus, error) {
	var p PeerStatus
	err := s.peerClient(m).Do(ctx, http.MethodGet, "/ui/peer/status", nil, &p)
	return p, err
}
