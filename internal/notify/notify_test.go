package notify

import (
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
