package lab

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tandem-ha/tandem/internal/api"
)

func TestWaitsForSyncInSyncAndStrictOnly(t *testing.T) {
	for mode, want := range map[string]bool{"": true, "sync": true, "strict": true, "async": false} {
		if got := waitsForSync(mode); got != want {
			t.Errorf("mode %q: waits %v, want %v", mode, got, want)
		}
	}
}

// views answers each call with the next of answers, then the last again.
func views(answers ...func() (*api.ClusterView, error)) (func(context.Context) (*api.ClusterView, error), *int) {
	n := new(int)
	return func(context.Context) (*api.ClusterView, error) {
		i := min(*n, len(answers)-1)
		*n++
		return answers[i]()
	}, n
}

func unsynchronized() (*api.ClusterView, error) {
	return &api.ClusterView{
		Record:      &api.Record{Term: 1, Primary: "a", Replication: "sync"},
		Replication: &api.ReplicationInfo{State: "streaming", SyncState: "potential", LagBytes: 0},
	}, nil
}

func TestAwaitSynchronizedReturnsOnceTheRecordSaysSo(t *testing.T) {
	view, calls := views(
		func() (*api.ClusterView, error) { return nil, errors.New("connection refused") },
		func() (*api.ClusterView, error) { return &api.ClusterView{}, nil },
		unsynchronized,
		func() (*api.ClusterView, error) {
			return &api.ClusterView{Record: &api.Record{Term: 1, Primary: "a", Replication: "sync", Synchronized: true}}, nil
		},
	)
	if err := awaitSynchronized(t.Context(), view, time.Minute, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if *calls != 4 {
		t.Fatalf("asked %d times, want 4 (until the record said synchronized)", *calls)
	}
}

func TestAwaitSynchronizedGivesUpSayingWhatItWaitedFor(t *testing.T) {
	view, calls := views(unsynchronized)
	start := time.Now()
	err := awaitSynchronized(t.Context(), view, 50*time.Millisecond, 5*time.Millisecond)
	if err == nil {
		t.Fatal("never synchronized, yet no error")
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("gave up after %s, want about 50ms", took)
	}
	for _, want := range []string{"did not say synchronized within 50ms", "GET /v1/cluster", "record.synchronized", "primary a", "streaming", `sync state "potential"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in: %v", want, err)
		}
	}
	if *calls < 2 {
		t.Errorf("asked only %d times", *calls)
	}

	view, _ = views(func() (*api.ClusterView, error) { return nil, errors.New("connection refused") })
	if err := awaitSynchronized(t.Context(), view, 10*time.Millisecond, time.Millisecond); err == nil || !strings.Contains(err.Error(), "last: connection refused") {
		t.Errorf("unreachable primary: %v", err)
	}
}

func TestAwaitSynchronizedStopsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	view, _ := views(func() (*api.ClusterView, error) { cancel(); return unsynchronized() })
	err := awaitSynchronized(ctx, view, time.Minute, time.Minute)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}
