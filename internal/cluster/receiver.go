package cluster

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
)

// After a partition between the nodes heals, PostgreSQL's WAL receiver
// can sit in a connection attempt whose SYN was lost: libpq's
// connect_timeout does not apply to the receiver's asynchronous connect,
// so it waits for the kernel's next SYN retransmission (seconds to a
// minute, doubling). The secondary's monitor knows better: when the
// primary answers heartbeats but the receiver has heard nothing from it
// for longer than a live connection allows (wal_receiver_timeout, 5 s,
// after which the receiver gives up by itself), it ends the receiver's
// attempt, and the startup process starts a fresh one within
// wal_retrieve_retry_interval (1 s), whose SYN now gets through.
const (
	receiverSilentAfter = 6 * time.Second
	receiverKickEvery   = 3 * time.Second // at most one kick per this
)

// receiverWatch is the monitor's memory of the WAL receiver.
type receiverWatch struct {
	lastKick time.Time
}

// kickStuckReceiver runs on a secondary whose primary just answered a
// heartbeat.
func (n *Node) kickStuckReceiver(ctx context.Context, w *receiverWatch) {
	if time.Since(w.lastKick) < receiverKickEvery {
		return
	}
	var pid int
	var silent float64
	err := n.withConn(ctx, func(c *pgx.Conn) error {
		return c.QueryRow(ctx, `SELECT pid, extract(epoch FROM now() - coalesce(last_msg_receipt_time, 'epoch'))::float8 FROM pg_stat_wal_receiver`).Scan(&pid, &silent)
	})
	if errors.Is(err, pgx.ErrNoRows) || err != nil || pid == 0 {
		return // between attempts (the startup process starts one soon), or PostgreSQL is not up
	}
	if time.Duration(silent*float64(time.Second)) < receiverSilentAfter {
		return
	}
	w.lastKick = time.Now()
	n.log.Warn("the primary answers, but the WAL receiver has heard nothing from it; restarting its connection", "pid", pid, "silent_for", time.Duration(silent*float64(time.Second)).Round(100*time.Millisecond))
	_ = n.withConn(ctx, func(c *pgx.Conn) error {
		_, err := c.Exec(ctx, `SELECT pg_terminate_backend($1)`, pid)
		return err
	})
}
