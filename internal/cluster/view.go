package cluster

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tandem-ha/tandem/internal/api"
	"github.com/tandem-ha/tandem/internal/state"
)

// View answers GET /v1/cluster: the cluster as this node sees it. Parts
// that cannot be read (PostgreSQL down) are left out rather than failing
// the whole answer: the console shows what it can.
func (n *Node) View(ctx context.Context) (api.ClusterView, error) {
	v := api.ClusterView{Node: n.Node(ctx), ClusterIP: n.vipInfo()}
	s := n.State()
	if endpointOf(s.Cluster) == EndpointDNS {
		v.DNS = n.dnsInfo(ctx)
	}
	if s.Cluster != nil && s.Cluster.Peer != nil {
		v.Peer = memberOf(s.Cluster.Peer)
		pc := &api.PeerContact{SilentSeconds: -1}
		if ago := n.heardAgo(); ago >= 0 {
			pc.SilentSeconds = ago.Seconds()
			pc.LastHeard = time.Now().Add(-ago).UTC().Format(time.RFC3339Nano)
		}
		v.PeerContact = pc
	}
	_ = n.withConn(ctx, func(c *pgx.Conn) error {
		if r, err := ReadRecord(ctx, c); err == nil {
			v.Record = &r
			if v.PeerContact != nil {
				v.PeerContact.Synchronized = r.Synchronized
			}
		}
		if v.PeerContact != nil && s.Role == state.RoleSecondary {
			v.PeerContact.Synchronized = n.contactSynchronized(ctx, c, s)
		}
		switch s.Role {
		case state.RolePrimary:
			if s.Cluster != nil && s.Cluster.Peer != nil {
				if r, err := n.primaryStats(ctx, c, s.Cluster.Peer.Name); err == nil {
					v.Replication = &r.ReplicationInfo
				}
			}
		case state.RoleSecondary:
			r := api.ReplicationInfo{State: "disconnected"}
			var status, received, last *string
			err := c.QueryRow(ctx, `SELECT status, flushed_lsn::text, to_char(last_msg_receipt_time AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') FROM pg_stat_wal_receiver`).Scan(&status, &received, &last)
			if err != nil && !errors.Is(err, pgx.ErrNoRows) {
				return err
			}
			r.ReceiverStatus, r.ReceivedLSN, r.LastMessage = deref(status), deref(received), deref(last)
			if r.ReceiverStatus == "streaming" {
				r.State = "streaming"
			}
			// Lag is what was received but not yet replayed; an idle primary
			// sends nothing, which is no lag.
			var lagBytes *int64
			var lagSec *float64
			if err := c.QueryRow(ctx, `SELECT pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::bigint,
	CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
	ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 END`).Scan(&lagBytes, &lagSec); err == nil {
				r.LagBytes, r.LagSeconds = deref(lagBytes), deref(lagSec)
			}
			v.Replication = &r
		}
		return nil
	})
	return v, nil
}

// Events returns the newest events from this node's copy of the record.
func (n *Node) Events(ctx context.Context, limit int) (api.EventList, error) {
	if limit <= 0 || limit > 10000 {
		limit = 100
	}
	var out api.EventList
	err := n.withConn(ctx, func(c *pgx.Conn) error {
		ev, err := Events(ctx, c, limit)
		out.Events = ev
		return err
	})
	if out.Events == nil {
		out.Events = []api.Event{}
	}
	return out, err
}

func (n *Node) vipInfo() api.ClusterIPInfo {
	st := n.vip.Status()
	return api.ClusterIPInfo{Address: st.Address, Interface: st.Interface, Held: st.Held, Conflict: st.Conflict, Error: st.LastError}
}

// contactSynchronized says whether, at the last contact with the primary,
// this secondary held every acknowledged commit: in sync and strict mode,
// the primary's own record said synchronized (it waited for this node);
// in async mode, this node has since received all the WAL the primary had
// flushed at that moment. This node's replicated copy of the record is no
// witness: it lags exactly when this node does. Without a contact since
// tandemd started, the answer is no: a data-loss warning must not be
// skipped on a guess.
func (n *Node) contactSynchronized(ctx context.Context, c *pgx.Conn, s state.State) bool {
	n.peerMu.Lock()
	pc, known := n.contact, n.contactKnown
	n.peerMu.Unlock()
	if !known || s.Cluster == nil {
		return false
	}
	if s.Cluster.Replication != ModeAsync {
		return pc.synchronized
	}
	var caughtUp bool
	if err := c.QueryRow(ctx, `SELECT coalesce(pg_last_wal_receive_lsn() >= $1::pg_lsn, false)`, pc.flushLSN).Scan(&caughtUp); err != nil {
		return false
	}
	return caughtUp
}
