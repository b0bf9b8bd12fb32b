package cluster

import (
	"context"
	"errors"
	"net"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tandem-ha/tandem/internal/state"
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

// The monitor's heartbeat notices a healed partition late: its tick is a
// second, and its own connection attempt may be waiting for a lost SYN's
// retransmission too. So while a secondary has not heard from its
// primary for healQuietAfter, it also tries the receiver's own path, a
// TCP connection to the primary's PostgreSQL port, every healProbeEvery;
// the first attempt that connects after one that did not is the heal, and
// a receiver still connecting then (its SYN went into the cut: a fresh
// attempt would connect in a round trip) is ended at once. The startup
// process starts the next receiver without waiting, its last failure being
// long past. An open path is looked at again only every healRecheckEvery:
// each connection costs the primary a backend fork.
const (
	healQuietAfter         = 2 * time.Second
	healProbeEvery         = 200 * time.Millisecond
	healRecheckEvery       = 3 * time.Second
	healReceiverConnecting = 300 * time.Millisecond
)

// healWatch is runHealWatch's memory: whether the last attempt failed,
// and when an open path is due again.
type healWatch struct {
	cut  bool
	next time.Time
}

// due says whether to try the path now.
func (w *healWatch) due(now time.Time) bool { return w.cut || !now.Before(w.next) }

// tried records an attempt and reports whether it is the heal: a
// connection after one that failed.
func (w *healWatch) tried(connected bool, now time.Time) (healed bool) {
	if !connected {
		w.cut = true
		return false
	}
	healed = w.cut
	w.cut, w.next = false, now.Add(healRecheckEvery)
	return healed
}

// runHealWatch is the loop of the above; it idles on anything but a
// secondary that misses its primary.
func (n *Node) runHealWatch(ctx context.Context) {
	t := time.NewTicker(healProbeEvery)
	defer t.Stop()
	var w healWatch
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.run.stopping:
			return
		case <-t.C:
		}
		s := n.State()
		if s.Role != state.RoleSecondary || s.Cluster == nil || s.Cluster.Peer == nil || s.Operation != nil || n.heardAgo() < healQuietAfter {
			w = healWatch{}
			continue
		}
		if !w.due(time.Now()) {
			continue
		}
		p := s.Cluster.Peer
		dctx, cancel := context.WithTimeout(ctx, healProbeEvery)
		conn, err := (&net.Dialer{}).DialContext(dctx, "tcp", net.JoinHostPort(p.IP, strconv.Itoa(p.PGPort)))
		cancel()
		if err == nil {
			conn.Close()
		}
		if w.tried(err == nil, time.Now()) {
			n.kickReceiver(ctx, healReceiverConnecting, 0, "the path to the primary's PostgreSQL is open again")
		}
	}
}
