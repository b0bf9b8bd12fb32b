package quorum

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A member whose data dir is lost comes back through Keep: the others
// replace it and it joins them with empty data; the quorum has its three
// members again and the new member serves what was written meanwhile.
func TestKeepRejoinsAfterDataLoss(t *testing.T) {
	tc := newTestCluster(t)
	cliA := tc.client("a")
	put(t, cliA, "/before", "1")
	tc.stop("w")
	if err := os.RemoveAll(filepath.Join(tc.cfgs["w"].Dir, etcdDir)); err != nil {
		t.Fatal(err)
	}
	put(t, cliA, "/meanwhile", "2")

	mc := tc.cfgs["w"]
	mc.ClientAddrs = map[string]string{}
	for _, n := range memberNames {
		mc.ClientAddrs[n] = tc.cfgs[n].ClientAddr
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	running := make(chan *Member, 4)
	done := make(chan struct{})
	go func() {
		defer close(done)
		Keep(ctx, mc, testLog(t), func(m *Member, state string, err error) {
			if state == "running" {
				running <- m
			}
		})
	}()
	var m *Member
	select {
	case m = <-running:
	case <-time.After(60 * time.Second):
		t.Fatal("the member with lost data did not rejoin within 60 s")
	}
	cli, err := m.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if v, ok := get(t, cli, "/meanwhile"); !ok || v != "2" {
		t.Fatalf("the rejoined member serves /meanwhile = %q (present %v), want 2", v, ok)
	}
	list, err := cli.MemberList(ctxT(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Members) != 3 {
		t.Fatalf("the quorum has %d members after the rejoin, want 3", len(list.Members))
	}
	cancel()
	<-done
}
