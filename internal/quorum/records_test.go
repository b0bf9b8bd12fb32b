package quorum

import (
	"context"
	"errors"
	"testing"
	"time"
)

// A switchover's handover: the key is gone and the record names the
// successor in one step; the old holder's Lost says it was on purpose; the
// successor takes the key at once, records itself primary, and the old
// tenure can write neither record any more.
func TestHandOverAndPrimaryRecord(t *testing.T) {
	tc := newTestCluster(t)
	cliA, cliB := tc.client("a"), tc.client("b")
	ctx := ctxT(t, 20*time.Second)

	la, err := Campaign(ctx, cliA, prefix, "a", LeaseConfig{}, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := la.WritePrimary(ctx, "a", 1); err != nil {
		t.Fatal(err)
	}
	if rec, ok, err := ReadPrimary(ctx, cliB, prefix); err != nil || !ok || rec.Node != "a" || rec.Term != 1 {
		t.Fatalf("primary record %+v ok=%v err=%v, want a at term 1", rec, ok, err)
	}
	if err := la.HandOver(ctx, "a", "b", 2); err != nil {
		t.Fatal(err)
	}
	select {
	case <-la.Lost():
	default:
		t.Fatal("Lost not closed after the handover")
	}
	if r := la.LostReason(); !Intentional(r) {
		t.Fatalf("lost reason %q after a handover is not intentional: the old primary would fence for it", r)
	}
	if _, ok, err := CurrentHolder(ctx, cliB, prefix); err != nil || ok {
		t.Fatalf("the key is still held after the handover (ok=%v err=%v)", ok, err)
	}
	h, ok, err := ReadHandover(ctx, cliB, prefix)
	if err != nil || !ok || h.To != "b" || h.From != "a" || h.Term != 2 {
		t.Fatalf("handover record %+v ok=%v err=%v, want a → b at term 2", h, ok, err)
	}
	start := time.Now()
	lb, err := CampaignAsPrimary(ctx, cliB, prefix, "b", 2, LeaseConfig{}, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("b took %v to take a key that was handed over (it must not wait for a lease)", took)
	}
	if rec, ok, err := ReadPrimary(ctx, cliA, prefix); err != nil || !ok || rec.Node != "b" || rec.Term != 2 {
		t.Fatalf("after CampaignAsPrimary the primary record is %+v ok=%v err=%v, want b at term 2", rec, ok, err)
	}
	if err := lb.ClearHandover(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := ReadHandover(ctx, cliB, prefix); ok {
		t.Fatal("handover record still there after ClearHandover")
	}
	// The old tenure writes nothing.
	if err := la.WritePrimary(ctx, "a", 3); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("the old holder wrote the primary record: %v", err)
	}
	if err := la.HandOver(ctx, "a", "b", 3); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("the old holder handed over again: %v", err)
	}
	if rec, _, _ := ReadPrimary(ctx, cliA, prefix); rec.Node != "b" || rec.Term != 2 {
		t.Fatalf("primary record %+v, want b at term 2", rec)
	}
}

// A restarted holder takes its tenure back with the lease it saved, same
// revision, no vacancy; a lease that expired meanwhile is not taken back.
func TestResume(t *testing.T) {
	tc := newTestCluster(t)
	cliA, cliB := tc.client("a"), tc.client("b")
	ctx := ctxT(t, 30*time.Second)

	la, err := Campaign(ctx, cliA, prefix, "a", LeaseConfig{}, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	lease, rev := la.LeaseID(), la.Revision()
	// tandemd stops without revoking (a restart): renewals stop.
	la.Close()
	l2, ok, err := Resume(ctx, cliA, prefix, "a", lease, LeaseConfig{}, testLog(t))
	if err != nil || !ok {
		t.Fatalf("Resume right after the restart: ok=%v err=%v, want the tenure back", ok, err)
	}
	if l2.Revision() != rev || !l2.Held() {
		t.Fatalf("resumed tenure revision %d held=%v, want %d, held", l2.Revision(), l2.Held(), rev)
	}
	// It renews: two TTLs later the key is still a's.
	time.Sleep(2 * DefaultLeaseConfig.TTL)
	if h, ok, _ := CurrentHolder(ctx, cliB, prefix); !ok || h.Name != "a" || h.Revision != rev {
		t.Fatalf("after resuming, the key is %+v (held %v), want a's of revision %d", h, ok, rev)
	}
	// Another node's name cannot take the lease over.
	if _, ok, err := Resume(ctx, cliB, prefix, "b", lease, LeaseConfig{}, testLog(t)); err != nil || ok {
		t.Fatalf("b resumed a's tenure: ok=%v err=%v", ok, err)
	}
	if h, ok, _ := CurrentHolder(ctx, cliB, prefix); !ok || h.Name != "a" {
		t.Fatalf("b's attempt at a's lease cost a its key: holder %+v held %v", h, ok)
	}
	l2.Close()
	// Once the lease has expired there is nothing to take back.
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := WaitVacant(wctx, cliB, prefix); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := Resume(ctx, cliA, prefix, "a", lease, LeaseConfig{}, testLog(t)); err != nil || ok {
		t.Fatalf("Resume after the lease expired: ok=%v err=%v, want not ok", ok, err)
	}
}

// The etcd leadership moves to the member asked for, through a client of
// the leader; asking for the member that leads changes nothing.
func TestMoveLeader(t *testing.T) {
	tc := newTestCluster(t)
	ctx := ctxT(t, 20*time.Second)
	var leader string
	for name, m := range tc.members {
		if m.IsRaftLeader() {
			leader = name
		}
	}
	if leader == "" {
		t.Fatal("no member leads")
	}
	to := ""
	for _, n := range memberNames {
		if n != leader {
			to = n
			break
		}
	}
	cfgOf := func(name string) ClientConfig {
		c := tc.cfgs[name]
		return ClientConfig{Endpoints: []string{tc.members[name].ClientURL()}, CertPEM: c.CertPEM, KeyPEM: c.KeyPEM, TrustedPEM: c.TrustedPEM}
	}
	cli := tc.client(to)
	moved, err := MoveLeader(ctx, cli, cfgOf(leader), to)
	if err != nil || !moved {
		t.Fatalf("MoveLeader(%s) through the leader %s: moved=%v err=%v", to, leader, moved, err)
	}
	if !tc.members[to].IsRaftLeader() || tc.members[leader].IsRaftLeader() {
		t.Fatalf("after the move, %s leads=%v and %s leads=%v", to, tc.members[to].IsRaftLeader(), leader, tc.members[leader].IsRaftLeader())
	}
	if moved, err := MoveLeader(ctx, cli, cfgOf(to), to); err != nil || moved {
		t.Fatalf("moving the leadership to the member that leads: moved=%v err=%v", moved, err)
	}
	if _, err := MoveLeader(ctx, cli, cfgOf(to), "nobody"); err == nil {
		t.Fatal("moving the leadership to an unknown member did not fail")
	}
}

// A reload: the old process releases its tenure after one last renewal,
// the new one resumes it before the deadline Release returned.
func TestReleaseThenResume(t *testing.T) {
	tc := newTestCluster(t)
	cliA, cliB := tc.client("a"), tc.client("b")
	ctx := ctxT(t, 30*time.Second)

	la, err := Campaign(ctx, cliA, prefix, "a", LeaseConfig{}, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	before := la.Deadline()
	time.Sleep(100 * time.Millisecond)
	deadline := la.Release(ctx)
	if !deadline.After(before) {
		t.Fatalf("Release's deadline %s is not later than the last renewal's %s: it did not renew once more", deadline, before)
	}
	if la.Held() || !Intentional(la.LostReason()) {
		t.Fatalf("after Release: held=%v reason %q, want released intentionally", la.Held(), la.LostReason())
	}
	if h, ok, _ := CurrentHolder(ctx, cliB, prefix); !ok || h.Name != "a" {
		t.Fatalf("Release gave the key away: holder %+v held %v", h, ok)
	}
	l2, ok, err := Resume(ctx, cliA, prefix, "a", la.LeaseID(), LeaseConfig{}, testLog(t))
	if err != nil || !ok {
		t.Fatalf("Resume after Release: ok=%v err=%v, want the tenure back", ok, err)
	}
	if l2.Revision() != la.Revision() {
		t.Fatalf("resumed revision %d, want %d", l2.Revision(), la.Revision())
	}
	l2.Close()
}
