package webui

import (
	"crypto/rand"
	"encoding/base64"
	"sync"
	"time"
)

// Roles a session can have: the admin token's, which may act, and the
// viewer token's, which may only read.
const (
	RoleAdmin  = "admin"
	RoleViewer = "viewer"
)

// session is one logged-in browser. Its id travels only in the cookie;
// its CSRF token only in the page's X-CSRF-Token header.
type session struct {
	id, csrf  string
	role      string
	created   time.Time
	lastSeen  time.Time
	tokenHash string // which token logged in: a rotated token ends its sessions
	// origin, on a session the peer opened for a page it served, is that
	// page's origin: the session is accepted only from it, by header.
	origin string
	// peer is the session the peer node opened for this one's page, to
	// ask it directly when this node stops answering.
	peer *PeerTicket
}

// sessions is the in-memory store: a restart of tandemd logs everyone
// out, which is the safe direction.
type sessions struct {
	mu       sync.Mutex
	m        map[string]*session
	idle     time.Duration
	lifetime time.Duration
	now      func() time.Time
}

func newSessions(idle, lifetime time.Duration, now func() time.Time) *sessions {
	return &sessions{m: map[string]*session{}, idle: idle, lifetime: lifetime, now: now}
}

func randomToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func (s *sessions) create(role, tokenHash string) *session {
	return s.createFor(role, tokenHash, "")
}

// createFor makes a session accepted only by header from origin (""
// for a cookie session).
func (s *sessions) createFor(role, tokenHash, origin string) *session {
	now := s.now()
	ss := &session{id: randomToken(), csrf: randomToken(), role: role, created: now, lastSeen: now, tokenHash: tokenHash, origin: origin}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweep(now)
	s.m[ss.id] = ss
	return ss
}

// get returns the live session with id and marks it used, or nil: an
// unknown id, or one idle too long or past its lifetime (then removed).
func (s *sessions) get(id string) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.m[id]
	if ss == nil {
		return nil
	}
	now := s.now()
	if s.expired(ss, now) {
		delete(s.m, id)
		return nil
	}
	ss.lastSeen = now
	c := *ss
	return &c
}

func (s *sessions) expired(ss *session, now time.Time) bool {
	return now.Sub(ss.lastSeen) > s.idle || now.Sub(ss.created) > s.lifetime
}

func (s *sessions) setPeer(id string, t *PeerTicket) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ss := s.m[id]; ss != nil {
		ss.peer = t
	}
}

func (s *sessions) remove(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, id)
}

// endUnless removes every session not logged in with one of the tokens
// in force (a token rotated by SIGHUP logs its sessions out).
func (s *sessions) endUnless(valid ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, ss := range s.m {
		keep := false
		for _, v := range valid {
			keep = keep || ss.tokenHash == v
		}
		if !keep {
			delete(s.m, id)
		}
	}
}

func (s *sessions) sweep(now time.Time) {
	for id, ss := range s.m {
		if s.expired(ss, now) {
			delete(s.m, id)
		}
	}
}
