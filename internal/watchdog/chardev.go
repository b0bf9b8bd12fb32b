package watchdog

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// fdOps is what the character device backend asks of the kernel: the
// watchdog ioctls, write and close. sysFD is the real one; tests give a
// fake that plays a driver.
type fdOps interface {
	getSupport() (*unix.WatchdogInfo, error)
	setInt(req uint, v int) error
	getInt(req uint) (int, error)
	keepaliveIoctl() error
	write(b []byte) error
	close() error
}

// charDev is a Linux watchdog character device.
type charDev struct {
	path    string
	fd      fdOps
	options uint32 // WDIOF_* the driver announces
	id      string
}

func openChar(path string) (backend, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.EBUSY) {
			return nil, fmt.Errorf("while opening the watchdog %s: another process holds it open (only one may): %w", path, err)
		}
		return nil, fmt.Errorf("while opening the watchdog %s: %w", path, err)
	}
	return newCharDev(path, sysFD{f})
}

// newCharDev asks the driver what it supports. A device that does not
// answer WDIOC_GETSUPPORT is no watchdog: it is closed again, the magic
// character first in case it is one after all.
func newCharDev(path string, fd fdOps) (*charDev, error) {
	info, err := fd.getSupport()
	if err != nil {
		_ = fd.write([]byte("V"))
		_ = fd.close()
		return nil, fmt.Errorf("%s does not answer WDIOC_GETSUPPORT, so it is no watchdog device: %w", path, err)
	}
	id := strings.TrimRight(string(info.Identity[:]), "\x00")
	return &charDev{path: path, fd: fd, options: info.Options, id: id}, nil
}

func (c *charDev) identity() string { return c.id }

// setTimeout needs a driver that announces WDIOF_SETTIMEOUT; without it
// the timeout is fixed and SetTimeout's caller compares what it reads back.
func (c *charDev) setTimeout(sec int) error {
	if c.options&unix.WDIOF_SETTIMEOUT == 0 {
		return fmt.Errorf("the driver %q cannot set its timeout (no WDIOF_SETTIMEOUT)", c.id)
	}
	return c.fd.setInt(unix.WDIOC_SETTIMEOUT, sec)
}

func (c *charDev) getTimeout() (int, error) { return c.fd.getInt(unix.WDIOC_GETTIMEOUT) }

// keepalive uses WDIOC_KEEPALIVE where the driver has it, else a write
// (any write feeds a Linux watchdog). The write is not "V": that would
// arm the magic close.
func (c *charDev) keepalive() error {
	if c.options&unix.WDIOF_KEEPALIVEPING != 0 {
		return c.fd.keepaliveIoctl()
	}
	return c.fd.write([]byte{'\n'})
}

// disarm writes the magic character and stops the card explicitly
// (WDIOS_DISABLECARD), so that a driver that cannot be stopped (nowayout)
// says so now instead of resetting the machine silently later; a driver
// without WDIOC_SETOPTIONS relies on the magic close alone.
func (c *charDev) disarm() error {
	werr := c.fd.write([]byte("V"))
	err := c.fd.setInt(unix.WDIOC_SETOPTIONS, unix.WDIOS_DISABLECARD)
	switch {
	case errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL):
		err = nil // no WDIOC_SETOPTIONS: the magic close (or a plain close, without WDIOF_MAGICCLOSE) stops it
	case errors.Is(err, unix.EBUSY):
		err = fmt.Errorf("the driver %q refuses to stop (nowayout): the machine resets unless the watchdog is opened and fed again", c.id)
	}
	cerr := c.fd.close()
	return errors.Join(werr, err, cerr)
}

func (c *charDev) abandon() error { return c.fd.close() }

// sysFD is an open device file.
type sysFD struct{ f *os.File }

func (s sysFD) fdInt() int { return int(s.f.Fd()) }

func (s sysFD) getSupport() (*unix.WatchdogInfo, error) { return unix.IoctlGetWatchdogInfo(s.fdInt()) }
func (s sysFD) setInt(req uint, v int) error            { return unix.IoctlSetPointerInt(s.fdInt(), req, v) }
func (s sysFD) getInt(req uint) (int, error)            { return unix.IoctlGetInt(s.fdInt(), req) }
func (s sysFD) keepaliveIoctl() error                   { return unix.IoctlWatchdogKeepalive(s.fdInt()) }
func (s sysFD) close() error                            { return s.f.Close() }
func (s sysFD) write(b []byte) error {
	_, err := s.f.Write(b)
	return err
}
