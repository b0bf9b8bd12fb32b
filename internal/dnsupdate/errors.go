package dnsupdate

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

// What went wrong with an update, for errors.Is. The error itself says
// what the server answered and what to change.
var (
	// ErrKeyRefused: the server did not accept the TSIG signature
	// (NOTAUTH with BADSIG or BADKEY).
	ErrKeyRefused = errors.New("TSIG key refused")
	// ErrClock: the server accepted the key but not the time it was
	// signed at (BADTIME).
	ErrClock = errors.New("clocks differ")
	// ErrUpdateRefused: the key is good but may not update this zone
	// (REFUSED).
	ErrUpdateRefused = errors.New("update refused")
	// ErrNotZone: the name is not in the zone, as the server sees it.
	ErrNotZone = errors.New("name not in zone")
	// ErrNotAuth: the server is not a primary for the zone.
	ErrNotAuth = errors.New("server not authoritative")
	// ErrServer: any other answer (SERVFAIL, FORMERR...).
	ErrServer = errors.New("update failed")
	// ErrNoAnswer: no usable answer arrived (timeout, connection refused,
	// an answer whose signature does not verify).
	ErrNoAnswer = errors.New("no answer")
)

// serverError is an error whose message is written for the operator and
// whose kind is one of the errors above.
type serverError struct {
	msg   string
	kind  error
	cause error // what ended the wait, for context errors; or nil
}

func (e *serverError) Error() string { return e.msg }

func (e *serverError) Unwrap() []error {
	if e.cause == nil {
		return []error{e.kind}
	}
	return []error{e.kind, e.cause}
}

func errorf(kind error, format string, args ...any) error {
	return &serverError{msg: fmt.Sprintf(format, args...), kind: kind}
}

// answered is the server's answer in DNS words: "NOTAUTH", "NOTAUTH/BADSIG".
func answered(m *dns.Msg) string {
	s := rcodeName(m.Rcode)
	if t := m.IsTsig(); t != nil && t.Error != dns.RcodeSuccess {
		s += "/" + rcodeName(int(t.Error))
	}
	return s
}

func rcodeName(rc int) string {
	if s, ok := dns.RcodeToString[rc]; ok {
		return s
	}
	return fmt.Sprintf("RCODE%d", rc)
}

// netError names a failed exchange in words an operator knows. waited is
// how long the exchange took, which a deadline of the caller's context may
// have made shorter than the configured timeout.
func netError(server string, waited time.Duration, err error) error {
	var ne net.Error
	switch {
	case errors.Is(err, context.Canceled):
		return &serverError{msg: fmt.Sprintf("stopped waiting for %s's answer: cancelled", server), kind: ErrNoAnswer, cause: err}
	case errors.Is(err, context.DeadlineExceeded):
		return &serverError{msg: fmt.Sprintf("no answer from %s before the deadline", server), kind: ErrNoAnswer, cause: err}
	case errors.Is(err, syscall.ECONNREFUSED):
		return errorf(ErrNoAnswer, "%s refused the connection: is its DNS server running, on that port?", server)
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return errorf(ErrNoAnswer, "no route to %s (%v): check the network path", server, err)
	case errors.As(err, &ne) && ne.Timeout():
		return errorf(ErrNoAnswer, "no answer from %s within %s", server, waited.Round(10*time.Millisecond))
	}
	return errorf(ErrNoAnswer, "while asking %s: %v", server, err)
}
