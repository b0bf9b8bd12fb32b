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
// primary answers heartbeats but the receiver has been connecting for
// longer than a connection takes (pg_stat_activity lists it,
// pg_stat_wal_receiver does not until it is connected), or has heard
// nothing for longer than a live connection allows (wal_receiver_timeout,
// 5 s, after which the receiver gives up by itself), it ends the
// receiver (with a signal: pg_terminate_backend refuses the receiver),
// and the startup process starts a fresh one within
// wal_retrieve_retry_interval (1 s), whose SYN now gets through.
const (
	receiverConnectingAfter = 2 * time.Second
	receiverSilentAfter     = 6 * time.Second
	receiverKickEvery       = 3 * time.Second // at most one kick per this
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
	if n.kickReceiver(ctx, receiverConnectingAfter, receiverSilentAfter, "the primary answers") {
		w.lastKick = time.Now()
	}
}

// kickReceiver ends the WAL receiver when it has been connecting for
// connectingLimit or heard nothing for silentLimit (0: never for that),
// and reports whether it did.
func (n *Node) kickReceiver(ctx context.Context, connectingLimit, silentLimit time.Duration, why string) bool {
	var pid int
	var connecting bool
	var age float64
	err := n.withConn(ctx, func(c *pgx.Conn) error {
		return c.QueryRow(ctx, `SELECT a.pid, r.pid IS NULL,
	extract(epoch FROM now() - CASE WHEN r.pid IS NULL THEN a.backend_start ELSE coalesce(r.last_msg_receipt_time, 'epoch') END)::float8
FROM pg_stat_activity a LEFT JOIN pg_stat_wal_receiver r ON r.pid = a.pid
WHERE a.backend_type = 'walreceiver'`).Scan(&pid, &connecting, &age)
	})
	if errors.Is(err, pgx.ErrNoRows) || err != nil || pid == 0 {
		return false // between attempts (the startup process starts one soon), or PostgreSQL is not up
	}
	limit, what := silentLimit, "has heard nothing from it"
	if connecting {
		limit, what = connectingLimit, "is still connecting to it"
	}
	for_ := time.Duration(age * float64(time.Second))
	if limit <= 0 || for_ < limit {
		return false
	}
	n.log.Warn(why+", but the WAL receiver "+what+"; restarting it", "pid", pid, "for", for_.Round(100*time.Millisecond))
	if err := n.pg.EndWALReceiver(pid); err != nil {
		n.log.Warn("could not restart the WAL receiver", "pid", pid, "err", err)
		return false
	}
	return true
}
