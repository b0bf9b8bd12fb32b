package quorum

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ReplaceMember prepares the cluster for a member that lost its data dir
// (or is moved to a new machine): the old member of that name is removed
// and a new one with peerAddr is added, through a client of the remaining
// members. The replacement then starts with MemberConfig.Existing set.
// etcd refuses a member whose data is gone but whose id the cluster still
// knows, so this step cannot be skipped.
//
// It can be called again after a failure. etcd refuses the add ("unhealthy
// cluster") while a member it counts on has been connected for less than
// 5 s; that refusal is retried until ctx ends.
func ReplaceMember(ctx context.Context, cli *clientv3.Client, name, peerAddr string) error {
	peer := (&url.URL{Scheme: "https", Host: peerAddr}).String()
	for {
		err := replaceOnce(ctx, cli, name, peer)
		if !errors.Is(err, rpctypes.ErrUnhealthy) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("while replacing quorum member %s: %w (last: %w)", name, ctx.Err(), err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func replaceOnce(ctx context.Context, cli *clientv3.Client, name, peer string) error {
	list, err := cli.MemberList(ctx)
	if err != nil {
		return fmt.Errorf("while listing the quorum members: %w", err)
	}
	for _, m := range list.Members {
		switch {
		case m.Name == "" && slices.Contains(m.PeerURLs, peer):
			return nil // added already, not started yet
		case m.Name == name:
			if _, err := cli.MemberRemove(ctx, m.ID); err != nil {
				return fmt.Errorf("while removing quorum member %s (%x): %w", name, m.ID, err)
			}
		}
	}
	if _, err := cli.MemberAdd(ctx, []string{peer}); err != nil {
		return fmt.Errorf("while adding quorum member %s at %s: %w", name, peer, err)
	}
	return nil
}

// MoveLeader hands the etcd leadership to the member called to. It must
// be sent to the current leader: leaderCfg is a client configuration
// for the leader's endpoint alone. moved is false when to leads already.
func MoveLeader(ctx context.Context, cli *clientv3.Client, leaderCfg ClientConfig, to string) (moved bool, err error) {
	list, err := cli.MemberList(ctx)
	if err != nil {
		return false, fmt.Errorf("while listing the quorum members: %w", err)
	}
	var id uint64
	for _, m := range list.Members {
		if m.Name == to && !m.IsLearner {
			id = m.ID
		}
	}
	if id == 0 {
		return false, fmt.Errorf("no quorum member called %s", to)
	}
	lc, err := NewClient(leaderCfg)
	if err != nil {
		return false, err
	}
	defer lc.Close()
	st, err := lc.Status(ctx, leaderCfg.Endpoints[0])
	if err != nil {
		return false, fmt.Errorf("while asking the etcd leader: %w", err)
	}
	if st.Leader == id {
		return false, nil
	}
	if _, err := lc.MoveLeader(ctx, id); err != nil {
		return false, fmt.Errorf("while handing the etcd leadership to %s: %w", to, err)
	}
	return true, nil
}
