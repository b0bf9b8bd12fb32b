package webui

import (
	"context"
	"sync"
	"time"

	"github.com/tandem-ha/tandem/internal/api"
)

// viewFresh is how long a node's view serves the page's reads: every
// view opens a PostgreSQL connection, and each open page polls every
// second, asking this node and its peer; sharing one view per half
// second bounds those connections whatever the number of pages.
// Plans and runs always take a fresh view.
const viewFresh = 500 * time.Millisecond

type viewCache struct {
	fetch sync.Mutex // one View call at a time; the others wait for it
	mu    sync.Mutex
	v     api.ClusterView
	at    time.Time
}

// recentView returns a view at most viewFresh old.
func (s *Server) recentView(ctx context.Context) (api.ClusterView, error) {
	c := &s.views
	if v, ok := c.get(); ok {
		return v, nil
	}
	c.fetch.Lock()
	defer c.fetch.Unlock()
	if v, ok := c.get(); ok {
		return v, nil // fetched while this one waited
	}
	v, err := s.cfg.Backend.View(ctx)
	if err != nil {
		return v, err
	}
	c.mu.Lock()
	c.v, c.at = v, time.Now()
	c.mu.Unlock()
	return v, nil
}

func (c *viewCache) get() (api.ClusterView, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.v, !c.at.IsZero() && time.Since(c.at) < viewFresh
}
