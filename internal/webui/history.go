package webui

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tandem-ha/tandem/internal/api"
)

const (
	// sampleEvery and historySlots: one sample every 10 s for an hour.
	sampleEvery  = 10 * time.Second
	historySlots = 360
)

// Sample is one point of the page's plots.
type Sample struct {
	At   time.Time `json:"at"`
	Role string    `json:"role"`
	// LagBytes and LagSeconds: the secondary's replication lag, as the
	// primary sees it (on a secondary, what it received and not replayed).
	LagBytes   int64   `json:"lag_bytes"`
	LagSeconds float64 `json:"lag_seconds"`
	// WALRate is the primary's WAL written per second since the previous
	// sample, and CommitRate its transactions committed per second (when
	// the node counts them).
	WALRate    float64 `json:"wal_bytes_per_second"`
	CommitRate float64 `json:"commits_per_second"`
}

// CommitCounter is what a Backend offers when it can count PostgreSQL's
// commits (cluster.Node does); without it the plot has no commit rate.
type CommitCounter interface {
	Commits(ctx context.Context) (int64, error)
}

// history is the ring buffer of samples; tandemd keeps it in memory
// only, so no database is needed and a restart starts it empty.
type history struct {
	mu          sync.Mutex
	buf         []Sample
	next        int
	full        bool
	lastLSN     uint64
	lastCommits int64 // -1: none counted yet
	lastAt      time.Time
	lastRole    string
}

func newHistory(n int) *history { return &history{buf: make([]Sample, n), lastCommits: -1} }

// observe takes a sample of v when one is due; commits, asked only then,
// counts the commits (ok false: not known).
func (h *history) observe(now time.Time, v api.ClusterView, commits func() (int64, bool)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	// Requests observe too; a sample per sampleEvery at most keeps the
	// ring an hour long whatever the page's polling. A new role is
	// sampled at once: the plots start when the cluster does, and the
	// moment of a switchover or failover is a point of its own.
	if !h.lastAt.IsZero() && now.Sub(h.lastAt) < sampleEvery && v.Node.Role == h.lastRole {
		return
	}
	h.lastRole = v.Node.Role
	smp := Sample{At: now.UTC(), Role: v.Node.Role}
	if r := v.Replication; r != nil {
		smp.LagBytes, smp.LagSeconds = r.LagBytes, r.LagSeconds
	}
	lsn, ok := parseLSN(v.Node.Postgres.LSN)
	if ok && h.lastLSN != 0 && lsn >= h.lastLSN && v.Node.Role == "primary" {
		smp.WALRate = float64(lsn-h.lastLSN) / now.Sub(h.lastAt).Seconds()
	}
	if ok {
		h.lastLSN = lsn
	}
	if n, ok := commits(); ok {
		// A reset of the statistics counts from zero again: no rate then.
		if h.lastCommits >= 0 && n >= h.lastCommits && v.Node.Role == "primary" {
			smp.CommitRate = float64(n-h.lastCommits) / now.Sub(h.lastAt).Seconds()
		}
		h.lastCommits = n
	} else {
		h.lastCommits = -1
	}
	h.lastAt = now
	h.buf[h.next] = smp
	h.next = (h.next + 1) % len(h.buf)
	h.full = h.full || h.next == 0
}

// samples returns the ring's samples, oldest first.
func (h *history) samples() []Sample {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.full {
		return append([]Sample(nil), h.buf[:h.next]...)
	}
	return append(append([]Sample(nil), h.buf[h.next:]...), h.buf[:h.next]...)
}

// parseLSN reads PostgreSQL's "X/Y" (two hex halves).
func parseLSN(s string) (uint64, bool) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok {
		return 0, false
	}
	h, err1 := strconv.ParseUint(hi, 16, 32)
	l, err2 := strconv.ParseUint(lo, 16, 32)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return h<<32 | l, true
}

// Run samples this node every sampleEvery until ctx ends, so the plots
// cover the last hour whether or not a page was open.
func (s *Server) Run(ctx context.Context) {
	t := time.NewTicker(sampleEvery)
	defer t.Stop()
	for {
		vctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if v, err := s.cfg.Backend.View(vctx); err == nil {
			s.hist.observe(s.cfg.Now(), v, s.commits(vctx))
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// commits counts the node's commits when its Backend can.
func (s *Server) commits(ctx context.Context) func() (int64, bool) {
	return func() (int64, bool) {
		cc, ok := s.cfg.Backend.(CommitCounter)
		if !ok {
			return 0, false
		}
		n, err := cc.Commits(ctx)
		return n, err == nil
	}
}
