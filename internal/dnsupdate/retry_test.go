package dnsupdate

import (
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	var got []time.Duration
	for d := retryFirst; len(got) < 8; d = nextDelay(d) {
		got = append(got, d)
	}
	want := []time.Duration{200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, 1600 * time.Millisecond,
		3200 * time.Millisecond, 5 * time.Second, 5 * time.Second, 5 * time.Second}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("delays %v, want %v", got, want)
		}
	}
}
