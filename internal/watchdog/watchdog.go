// Package watchdog drives a watchdog device: a timer outside tandemd that
// resets the machine unless tandemd keeps feeding it. In automatic
// failover mode the primary arms it before it opens PostgreSQL for writes
// and feeds it only while its leader lease is held, so a tandemd that
// freezes (SIGSTOP, a hung process) or dies cannot leave a writer behind
// once the lease can expire (docs/quorum.md, "Watchdog").
//
// Two backends sit behind Device:
//
//   - a Linux watchdog character device (/dev/watchdog: a hardware
//     watchdog, or softdog): open arms it, WDIOC_SETTIMEOUT /
//     WDIOC_GETTIMEOUT set and read its timeout in whole seconds,
//     WDIOC_KEEPALIVE (or a write, for drivers without the ioctl) feeds it,
//     and the magic close (write "V", then close) disarms it; a close
//     without it leaves the timer running, as after a crash;
//   - the lab's stand-in (Sim): a unix socket speaking a line protocol that
//     mirrors those calls one for one, so the same code runs in the lab.
//     The stand-in powers the lab node off where the hardware would reset.
package watchdog

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Modes of watchdog.mode (Patroni's meaning).
const (
	// ModeOff never opens a watchdog.
	ModeOff = "off"
	// ModeAutomatic arms one when it can be opened, and says loudly (a log
	// line at error level and the watchdog_unavailable event) when not.
	ModeAutomatic = "automatic"
	// ModeRequired refuses the primary role in automatic failover mode
	// without an armed watchdog.
	ModeRequired = "required"
)

// DefaultDevice is the Linux watchdog device.
const DefaultDevice = "/dev/watchdog"

// ResetMargin is what the reset itself may take once the device's timer
// runs out (the hardware's or softdog's reset is immediate; the lab's
// stand-in needs a few milliseconds to take the node's link down), and
// the device firing late by a jiffy. Feeding stops early by this much.
const ResetMargin = 100 * time.Millisecond

// Device is an open, armed watchdog. Its methods are safe for concurrent
// use.
type Device struct {
	path string
	mu   sync.Mutex
	b    backend // nil once disarmed or closed
	id   string
}

// backend is one kind of device. Timeouts are whole seconds, the
// kernel's unit.
type backend interface {
	identity() string
	setTimeout(sec int) error
	getTimeout() (int, error)
	keepalive() error
	// disarm is the magic close: the timer stops and the device is closed.
	disarm() error
	// abandon closes without the magic close: the timer keeps running.
	abandon() error
}

// ErrClosed: the device was disarmed or closed already.
var ErrClosed = errors.New("the watchdog is not open")

// Open opens (and with that arms, as the kernel does on open) the
// watchdog at path: a character device, or a unix socket served by the
// lab's stand-in. Until SetTimeout the device runs on its own default
// timeout (softdog: 60 s).
func Open(path string) (*Device, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("while opening the watchdog %s: %w", path, err)
	}
	var b backend
	switch {
	case fi.Mode()&fs.ModeCharDevice != 0:
		b, err = openChar(path)
	case fi.Mode()&fs.ModeSocket != 0:
		b, err = dialSim(path)
	default:
		return nil, fmt.Errorf("the watchdog %s is neither a character device nor the lab's stand-in socket (mode %s)", path, fi.Mode())
	}
	if err != nil {
		return nil, err
	}
	return &Device{path: path, b: b, id: b.identity()}, nil
}

// Usable is the cheap check before a node campaigns for the primary role
// with watchdog.mode required: the device exists, is a character device
// or the lab's socket, and this process may write to it. It does not open
// it (opening arms it).
func Usable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s does not exist (no watchdog driver loaded? `modprobe softdog` provides one)", path)
		}
		return err
	}
	if fi.Mode()&(fs.ModeCharDevice|fs.ModeSocket) == 0 {
		return fmt.Errorf("%s is not a character device (mode %s)", path, fi.Mode())
	}
	if err := unix.Access(path, unix.W_OK); err != nil {
		return fmt.Errorf("%s is not writable by tandemd: %w", path, err)
	}
	return nil
}

// Path is the device's path.
func (d *Device) Path() string { return d.path }

// Identity is the driver's name (WDIOC_GETSUPPORT's identity: "Software
// Watchdog" for softdog) or the lab stand-in's.
func (d *Device) Identity() string { return d.id }

func (d *Device) do(f func(b backend) error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.b == nil {
		return ErrClosed
	}
	return f(d.b)
}

// SetTimeout asks for timeout t (whole seconds, at least one) and returns
// what the device runs with, read back: drivers may round. The kernel
// also feeds the device when it takes a new timeout.
func (d *Device) SetTimeout(t time.Duration) (time.Duration, error) {
	if t < time.Second || t%time.Second != 0 {
		return 0, fmt.Errorf("watchdog timeout %s: the device takes whole seconds, at least 1s", t)
	}
	var got int
	err := d.do(func(b backend) error {
		if err := b.setTimeout(int(t / time.Second)); err != nil {
			return fmt.Errorf("while setting the timeout of the watchdog %s to %s: %w", d.path, t, err)
		}
		var err error
		if got, err = b.getTimeout(); err != nil {
			return fmt.Errorf("while reading back the timeout of the watchdog %s: %w", d.path, err)
		}
		return nil
	})
	return time.Duration(got) * time.Second, err
}

// Timeout reads the device's timeout.
func (d *Device) Timeout() (time.Duration, error) {
	var got int
	err := d.do(func(b backend) error {
		var err error
		got, err = b.getTimeout()
		return err
	})
	return time.Duration(got) * time.Second, err
}

// Keepalive feeds the device: its timer starts over.
func (d *Device) Keepalive() error {
	return d.do(func(b backend) error {
		if err := b.keepalive(); err != nil {
			return fmt.Errorf("while feeding the watchdog %s: %w", d.path, err)
		}
		return nil
	})
}

// Disarm stops the timer (the magic close) and closes the device. When
// the driver refuses to stop (built with nowayout) it says so: the
// machine will then reset unless something opens and feeds it again.
func (d *Device) Disarm() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.b == nil {
		return nil
	}
	b := d.b
	d.b = nil
	if err := b.disarm(); err != nil {
		return fmt.Errorf("while disarming the watchdog %s: %w", d.path, err)
	}
	return nil
}

// Close closes the device without disarming it: the timer keeps running
// and resets the machine unless the device is opened and fed again.
func (d *Device) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.b == nil {
		return nil
	}
	b := d.b
	d.b = nil
	return b.abandon()
}

// TimeoutFor is the watchdog timeout for a leader lease of ttl renewed
// every renewEvery, with drift the clock rate allowance (quorum's
// LeaseConfig): the largest whole number of seconds T with
//
//	T ≤ ttl × (1 − drift) − ResetMargin − renewEvery
//
// Feeding stops at expiry − T − ResetMargin (FeedBy), expiry being the
// earliest moment the lease can expire at the etcd leader, on this clock;
// each renewal moves expiry on by about renewEvery, so with this bound a
// healthy primary is fed without a gap. The defaults (TTL 2 s, renewal
// every 400 ms, drift 1 %) give 1 s: 1.98 − 0.1 − 0.4 = 1.48, rounded down.
// A TTL too short for a one-second timeout is an error.
func TimeoutFor(ttl, renewEvery time.Duration, drift float64) (time.Duration, error) {
	room := time.Duration(float64(ttl)*(1-drift)) - ResetMargin - renewEvery
	t := room.Truncate(time.Second)
	if t < time.Second {
		return 0, fmt.Errorf("a lease TTL of %s renewed every %s leaves %s for the watchdog: too short for the device's one-second granularity", ttl, renewEvery, room)
	}
	return t, nil
}

// FeedBy is the last moment at which a device with timeout may be fed
// for a lease that cannot expire before expiry: fed at or before it, the
// device resets the machine, if not fed again, by expiry − ResetMargin.
func FeedBy(expiry time.Time, timeout time.Duration) time.Time {
	return expiry.Add(-timeout - ResetMargin)
}
