package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func TestWebhookRetriesUntilDelivered(t *testing.T) {
	var mu sync.Mutex
	var got []Event
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls < 3 {
			http.Error(w, "try later", http.StatusServiceUnavailable)
			return
		}
		b, _ := io.ReadAll(r.Body)
		var e Event
		if err := json.Unmarshal(b, &e); err != nil || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("bad notification: %v %s", err, b)
		}
		got = append(got, e)
	}))
	defer srv.Close()
	n := New(Config{Webhook: srv.URL, Retries: 3}, quiet())
	n.backoff = func(int) time.Duration { return time.Millisecond }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n.Start(ctx)
	n.Notify(Event{Kind: "failover_finished", Node: "b", Term: 2, Message: "b is primary"})
	n.Notify(Event{Kind: "node_online", Node: "a"}) // not in the default list: not sent
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		done := len(got) == 1
		mu.Unlock()
		if done {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0].Kind != "failover_finished" || got[0].Term != 2 || calls != 3 {
		t.Fatalf("got %+v after %d calls", got, calls)
	}
}

func TestCommandGetsTheEvent(t *testing.T) {
	out := filepath.Join(t.TempDir(), "got")
	n := New(Config{Command: []string{"/bin/sh", "-c", "cat > " + out + "; echo $TANDEM_EVENT_KIND >> " + out}, Events: []string{"fenced"}}, quiet())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n.Start(ctx)
	n.Notify(Event{Kind: "fenced", Node: "a", Message: "a fenced itself"})
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(out)
		if strings.Contains(string(b), "\nfenced") || strings.HasSuffix(string(b), "fenced\n") {
			if !strings.Contains(string(b), `"message":"a fenced itself"`) {
				t.Fatalf("stdin lacked the event: %s", b)
			}
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the command never got the event")
}

func TestNotifyNeverBlocks(t *testing.T) {
	n := New(Config{Webhook: "http://127.0.0.1:1/never"}, quiet()) // not started: nothing drains
	start := time.Now()
	for i := 0; i < queueSize*2; i++ {
		n.Notify(Event{Kind: "fenced"})
	}
	if time.Since(start) > time.Second {
		t.Fatal("Notify blocked on a full queue")
	}
}

func TestDisabledIsANoop(t *testing.T) {
	n := New(Config{}, quiet())
	if n.Enabled() {
		t.Fatal("enabled without a command or webhook")
	}
	n.Notify(Event{Kind: "fenced"})
}

// postOnce delivers one event to the webhook at url with no retries and
// returns what the notifier logged. client, when set, is the transport to
// use (a test TLS server's).
func postOnce(t *testing.T, url string, client *http.Client) string {
	t.Helper()
	var logs bytes.Buffer
	n := New(Config{Webhook: url, Events: []string{"fenced"}}, slog.New(slog.NewTextHandler(&logs, nil)))
	if client != nil {
		n.http.Transport = client.Transport
	}
	n.deliver(context.Background(), Event{Kind: "fenced", Node: "a"})
	return logs.String()
}

// A webhook that redirects is not followed: not across schemes and hosts
// (an https receiver sending the event, re-posted, to a plain-http host),
// and, more simply, not at all.
func TestWebhookFollowsNoRedirect(t *testing.T) {
	var mu sync.Mutex
	var leaked []string
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		leaked = append(leaked, r.Method+" "+r.URL.Path+" "+string(b))
		mu.Unlock()
	}))
	defer plain.Close()
	// Another host for the same machine: localhost rather than 127.0.0.1.
	elsewhere := strings.Replace(plain.URL, "127.0.0.1", "localhost", 1)
	secure := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/hook":
			http.Redirect(w, r, elsewhere+"/stolen", http.StatusTemporaryRedirect)
		case "/moved":
			http.Redirect(w, r, "/hook-here", http.StatusPermanentRedirect)
		case "/hook-here":
			mu.Lock()
			leaked = append(leaked, "same host "+r.URL.Path)
			mu.Unlock()
		}
	}))
	defer secure.Close()

	for _, path := range []string{"/hook", "/moved"} {
		logs := postOnce(t, secure.URL+path, secure.Client())
		if !strings.Contains(logs, "notification not delivered") || !strings.Contains(logs, "redirect") {
			t.Errorf("%s: the redirect was not refused as such:\n%s", path, logs)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(leaked) > 0 {
		t.Fatalf("the webhook followed redirects: %q", leaked)
	}
}

// Webhook URLs carry their secret in the path, the query or the userinfo;
// none of it reaches the log.
func TestWebhookURLIsMaskedInLogs(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/next/SECRET-C?k=SECRET-D", http.StatusFound)
	}))
	defer srv.Close()
	u := strings.Replace(srv.URL, "http://", "http://user:SECRET-P@", 1)
	for _, url := range []string{
		u + "/services/SECRET-A?token=SECRET-B",
		"http://user:SECRET-P@127.0.0.1:1/services/SECRET-A?token=SECRET-B", // nothing listens
	} {
		logs := postOnce(t, url, nil)
		if !strings.Contains(logs, "notification not delivered") {
			t.Fatalf("%s: not even tried:\n%s", url, logs)
		}
		if strings.Contains(logs, "SECRET") {
			t.Errorf("a secret of the webhook URL reached the log:\n%s", logs)
		}
	}
}
