package quorum

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// SyncKey is the key under prefix naming the synchronous standby.
func SyncKey(prefix string) string { return prefix + "/sync" }

// SyncRecord says which node is synchronous: the only one that may promote
// by itself in sync or strict mode. Sync "" names none (commits may go
// async). The holder writes it in the safe order (docs/quorum.md); this
// package only makes sure that only the holder writes it.
type SyncRecord struct {
	Sync     string    `json:"sync"`
	Leader   string    `json:"leader"`   // the holder that wrote it
	Revision int64     `json:"revision"` // the leader key's create revision then
	At       time.Time `json:"at"`
}

// WriteSync records node as synchronous ("" for none). The write is a
// transaction on the leader key still being this tenure's (its create
// revision): a node that lost the key cannot write, even if it does not
// know yet. It returns ErrNotLeader then.
func (l *Leadership) WriteSync(ctx context.Context, node string) error {
	if !l.Held() {
		return fmt.Errorf("while recording %q as synchronous: %w (%s)", node, ErrNotLeader, l.LostReason())
	}
	rec := SyncRecord{Sync: node, Leader: l.name, Revision: l.Revision(), At: time.Now().UTC()}
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	tr, err := l.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(LeaderKey(l.prefix)), "=", l.Revision())).
		Then(clientv3.OpPut(SyncKey(l.prefix), string(b))).
		Commit()
	if err != nil {
		return fmt.Errorf("while recording %q as synchronous: %w", node, err)
	}
	if !tr.Succeeded {
		return fmt.Errorf("while recording %q as synchronous: %w", node, ErrNotLeader)
	}
	return nil
}

// ReadSync reads the sync record (linearizably). ok is false when none was
// ever written.
func ReadSync(ctx context.Context, cli *clientv3.Client, prefix string) (rec SyncRecord, ok bool, err error) {
	r, err := cli.Get(ctx, SyncKey(prefix))
	if err != nil {
		return SyncRecord{}, false, fmt.Errorf("while reading the sync record: %w", err)
	}
	if len(r.Kvs) == 0 {
		return SyncRecord{}, false, nil
	}
	if err := json.Unmarshal(r.Kvs[0].Value, &rec); err != nil {
		return SyncRecord{}, false, fmt.Errorf("while reading the sync record: %w", err)
	}
	return rec, true, nil
}
