// Package notify tells a person about events that need one: a configured
// command and/or webhook is called for each, with retries, from its own
// goroutine so the role logic never waits for a slow receiver.
package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/tandem-ha/tandem/internal/config"
	"github.com/tandem-ha/tandem/internal/tool"
)

// Event is what a receiver gets, as JSON.
type Event struct {
	Cluster string    `json:"cluster"`
	Node    string    `json:"node"` // the node that saw it
	About   string    `json:"about,omitempty"`
	Kind    string    `json:"kind"`
	Term    int64     `json:"term"`
	Message string    `json:"message"`
	At      time.Time `json:"at"`
}

// DefaultEvents are the kinds that need a person.
var DefaultEvents = []string{
	"secondary_unavailable", "secondary_recovered", "failover_started", "failover_finished", "failover_failed",
	"fenced", "wal_cap_reached", "reseeded", "sync_degraded", "cluster_ip_conflict", "service_failed",
	"watchdog_unavailable",
	// sync.files: a file the secondary's services need did not arrive.
	"file_sync_failed",
	// Automatic failover mode: a primary that fenced itself, a failover
	// that happened (or could not) without a person.
	"lease_lost", "lease_retaken", "automatic_failover_started", "automatic_failover_finished", "automatic_failover_blocked",
}

// Config says where notifications go.
type Config struct {
	Command []string      // run with the event as JSON on stdin
	Webhook string        // POSTed the event as JSON
	Events  []string      // kinds to send; empty = DefaultEvents
	Retries int           // attempts after the first
	Timeout time.Duration // per attempt
}

// Notifier delivers events in the background.
type Notifier struct {
	cfg   Config
	log   *slog.Logger
	queue chan Event
	http  *http.Client
	// backoff is the pause before retry i (tests shorten it).
	backoff func(i int) time.Duration
}

// queueSize bounds what waits for delivery; beyond it events are dropped
// (and logged): a dead receiver must not grow memory without bound.
const queueSize = 256

// New returns a notifier; Start runs its delivery goroutine.
func New(cfg Config, log *slog.Logger) *Notifier {
	if len(cfg.Events) == 0 {
		cfg.Events = DefaultEvents
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	return &Notifier{
		cfg: cfg, log: log, queue: make(chan Event, queueSize),
		http:    &http.Client{Timeout: cfg.Timeout, CheckRedirect: refuseRedirect},
		backoff: func(i int) time.Duration { return time.Duration(1<<i) * time.Second },
	}
}

// refuseRedirect follows no redirect. A 307 or 308 re-posts the event, to
// wherever the receiver says (another host, https to http); a webhook's
// URL is configured, so the final one can be.
func refuseRedirect(req *http.Request, _ []*http.Request) error {
	return fmt.Errorf("the webhook answered with a redirect to %s; tandemd follows none: configure the final URL in notify.webhook", config.MaskURL(req.URL.String()))
}

// Enabled says whether anything is configured.
func (n *Notifier) Enabled() bool { return n != nil && (len(n.cfg.Command) > 0 || n.cfg.Webhook != "") }

// Notify queues e if its kind is wanted. It never blocks.
func (n *Notifier) Notify(e Event) {
	if !n.Enabled() || !slices.Contains(n.cfg.Events, e.Kind) {
		return
	}
	select {
	case n.queue <- e:
	default:
		n.log.Error("notification queue full; dropping", "kind", e.Kind)
	}
}

// Start delivers queued events until ctx ends.
func (n *Notifier) Start(ctx context.Context) {
	if !n.Enabled() {
		return
	}
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case e := <-n.queue:
				n.deliver(ctx, e)
			}
		}
	}()
}

func (n *Notifier) deliver(ctx context.Context, e Event) {
	body, _ := json.Marshal(e)
	for _, target := range []struct {
		name string
		send func(context.Context, []byte) error
		on   bool
	}{
		{"command", n.runCommand, len(n.cfg.Command) > 0},
		{"webhook", n.post, n.cfg.Webhook != ""},
	} {
		if !target.on {
			continue
		}
		for i := 0; ; i++ {
			actx, cancel := context.WithTimeout(ctx, n.cfg.Timeout)
			err := target.send(actx, body)
			cancel()
			if err == nil {
				n.log.Info("notification sent", "to", target.name, "kind", e.Kind)
				break
			}
			if i >= n.cfg.Retries || ctx.Err() != nil {
				n.log.Error("notification not delivered", "to", target.name, "kind", e.Kind, "attempts", i+1, "err", err)
				break
			}
			n.log.Warn("notification failed; retrying", "to", target.name, "kind", e.Kind, "attempt", i+1, "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(n.backoff(i)):
			}
		}
	}
}

func (n *Notifier) post(ctx context.Context, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.cfg.Webhook, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "tandemd")
	res, err := n.http.Do(req)
	if err != nil {
		// A *url.Error quotes the whole URL, secret and all.
		var ue *url.Error
		if errors.As(err, &ue) {
			return fmt.Errorf("%s %s: %w", ue.Op, config.MaskURL(n.cfg.Webhook), ue.Err)
		}
		return err
	}
	res.Body.Close()
	if res.StatusCode/100 != 2 {
		return fmt.Errorf("webhook answered %s", res.Status)
	}
	return nil
}

func (n *Notifier) runCommand(ctx context.Context, body []byte) error {
	var e Event
	_ = json.Unmarshal(body, &e)
	_, err := tool.Run(ctx, n.log, tool.Cmd{
		Path: n.cfg.Command[0], Args: n.cfg.Command[1:], Stdin: bytes.NewReader(body),
		Env: []string{"TANDEM_EVENT_KIND=" + e.Kind, "TANDEM_EVENT_NODE=" + e.Node, fmt.Sprintf("TANDEM_TERM=%d", e.Term), "TANDEM_EVENT_MESSAGE=" + e.Message},
	})
	return err
}
