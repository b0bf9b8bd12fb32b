package quorum

import (
	"errors"
	"testing"
	"time"
)

func TestSyncRecordOnlyHolderWrites(t *testing.T) {
	tc := newTestCluster(t)
	cliA, cliB := tc.client("a"), tc.client("b")
	la, err := Campaign(ctxT(t, 10*time.Second), cliA, prefix, "a", LeaseConfig{}, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := ReadSync(ctxT(t, 5*time.Second), cliB, prefix); err != nil || ok {
		t.Fatalf("a record before any write: ok=%v err=%v", ok, err)
	}
	if err := la.WriteSync(ctxT(t, 5*time.Second), "b"); err != nil {
		t.Fatal(err)
	}
	rec, ok, err := ReadSync(ctxT(t, 5*time.Second), cliB, prefix)
	if err != nil || !ok || rec.Sync != "b" || rec.Leader != "a" || rec.Revision != la.Revision() {
		t.Fatalf("b reads %+v ok=%v err=%v", rec, ok, err)
	}

	// a's key is revoked behind its back; before a notices (Held still
	// true or not), its write is refused (by the server's compare if a has
	// not noticed yet).
	if _, err := tc.client("w").Revoke(ctxT(t, 5*time.Second), la.LeaseID()); err != nil {
		t.Fatal(err)
	}
	if err := la.WriteSync(ctxT(t, 5*time.Second), ""); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("write after the key was revoked: %v, want ErrNotLeader", err)
	}
	<-la.Lost()

	// b takes the key; a's old tenure still cannot write; b can.
	lb, err := Campaign(ctxT(t, 10*time.Second), cliB, prefix, "b", LeaseConfig{}, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	defer lb.Close()
	if err := la.WriteSync(ctxT(t, 5*time.Second), "a"); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("old holder's write: %v, want ErrNotLeader", err)
	}
	if err := lb.WriteSync(ctxT(t, 5*time.Second), ""); err != nil {
		t.Fatal(err)
	}
	if rec, _, _ := ReadSync(ctxT(t, 5*time.Second), cliA, prefix); rec.Sync != "" || rec.Leader != "b" {
		t.Fatalf("record after b's write: %+v", rec)
	}
}
