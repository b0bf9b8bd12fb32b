package quorum

import (
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

const prefix = "/tandem/test"

func TestLeaderLostBeforeExpiry(t *testing.T) {
	tc := newTestCluster(t)
	cliA, cliB := tc.client("a"), tc.client("b")

	la, err := Campaign(ctxT(t, 10*time.Second), cliA, prefix, "a", LeaseConfig{}, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	// It renews: after 3 TTLs it still holds and the deadline is recent.
	time.Sleep(3 * DefaultLeaseConfig.TTL)
	if !la.Held() {
		t.Fatalf("a lost the key while renewing: %s", la.LostReason())
	}
	if left := time.Until(la.Deadline()); left < 500*time.Millisecond {
		t.Fatalf("deadline only %v ahead while renewing every %v", left, DefaultLeaseConfig.RenewEvery)
	}
	h, ok, err := CurrentHolder(ctxT(t, 5*time.Second), cliB, prefix)
	if err != nil || !ok || h.Name != "a" || h.Revision != la.Revision() {
		t.Fatalf("b sees holder %+v ok=%v err=%v", h, ok, err)
	}

	// b campaigns meanwhile: it must wait for the key to be gone.
	type result struct {
		l   *Leadership
		err error
		at  time.Time
	}
	bc := make(chan result, 1)
	go func() {
		l, err := Campaign(ctxT(t, 20*time.Second), cliB, prefix, "b", LeaseConfig{}, testLog(t))
		bc <- result{l, err, time.Now()}
	}()

	// a's renewals stop: its client is closed (a cut link, as far as the
	// lease can tell).
	cliA.Close()
	<-la.Lost()
	lostAt := time.Now()
	if la.Held() {
		t.Fatal("Held after Lost")
	}
	// At that moment the key must still be there on the server.
	h, ok, err = CurrentHolder(ctxT(t, 5*time.Second), cliB, prefix)
	if err != nil || !ok || h.Name != "a" {
		t.Fatalf("when a's Lost fired the server shows holder %+v ok=%v err=%v; want a, still present", h, ok, err)
	}
	select {
	case r := <-bc:
		t.Fatalf("b took the key (%v) before a's lease was gone", r.err)
	default:
	}

	r := <-bc
	if r.err != nil {
		t.Fatal(r.err)
	}
	defer r.l.Close()
	t.Logf("a lost the key at its deadline; b took it %v later", r.at.Sub(lostAt).Round(time.Millisecond))
	if !r.at.After(lostAt) {
		t.Fatal("b took the key before a stopped believing it held it")
	}
	h, ok, err = CurrentHolder(ctxT(t, 5*time.Second), tc.client("w"), prefix)
	if err != nil || !ok || h.Name != "b" || h.Revision != r.l.Revision() {
		t.Fatalf("w sees holder %+v ok=%v err=%v; want b", h, ok, err)
	}
}

// Beliefs checked against the server's view: while a node says Held, the
// server names it, through a resign, a retake and a forced revoke.
func TestNeverTwoHolders(t *testing.T) {
	tc := newTestCluster(t)
	clis := map[string]*clientv3.Client{"a": tc.client("a"), "b": tc.client("b")}
	w := tc.client("w")
	var held = map[string]*Leadership{}

	check := func(when string) {
		t.Helper()
		// Beliefs sampled before and after the server read: a node that
		// believes it holds across the read must be the one named.
		before := map[string]bool{}
		for n, l := range held {
			before[n] = l.Held()
		}
		h, ok, err := CurrentHolder(ctxT(t, 5*time.Second), w, prefix)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for name, l := range held {
			if before[name] && l.Held() {
				n++
				if !ok || h.Name != name {
					t.Fatalf("%s: %s believes it holds the key, the server says %+v (present %v)", when, name, h, ok)
				}
			}
		}
		if n > 1 {
			t.Fatalf("%s: %d nodes believe they hold the key", when, n)
		}
	}

	var err error
	held["a"], err = Campaign(ctxT(t, 10*time.Second), clis["a"], prefix, "a", LeaseConfig{}, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	check("a took it")

	// Hand over: a resigns, b takes it at once (no TTL to wait).
	bc := make(chan *Leadership, 1)
	go func() {
		l, err := Campaign(ctxT(t, 10*time.Second), clis["b"], prefix, "b", LeaseConfig{}, testLog(t))
		if err != nil {
			t.Error(err)
		}
		bc <- l
	}()
	time.Sleep(300 * time.Millisecond)
	check("b campaigning")
	start := time.Now()
	if err := held["a"].Resign(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	held["b"] = <-bc
	if held["b"] == nil {
		t.FailNow()
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("handover took %v", d)
	}
	check("after handover")

	// Forced: the lease revoked from elsewhere (tandem failover --force);
	// b learns it at its next renewal and stops believing.
	if _, err := w.Revoke(ctxT(t, 5*time.Second), held["b"].LeaseID()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-held["b"].Lost():
	case <-time.After(2 * DefaultLeaseConfig.RenewEvery):
		t.Fatal("b did not notice its lease was revoked")
	}
	if got := held["b"].LostReason(); got == "" {
		t.Fatal("no reason")
	}
	held["a"], err = Campaign(ctxT(t, 10*time.Second), clis["a"], prefix, "a", LeaseConfig{}, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	defer held["a"].Close()
	check("a took it back")
}

// promiseWhile counts a peer's failsafe promise on l every 50 ms, as the
// primary's failsafe loop does when its secondary answers, until stop.
func promiseWhile(l *Leadership, stop <-chan struct{}) {
	for {
		l.KeptBy(time.Now(), 2*time.Second)
		select {
		case <-stop:
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// A tenure kept by failsafe whose lease expired (here: revoked) takes the
// vacant key back under a new lease while the primary record still names
// it; once the record names another node it fences (Lost) instead.
func TestRetakeKeptByFailsafe(t *testing.T) {
	tc := newTestCluster(t)
	cliA, w := tc.client("a"), tc.client("w")
	ctx := ctxT(t, 30*time.Second)

	la, err := CampaignAsPrimary(ctx, cliA, prefix, "a", 4, LeaseConfig{}, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	defer la.Close()
	stop := make(chan struct{})
	go promiseWhile(la, stop)
	time.Sleep(200 * time.Millisecond)

	oldLease, oldRev := la.LeaseID(), la.Revision()
	if _, err := w.Revoke(ctx, oldLease); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * DefaultLeaseConfig.RenewEvery)
	for la.LeaseID() == oldLease && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if la.LeaseID() == oldLease || !la.Held() {
		t.Fatalf("after its lease went, kept by promises: lease %x (was %x), held %v (%s); want the key taken back", int64(la.LeaseID()), int64(oldLease), la.Held(), la.LostReason())
	}
	h, ok, err := CurrentHolder(ctx, w, prefix)
	if err != nil || !ok || h.Name != "a" || h.Lease != la.LeaseID() || h.Revision != la.Revision() {
		t.Fatalf("the server names %+v (present %v, err %v); want a under lease %x, revision %d", h, ok, err, int64(la.LeaseID()), la.Revision())
	}
	if la.LeaseID() == oldLease || la.Revision() == oldRev {
		t.Fatalf("retaken under the old lease %x / revision %d", int64(oldLease), oldRev)
	}
	// The new tenure is the one records are conditioned on.
	if err := la.WriteSync(ctx, "b"); err != nil {
		t.Fatalf("sync record after the retake: %v", err)
	}

	// Now the secondary has taken over meanwhile (the record names b): the
	// next time the lease goes, a fences rather than take anything back.
	put(t, w, PrimaryKey(prefix), `{"node":"b","term":5}`)
	retaken := la.LeaseID()
	if _, err := w.Revoke(ctx, retaken); err != nil {
		t.Fatal(err)
	}
	select {
	case <-la.Lost():
	case <-time.After(3 * DefaultLeaseConfig.RenewEvery):
		t.Fatal("a did not fence with its lease gone and the record naming b")
	}
	close(stop)
	if la.LeaseID() != retaken {
		t.Fatalf("a took a lease %x after the record named b", int64(la.LeaseID()))
	}
	if _, ok, err := CurrentHolder(ctx, w, prefix); err != nil || ok {
		t.Fatalf("the key is held (%v, err %v) after a fenced without taking it back", ok, err)
	}
}

// Without a promise holding the deadline (a forced failover's revoke) the
// lease's end is the tenure's end, as before.
func TestRevokedWithoutPromiseFences(t *testing.T) {
	tc := newTestCluster(t)
	cliA, w := tc.client("a"), tc.client("w")
	ctx := ctxT(t, 30*time.Second)
	la, err := CampaignAsPrimary(ctx, cliA, prefix, "a", 4, LeaseConfig{}, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	defer la.Close()
	revoked := la.LeaseID()
	if _, err := w.Revoke(ctx, revoked); err != nil {
		t.Fatal(err)
	}
	select {
	case <-la.Lost():
	case <-time.After(3 * DefaultLeaseConfig.RenewEvery):
		t.Fatal("a did not notice its lease was revoked")
	}
	if la.LeaseID() != revoked {
		t.Fatalf("a took the key back (lease %x) with no promise", int64(la.LeaseID()))
	}
}
