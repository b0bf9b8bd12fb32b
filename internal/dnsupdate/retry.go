package dnsupdate

import (
	"context"
	"fmt"
	"net/netip"
	"time"
)

// The backoff between attempts of PointUntil: quick at first, so that a
// server back after a blip is updated at once, and capped so that one that
// is down for long is still asked every few seconds.
const (
	retryFirst = 200 * time.Millisecond
	retryMax   = 5 * time.Second
)

// PointUntil is Point, tried again with capped exponential backoff until
// it lands or ctx ends: at failover the DNS server may be down or
// unreachable too, and the name must follow the primary once it is back.
// onAttempt, when not nil, is called after every attempt with its number
// (from 1) and its error (nil on the one that landed).
//
// Every failure is retried, a refused key too: an operator may fix the
// server's configuration while the cluster waits, and onAttempt tells the
// caller what is wrong in the meantime. Only bad arguments return at once.
func (u *Updater) PointUntil(ctx context.Context, name string, addrs []netip.Addr, onAttempt func(attempt int, err error)) error {
	rrs, err := u.pointRecords(name, addrs)
	if err != nil {
		return err
	}
	delay := retryFirst
	for attempt := 1; ; attempt++ {
		err := u.point(ctx, rrs)
		if onAttempt != nil {
			onAttempt(attempt, err)
		}
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
		case <-time.After(delay): // collected when not fired (Go 1.23)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("gave up after %d attempts (%w); the last one: %w", attempt, ctx.Err(), err)
		}
		delay = nextDelay(delay)
	}
}

func nextDelay(d time.Duration) time.Duration {
	return min(2*d, retryMax)
}
