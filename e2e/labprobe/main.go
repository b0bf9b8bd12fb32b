// Command labprobe is the end-to-end tests' witness inside a lab host: a
// writer that records every write through the cluster IP as acknowledged,
// failed or unknown, and a sampler that records which nodes accept writes.
// The tests run it with `tandem lab exec client -- labprobe …` and check
// its records afterwards. It is a test tool, not part of the product.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Write is one attempted write.
type Write struct {
	ID      int64  `json:"id"`
	Start   int64  `json:"start"` // unix nanoseconds
	End     int64  `json:"end"`
	Outcome string `json:"outcome"` // ok, failed (surely not written), unknown
	Error   string `json:"error,omitempty"`
}

// Sample is one look at every node.
type Sample struct {
	At       int64    `json:"at"`
	Writable []string `json:"writable"` // nodes that accepted a connection and are not in recovery
}

func main() {
	mode := flag.String("mode", "write", "write or sample")
	dsn := flag.String("dsn", "", "write: connection string of the cluster endpoint")
	nodes := flag.String("nodes", "", "sample: name=host,… of the nodes")
	password := flag.String("password", "", "sample: the postgres password")
	out := flag.String("out", "", "file to append JSON lines to")
	every := flag.Duration("every", 5*time.Millisecond, "pause between writes or samples")
	start := flag.Int64("start", 1, "write: first id")
	listen := flag.String("listen", "", "webhook: address to receive notifications on")
	url := flag.String("url", "", "get: the https URL to fetch (certificate not checked)")
	flag.DurationVar(&connectTimeout, "connect-timeout", connectTimeout, "bound on each connection attempt")
	flag.Parse()
	if *out == "" {
		*out = os.DevNull
	}
	f, err := os.OpenFile(*out, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	defer f.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	enc := json.NewEncoder(f)
	switch *mode {
	case "webhook":
		webhook(ctx, *listen, f)
	case "get":
		os.Exit(get(*url))
	case "write":
		write(ctx, *dsn, *start, *every, enc)
	case "sample":
		sample(ctx, *nodes, *password, *every, enc)
	default:
		fmt.Fprintln(os.Stderr, "unknown mode", *mode)
		os.Exit(2)
	}
}

func write(ctx context.Context, dsn string, id int64, every time.Duration, enc *json.Encoder) {
	var conn *pgx.Conn
	ensureTable := func() {
		for ctx.Err() == nil {
			c, err := connect(ctx, dsn)
			if err == nil {
				_, err = c.Exec(ctx, `CREATE TABLE IF NOT EXISTS probe_writes (id bigint PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())`)
				c.Close(context.Background())
				if err == nil {
					return
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	ensureTable()
	for ; ctx.Err() == nil; id++ {
		w := Write{ID: id, Start: time.Now().UnixNano()}
		if conn == nil || conn.IsClosed() {
			c, err := connect(ctx, dsn)
			if err != nil {
				w.End, w.Outcome, w.Error = time.Now().UnixNano(), "failed", err.Error()
				_ = enc.Encode(w)
				sleep(ctx, every)
				continue
			}
			conn = c
		}
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := conn.Exec(wctx, `INSERT INTO probe_writes (id) VALUES ($1)`, id)
		cancel()
		w.End = time.Now().UnixNano()
		var pe *pgconn.PgError
		switch {
		case err == nil:
			w.Outcome = "ok"
		case errors.As(err, &pe) && pe.Code != "57P01" && pe.Code != "57P02" && pe.Code != "57P03":
			// The server refused the statement (read-only, …): not written.
			w.Outcome, w.Error = "failed", err.Error()
		case pgconn.SafeToRetry(err):
			w.Outcome, w.Error = "failed", err.Error()
		default:
			// Sent, but no answer: it may or may not have committed.
			w.Outcome, w.Error = "unknown", err.Error()
		}
		if err != nil {
			conn.Close(context.Background())
			conn = nil
		}
		_ = enc.Encode(w)
		sleep(ctx, every)
	}
	if conn != nil {
		conn.Close(context.Background())
	}
}

func sample(ctx context.Context, nodes, password string, every time.Duration, enc *json.Encoder) {
	type node struct {
		name, host string
		conn       *pgx.Conn
	}
	var ns []*node
	for _, kv := range strings.Split(nodes, ",") {
		if name, host, ok := strings.Cut(kv, "="); ok {
			ns = append(ns, &node{name: name, host: host})
		}
	}
	for ctx.Err() == nil {
		s := Sample{At: time.Now().UnixNano(), Writable: []string{}}
		// All nodes at once, each bounded, so a powered-off node (whose
		// connection attempts hang) does not slow the sampling down.
		writable := make([]bool, len(ns))
		var wg sync.WaitGroup
		for i, n := range ns {
			wg.Go(func() {
				qctx, cancel := context.WithTimeout(ctx, 250*time.Millisecond)
				defer cancel()
				if n.conn == nil || n.conn.IsClosed() {
					c, err := pgx.Connect(qctx, fmt.Sprintf("host=%s user=postgres password=%s dbname=postgres", n.host, password))
					if err != nil {
						return
					}
					n.conn = c
				}
				if err := n.conn.QueryRow(qctx, `SELECT NOT pg_is_in_recovery()`).Scan(&writable[i]); err != nil {
					n.conn.Close(context.Background())
					n.conn = nil
					writable[i] = false
				}
			})
		}
		wg.Wait()
		for i, n := range ns {
			if writable[i] {
				s.Writable = append(s.Writable, n.name)
			}
		}
		_ = enc.Encode(s)
		sleep(ctx, every)
	}
}

// connectTimeout bounds each connection attempt: the writer behaves like
// a client that retries briskly, so an outage it records is the cluster's,
// not a long client timeout's.
var connectTimeout = 2 * time.Second

func connect(ctx context.Context, dsn string) (*pgx.Conn, error) {
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	return pgx.Connect(cctx, dsn)
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// webhook records every POSTed notification body as one line.
func webhook(ctx context.Context, listen string, f *os.File) {
	var mu sync.Mutex
	srv := &http.Server{Addr: listen, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		f.Write(append(bytes.TrimSpace(b), '\n'))
		mu.Unlock()
	})}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// get prints the status code and body of an https URL; node
// certificates are self-signed and pinned elsewhere, so not checked here.
func get(url string) int {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	res, err := c.Get(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	fmt.Printf("%d\n%s", res.StatusCode, b)
	return 0
}
