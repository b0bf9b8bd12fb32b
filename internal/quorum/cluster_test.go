package quorum

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// testCluster is three members on 127.0.0.1, random ports, in t.TempDir().
type testCluster struct {
	t       *testing.T
	cfgs    map[string]MemberConfig
	members map[string]*Member
}

var memberNames = []string{"a", "b", "w"}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func testLog(t *testing.T) *slog.Logger {
	if os.Getenv("TANDEM_QUORUM_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func newTestCluster(t *testing.T) *testCluster {
	t.Helper()
	dir := t.TempDir()
	peers := map[string]string{}
	clients := map[string]string{}
	certs := map[string][2][]byte{}
	var trusted [][]byte
	for _, n := range memberNames {
		peers[n], clients[n] = freeAddr(t), freeAddr(t)
		c, k, err := NewMemberCert(n, []string{"127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		certs[n] = [2][]byte{c, k}
		trusted = append(trusted, c)
	}
	tc := &testCluster{t: t, cfgs: map[string]MemberConfig{}, members: map[string]*Member{}}
	for _, n := range memberNames {
		tc.cfgs[n] = MemberConfig{
			Name: n, Dir: filepath.Join(dir, n), PeerAddr: peers[n], ClientAddr: clients[n],
			Peers: peers, Token: "test-cluster", CertPEM: certs[n][0], KeyPEM: certs[n][1],
			TrustedPEM: trusted, Log: testLog(t).With("member", n),
		}
	}
	// The three must start together: each waits for a raft leader.
	errs := make(chan error, len(memberNames))
	ms := make(chan *Member, len(memberNames))
	for _, n := range memberNames {
		go func() {
			m, err := StartMember(ctxT(t, 20*time.Second), tc.cfgs[n])
			errs <- err
			ms <- m
		}()
	}
	for range memberNames {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
		m := <-ms
		tc.members[m.cfg.Name] = m
	}
	t.Cleanup(func() {
		for _, m := range tc.members {
			if m != nil {
				m.Stop()
			}
		}
	})
	return tc
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func (tc *testCluster) client(name string) *clientv3.Client {
	tc.t.Helper()
	cli, err := tc.members[name].Client()
	if err != nil {
		tc.t.Fatal(err)
	}
	tc.t.Cleanup(func() { cli.Close() })
	return cli
}

func (tc *testCluster) stop(name string) {
	tc.members[name].Stop()
	tc.members[name] = nil
}

func (tc *testCluster) start(name string) {
	tc.t.Helper()
	m, err := StartMember(ctxT(tc.t, 20*time.Second), tc.cfgs[name])
	if err != nil {
		tc.t.Fatal(err)
	}
	tc.members[name] = m
}

func put(t *testing.T, cli *clientv3.Client, k, v string) {
	t.Helper()
	if _, err := cli.Put(ctxT(t, 5*time.Second), k, v); err != nil {
		t.Fatalf("put %s: %v", k, err)
	}
}

// get reads k linearizably through cli's member.
func get(t *testing.T, cli *clientv3.Client, k string) (string, bool) {
	t.Helper()
	r, err := cli.Get(ctxT(t, 5*time.Second), k)
	if err != nil {
		t.Fatalf("get %s: %v", k, err)
	}
	if len(r.Kvs) == 0 {
		return "", false
	}
	return string(r.Kvs[0].Value), true
}

func TestMemberRestartAndWipe(t *testing.T) {
	tc := newTestCluster(t)
	put(t, tc.client("a"), "k1", "v1")
	if v, _ := get(t, tc.client("w"), "k1"); v != "v1" {
		t.Fatalf("witness reads %q, want v1", v)
	}

	// Stopped and restarted with its data: it rejoins and catches up.
	tc.stop("b")
	put(t, tc.client("a"), "k2", "v2") // a and w are a quorum
	tc.start("b")
	if v, _ := get(t, tc.client("b"), "k2"); v != "v2" {
		t.Fatalf("restarted b reads %q, want v2", v)
	}

	// Data dir wiped: it must be removed and added again (etcd refuses a
	// member with a known id and no data), then starts as Existing.
	tc.stop("w")
	if err := os.RemoveAll(tc.cfgs["w"].Dir); err != nil {
		t.Fatal(err)
	}
	put(t, tc.client("a"), "k3", "v3")
	if err := ReplaceMember(ctxT(t, 10*time.Second), tc.client("a"), "w", tc.cfgs["w"].PeerAddr); err != nil {
		t.Fatal(err)
	}
	c := tc.cfgs["w"]
	c.Existing = true
	tc.cfgs["w"] = c
	tc.start("w")
	if v, _ := get(t, tc.client("w"), "k3"); v != "v3" {
		t.Fatalf("re-added w reads %q, want v3", v)
	}
	list, err := tc.client("a").MemberList(ctxT(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Members) != 3 {
		t.Fatalf("members after replace: %d, want 3", len(list.Members))
	}
}

func TestMemberRefusesStranger(t *testing.T) {
	tc := newTestCluster(t)
	c, k, err := NewMemberCert("x", []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	cli, err := NewClient(ClientConfig{
		Endpoints: []string{tc.members["a"].ClientURL()}, CertPEM: c, KeyPEM: k,
		TrustedPEM: tc.cfgs["a"].TrustedPEM, DialTimeout: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.Get(ctxT(t, 2*time.Second), "k"); err == nil {
		t.Fatal("a client with an unpinned certificate was served")
	} else {
		fmt.Fprintln(os.Stderr, "refused as expected:", err)
	}
}

// A member's data dir stays small: the witness is meant for a small
// machine ("a few MiB of disk"). etcd's defaults preallocate two 64 MB WAL
// segments. Counted in blocks on disk: bbolt's file is sparse.
func TestMemberDataDirSmall(t *testing.T) {
	tc := newTestCluster(t)
	put(t, tc.client("a"), "k1", "v1")
	for _, n := range memberNames {
		var total int64
		err := filepath.WalkDir(tc.cfgs[n].Dir, func(_ string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			fi, err := d.Info()
			if err == nil {
				total += fi.Sys().(*syscall.Stat_t).Blocks * 512
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if total > 12<<20 {
			t.Errorf("member %s's data dir takes %d bytes of disk, want at most 12 MiB", n, total)
		}
	}
}
