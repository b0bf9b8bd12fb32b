package watchdog

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestTimeoutFor(t *testing.T) {
	for _, c := range []struct {
		ttl, renew time.Duration
		want       time.Duration
	}{
		{2 * time.Second, 400 * time.Millisecond, time.Second}, // the defaults
		{10 * time.Second, 2 * time.Second, 7 * time.Second},
		{3 * time.Second, 600 * time.Millisecond, 2 * time.Second},
	} {
		got, err := TimeoutFor(c.ttl, c.renew, 0.01)
		if err != nil || got != c.want {
			t.Errorf("TimeoutFor(%s, %s) = %s, %v; want %s", c.ttl, c.renew, got, err, c.want)
		}
		// The promise: fed at the last moment, it fires before the lease
		// can expire, and a healthy holder (renewing every renew) is fed
		// without a gap.
		expiry := time.Unix(1000, 0)
		if fire := FeedBy(expiry, got).Add(got); !fire.Before(expiry) {
			t.Errorf("ttl %s: fed at FeedBy the device fires at %s, not before expiry %s", c.ttl, fire, expiry)
		}
		if room := time.Duration(float64(c.ttl)*0.99) - got - ResetMargin; room < c.renew {
			t.Errorf("ttl %s: only %s of feeding per renewal, less than the renewal period %s", c.ttl, room, c.renew)
		}
	}
	if _, err := TimeoutFor(time.Second, 200*time.Millisecond, 0.01); err == nil {
		t.Error("a 1 s lease got a watchdog timeout; none of whole seconds is safe")
	}
}

// startSim serves a stand-in in a temporary directory and counts its fires.
func startSim(t *testing.T) (*Sim, *atomic.Int32) {
	t.Helper()
	// A short path: unix socket paths are limited to 107 bytes.
	dir, err := os.MkdirTemp("", "wd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	fires := new(atomic.Int32)
	s := &Sim{Path: filepath.Join(dir, "watchdog.sock"), Identity: "lab node t", Fire: func() { fires.Add(1) }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	for i := 0; i < 100; i++ {
		if _, err := os.Stat(s.Path); err == nil {
			return s, fires
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the stand-in never listened")
	return nil, nil
}

func armSim(t *testing.T, path string) *Device {
	t.Helper()
	d, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if d.Identity() != "lab node t" {
		t.Errorf("identity %q", d.Identity())
	}
	got, err := d.SetTimeout(time.Second)
	if err != nil || got != time.Second {
		t.Fatalf("SetTimeout(1s) = %s, %v", got, err)
	}
	return d
}

func TestSimFiresWhenNotFed(t *testing.T) {
	s, fires := startSim(t)
	d := armSim(t, s.Path)
	// Fed every 200 ms for 2 s (twice the timeout): it must not fire.
	for i := 0; i < 10; i++ {
		time.Sleep(200 * time.Millisecond)
		if err := d.Keepalive(); err != nil {
			t.Fatal(err)
		}
	}
	if n := fires.Load(); n != 0 {
		t.Fatalf("fired %d times while fed", n)
	}
	if got, err := d.Timeout(); err != nil || got != time.Second {
		t.Errorf("Timeout() = %s, %v", got, err)
	}
	stopped := time.Now()
	for fires.Load() == 0 && time.Since(stopped) < 3*time.Second {
		time.Sleep(10 * time.Millisecond)
	}
	took := time.Since(stopped)
	if fires.Load() != 1 || took < 900*time.Millisecond || took > 1300*time.Millisecond {
		t.Fatalf("after the last feed: %d fires after %s, want one after about 1s", fires.Load(), took)
	}
	if s.Armed() {
		t.Error("still armed after firing: a reset machine's watchdog is off until opened again")
	}
	_ = d.Close()
}

func TestSimMagicCloseDisarms(t *testing.T) {
	s, fires := startSim(t)
	d := armSim(t, s.Path)
	if _, err := Open(s.Path); err == nil || !strings.Contains(err.Error(), "another process holds it open") {
		t.Errorf("a second open: %v, want busy", err)
	}
	if err := d.Disarm(); err != nil {
		t.Fatal(err)
	}
	if err := d.Keepalive(); !errors.Is(err, ErrClosed) {
		t.Errorf("Keepalive after Disarm: %v, want ErrClosed", err)
	}
	time.Sleep(1500 * time.Millisecond)
	if n := fires.Load(); n != 0 || s.Armed() {
		t.Fatalf("after the magic close: %d fires, armed %v", n, s.Armed())
	}
	// Opened again (a new tenure), it is armed again and a close without
	// the magic character (a crash) leaves it running.
	d = armSim(t, s.Path)
	_ = d.Close()
	time.Sleep(1500 * time.Millisecond)
	if n := fires.Load(); n != 1 {
		t.Fatalf("after a close without the magic character: %d fires, want 1", n)
	}
}

func TestSimRejectsBadTimeout(t *testing.T) {
	s, _ := startSim(t)
	d, err := Open(s.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Disarm()
	if _, err := d.SetTimeout(1500 * time.Millisecond); err == nil {
		t.Error("a timeout of 1.5 s was taken; devices count whole seconds")
	}
	if got, err := d.Timeout(); err != nil || got != SimDefaultTimeout {
		t.Errorf("the timeout after opening: %s, %v; want the default %s", got, err, SimDefaultTimeout)
	}
}

func TestOpenRefusesWhatIsNoWatchdog(t *testing.T) {
	f := filepath.Join(t.TempDir(), "plain")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(f); err == nil || !strings.Contains(err.Error(), "neither a character device") {
		t.Errorf("Open(regular file): %v", err)
	}
	if err := Usable(f); err == nil {
		t.Error("Usable(regular file) = nil")
	}
	if err := Usable("/nonexistent/watchdog"); err == nil || !strings.Contains(err.Error(), "softdog") {
		t.Errorf("Usable(missing): %v", err)
	}
	// /dev/null is a character device that takes no watchdog ioctl.
	if _, err := Open("/dev/null"); err == nil || !strings.Contains(err.Error(), "WDIOC_GETSUPPORT") {
		t.Errorf("Open(/dev/null): %v", err)
	}
}

// fakeFD plays a watchdog driver.
type fakeFD struct {
	options    uint32
	timeout    int
	round      int // the driver rounds timeouts up to a multiple of this
	calls      []string
	supportErr error
	disableErr error
	closed     bool
}

func (f *fakeFD) getSupport() (*unix.WatchdogInfo, error) {
	f.calls = append(f.calls, "GETSUPPORT")
	if f.supportErr != nil {
		return nil, f.supportErr
	}
	info := &unix.WatchdogInfo{Options: f.options}
	copy(info.Identity[:], "Fake Watchdog")
	return info, nil
}
func (f *fakeFD) setInt(req uint, v int) error {
	switch req {
	case unix.WDIOC_SETTIMEOUT:
		f.calls = append(f.calls, "SETTIMEOUT")
		if f.round > 1 {
			v = (v + f.round - 1) / f.round * f.round
		}
		f.timeout = v
		return nil
	case unix.WDIOC_SETOPTIONS:
		f.calls = append(f.calls, "SETOPTIONS")
		return f.disableErr
	}
	return unix.ENOTTY
}
func (f *fakeFD) getInt(req uint) (int, error) {
	f.calls = append(f.calls, "GETTIMEOUT")
	return f.timeout, nil
}
func (f *fakeFD) keepaliveIoctl() error { f.calls = append(f.calls, "KEEPALIVE"); return nil }
func (f *fakeFD) write(b []byte) error  { f.calls = append(f.calls, "write "+string(b)); return nil }
func (f *fakeFD) close() error          { f.calls = append(f.calls, "close"); f.closed = true; return nil }

func fakeDevice(t *testing.T, fd *fakeFD) *Device {
	t.Helper()
	b, err := newCharDev("/dev/fake", fd)
	if err != nil {
		t.Fatal(err)
	}
	return &Device{path: "/dev/fake", b: b, id: b.identity()}
}

func TestCharDevice(t *testing.T) {
	all := uint32(unix.WDIOF_SETTIMEOUT | unix.WDIOF_KEEPALIVEPING | unix.WDIOF_MAGICCLOSE)
	fd := &fakeFD{options: all, timeout: 60}
	d := fakeDevice(t, fd)
	if d.Identity() != "Fake Watchdog" {
		t.Errorf("identity %q", d.Identity())
	}
	if got, err := d.SetTimeout(time.Second); err != nil || got != time.Second {
		t.Fatalf("SetTimeout: %s, %v", got, err)
	}
	if err := d.Keepalive(); err != nil {
		t.Fatal(err)
	}
	if err := d.Disarm(); err != nil {
		t.Fatal(err)
	}
	want := "GETSUPPORT SETTIMEOUT GETTIMEOUT KEEPALIVE write V SETOPTIONS close"
	if got := strings.Join(fd.calls, " "); got != want {
		t.Errorf("calls %q, want %q", got, want)
	}

	// A driver that rounds the timeout up: SetTimeout reports what it
	// runs with, so the caller can refuse it.
	fd = &fakeFD{options: all, round: 2}
	if got, _ := fakeDevice(t, fd).SetTimeout(time.Second); got != 2*time.Second {
		t.Errorf("a rounding driver: SetTimeout says %s, want the 2s it took", got)
	}

	// Without WDIOF_SETTIMEOUT the timeout cannot be set; without
	// WDIOF_KEEPALIVEPING it is fed by a write.
	fd = &fakeFD{options: unix.WDIOF_MAGICCLOSE, timeout: 30}
	d = fakeDevice(t, fd)
	if _, err := d.SetTimeout(time.Second); err == nil || !strings.Contains(err.Error(), "WDIOF_SETTIMEOUT") {
		t.Errorf("SetTimeout on a fixed-timeout driver: %v", err)
	}
	if err := d.Keepalive(); err != nil || fd.calls[len(fd.calls)-1] != "write \n" {
		t.Errorf("keepalive without the ioctl: %v, calls %q", err, fd.calls)
	}

	// A driver built with nowayout refuses to stop: Disarm says so.
	fd = &fakeFD{options: all, disableErr: unix.EBUSY}
	if err := fakeDevice(t, fd).Disarm(); err == nil || !strings.Contains(err.Error(), "nowayout") || !fd.closed {
		t.Errorf("Disarm with nowayout: %v (closed %v)", err, fd.closed)
	}
	// A driver without WDIOC_SETOPTIONS relies on the magic close.
	fd = &fakeFD{options: all, disableErr: unix.ENOTTY}
	if err := fakeDevice(t, fd).Disarm(); err != nil {
		t.Errorf("Disarm without SETOPTIONS: %v", err)
	}
	// Close is a crash: no magic character.
	fd = &fakeFD{options: all}
	_ = fakeDevice(t, fd).Close()
	if got := strings.Join(fd.calls, " "); got != "GETSUPPORT close" {
		t.Errorf("Close: calls %q", got)
	}
	// Not a watchdog at all: closed again.
	fd = &fakeFD{supportErr: unix.ENOTTY}
	if _, err := newCharDev("/dev/fake", fd); err == nil || !fd.closed {
		t.Errorf("no GETSUPPORT: %v, closed %v", err, fd.closed)
	}
}
