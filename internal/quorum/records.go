package quorum

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// PrimaryKey is the key under prefix naming the primary and its term. Its
// holder writes it, while holding the leader key, before PostgreSQL opens
// for writes: a former primary that comes back reads it to learn whether
// it was replaced, even when the leader key is vacant by then.
func PrimaryKey(prefix string) string { return prefix + "/primary" }

// HandoverKey is the key under prefix a switchover writes as the leader
// key goes: the secondary it names takes the key for the switchover, and
// does not treat the vacancy as a failure of the primary.
func HandoverKey(prefix string) string { return prefix + "/handover" }

// PrimaryRecord names the primary of a term.
type PrimaryRecord struct {
	Node string    `json:"node"`
	Term int64     `json:"term"`
	At   time.Time `json:"at"`
}

// Handover is a switchover in flight: To takes over at Term.
type Handover struct {
	From string    `json:"from"`
	To   string    `json:"to"`
	Term int64     `json:"term"`
	At   time.Time `json:"at"`
}

// WritePrimary records node as primary at term, only while this tenure
// holds the leader key.
func (l *Leadership) WritePrimary(ctx context.Context, node string, term int64) error {
	return l.putIfHeld(ctx, PrimaryKey(l.prefix), PrimaryRecord{Node: node, Term: term, At: time.Now().UTC()}, "recording the primary")
}

func (l *Leadership) putIfHeld(ctx context.Context, key string, v any, what string) error {
	if !l.Held() {
		return fmt.Errorf("while %s: %w (%s)", what, ErrNotLeader, l.LostReason())
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tr, err := l.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(LeaderKey(l.prefix)), "=", l.Revision())).
		Then(clientv3.OpPut(key, string(b))).
		Commit()
	if err != nil {
		return fmt.Errorf("while %s: %w", what, err)
	}
	if !tr.Succeeded {
		return fmt.Errorf("while %s: %w", what, ErrNotLeader)
	}
	return nil
}

// ReadPrimary reads the primary record; ok is false when none was written.
func ReadPrimary(ctx context.Context, cli *clientv3.Client, prefix string) (rec PrimaryRecord, ok bool, err error) {
	ok, err = readJSON(ctx, cli, PrimaryKey(prefix), &rec)
	return rec, ok, err
}

// ReadHandover reads the handover record; ok is false when there is none.
func ReadHandover(ctx context.Context, cli *clientv3.Client, prefix string) (h Handover, ok bool, err error) {
	ok, err = readJSON(ctx, cli, HandoverKey(prefix), &h)
	return h, ok, err
}

func readJSON(ctx context.Context, cli *clientv3.Client, key string, v any) (bool, error) {
	r, err := cli.Get(ctx, key)
	if err != nil {
		return false, fmt.Errorf("while reading %s: %w", key, err)
	}
	if len(r.Kvs) == 0 {
		return false, nil
	}
	if err := json.Unmarshal(r.Kvs[0].Value, v); err != nil {
		return false, fmt.Errorf("while reading %s: %w", key, err)
	}
	return true, nil
}

// HandOver gives the leader key up for a switchover to node to at term: in
// one transaction (only while this tenure holds the key) the key is
// deleted and the handover record written, then the lease is revoked.
// Lost closes with reason "handed over".
func (l *Leadership) HandOver(ctx context.Context, from, to string, term int64) error {
	if !l.Held() {
		return fmt.Errorf("while handing the leader key over: %w (%s)", ErrNotLeader, l.LostReason())
	}
	b, err := json.Marshal(Handover{From: from, To: to, Term: term, At: time.Now().UTC()})
	if err != nil {
		return err
	}
	key := LeaderKey(l.prefix)
	tr, err := l.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", l.Revision())).
		Then(clientv3.OpDelete(key), clientv3.OpPut(HandoverKey(l.prefix), string(b))).
		Commit()
	if err != nil {
		return fmt.Errorf("while handing the leader key over: %w", err)
	}
	if !tr.Succeeded {
		return fmt.Errorf("while handing the leader key over: %w", ErrNotLeader)
	}
	l.halt()
	l.lose(ReasonHandedOver)
	// The key is gone already; the lease holds nothing now, so its
	// revocation is off the switchover's path.
	go func() {
		rctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if _, err := l.cli.Revoke(rctx, l.LeaseID()); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
			l.log.Warn("could not revoke the handed-over lease; it expires by itself", "err", err)
		}
	}()
	return nil
}

// ClearHandover removes the handover record once the switchover is done
// (by the new holder).
func (l *Leadership) ClearHandover(ctx context.Context) error {
	if !l.Held() {
		return ErrNotLeader
	}
	_, err := l.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(LeaderKey(l.prefix)), "=", l.Revision())).
		Then(clientv3.OpDelete(HandoverKey(l.prefix))).
		Commit()
	return err
}

// Reasons Lost closes for that are not a failure: the holder gave the key
// up on purpose and must not fence for it.
const (
	ReasonResigned   = "resigned"
	ReasonClosed     = "closed"
	ReasonHandedOver = "handed over"
)

// Intentional says whether a Lost reason is a deliberate release.
func Intentional(reason string) bool {
	return reason == ReasonResigned || reason == ReasonClosed || reason == ReasonHandedOver
}
