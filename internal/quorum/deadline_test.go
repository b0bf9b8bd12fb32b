package quorum

import (
	"testing"
	"time"
)

func TestFenceDeadline(t *testing.T) {
	sent := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	got := FenceDeadline(sent, 2*time.Second, 0.01, 500*time.Millisecond)
	if want := sent.Add(1480 * time.Millisecond); !got.Equal(want) {
		t.Fatalf("deadline %v, want %v", got, want)
	}
}

type fakeClock struct{ now time.Time }

func (f *fakeClock) Now() time.Time                         { return f.now }
func (f *fakeClock) After(d time.Duration) <-chan time.Time { return make(chan time.Time) }

func TestDeadlineTracker(t *testing.T) {
	clk := &fakeClock{now: time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)}
	d := deadlineTracker{cfg: DefaultLeaseConfig}
	t0 := clk.now
	d.renewed(t0, 2*time.Second)

	// Measured from the send: an answer arriving 300 ms later changes nothing.
	clk.now = t0.Add(300 * time.Millisecond)
	if got, want := d.deadline(), t0.Add(1480*time.Millisecond); !got.Equal(want) {
		t.Fatalf("deadline %v, want %v", got, want)
	}
	// Renewal sent at +400 ms succeeds: the deadline moves on.
	d.renewed(t0.Add(400*time.Millisecond), 2*time.Second)
	if got, want := d.deadline(), t0.Add(1880*time.Millisecond); !got.Equal(want) {
		t.Fatalf("deadline %v, want %v", got, want)
	}
	// A late answer to an earlier send never brings it back.
	d.renewed(t0.Add(100*time.Millisecond), 2*time.Second)
	if got, want := d.deadline(), t0.Add(1880*time.Millisecond); !got.Equal(want) {
		t.Fatalf("deadline moved back to %v", got)
	}
	// The server granting less than configured counts as less.
	d2 := deadlineTracker{cfg: DefaultLeaseConfig}
	d2.renewed(t0, time.Second)
	if got, want := d2.deadline(), t0.Add(490*time.Millisecond); !got.Equal(want) {
		t.Fatalf("deadline with 1 s granted %v, want %v", got, want)
	}

	clk.now = t0.Add(1879 * time.Millisecond)
	if d.passed(clk.now) {
		t.Fatal("passed 1 ms before the deadline")
	}
	clk.now = t0.Add(1880 * time.Millisecond)
	if !d.passed(clk.now) {
		t.Fatal("not passed at the deadline")
	}
}

func TestLeaseConfigDefaults(t *testing.T) {
	c := LeaseConfig{}.withDefaults()
	if c != DefaultLeaseConfig {
		t.Fatalf("zero config: %+v", c)
	}
	c = LeaseConfig{TTL: 3 * time.Second}.withDefaults()
	if c.RenewEvery != 600*time.Millisecond || c.FenceMargin != 500*time.Millisecond {
		t.Fatalf("TTL 3 s: %+v", c)
	}
}

// The deadline is held by a promise only while the promise moved it
// further than the last successful renewal did (retake's condition).
func TestKeptByPromise(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	d := deadlineTracker{cfg: DefaultLeaseConfig}
	d.renewed(t0.Add(400*time.Millisecond), 2*time.Second)
	// A promise (failsafe) that moves the deadline further than the last
	// renewal did holds it; the next renewal past it takes over again.
	if d.keptByPromise() {
		t.Fatal("kept by a promise before any was counted")
	}
	d.extend(t0.Add(300*time.Millisecond), 2*time.Second) // ends before the renewal's: changes nothing
	if d.keptByPromise() {
		t.Fatal("a promise that did not move the deadline counts as keeping it")
	}
	d.extend(t0.Add(600*time.Millisecond), 2*time.Second)
	if !d.keptByPromise() {
		t.Fatalf("deadline %v moved by a promise, yet not kept by it", d.deadline())
	}
	d.renewed(t0.Add(800*time.Millisecond), 2*time.Second)
	if d.keptByPromise() {
		t.Fatal("still kept by a promise after a renewal past it")
	}

}
