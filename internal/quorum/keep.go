package quorum

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Keep runs an etcd member until ctx ends: it starts it (StartMember
// waits until the member has joined its quorum, which may take until a
// second member is up), reports each change of its state (starting,
// running, failed with the error, stopped), and starts it again 2 s after
// a failure.
func Keep(ctx context.Context, mc MemberConfig, log *slog.Logger, report func(m *Member, state string, err error)) {
	for {
		report(nil, "starting", nil)
		m, err := StartMember(ctx, mc)
		if err == nil {
			report(m, "running", nil)
			select {
			case <-ctx.Done():
				m.Stop()
				report(nil, "stopped", nil)
				return
			case err = <-m.Err():
				m.Stop()
			}
		}
		if ctx.Err() != nil {
			report(nil, "stopped", nil)
			return
		}
		if err != nil && strings.Contains(err.Error(), "has already been bootstrapped") && !mc.Existing {
			// This member's data is gone (a new disk, a removed dir) while
			// the others still count it: have them replace it, then join
			// them as a member added to a running cluster, with empty data.
			log.Warn("this quorum member's data is lost; the other members replace it", "err", err)
			if rerr := replaceSelf(ctx, mc); rerr != nil {
				log.Error("could not have the quorum replace this member; trying again in 2 s", "err", rerr)
			} else {
				mc.Existing = true
				log.Info("the quorum replaced this member; joining it with empty data")
				continue
			}
		}
		log.Error("quorum member failed; starting it again in 2 s", "err", err)
		report(nil, "failed", err)
		select {
		case <-ctx.Done():
			report(nil, "stopped", nil)
			return
		case <-time.After(2 * time.Second):
		}
	}
}

// replaceSelf has the other members remove this member and add it again,
// and empties its data dir (what a failed start left there), so that it
// can start as a member added to a running cluster.
func replaceSelf(ctx context.Context, mc MemberConfig) error {
	var others []string
	for name, addr := range mc.ClientAddrs {
		if name != mc.Name {
			others = append(others, "https://"+addr)
		}
	}
	if len(others) == 0 {
		return fmt.Errorf("the other members' client addresses are not known")
	}
	cli, err := NewClient(ClientConfig{Endpoints: others, CertPEM: mc.CertPEM, KeyPEM: mc.KeyPEM, TrustedPEM: mc.TrustedPEM})
	if err != nil {
		return err
	}
	defer cli.Close()
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := ReplaceMember(rctx, cli, mc.Name, mc.PeerAddr); err != nil {
		return err
	}
	return os.RemoveAll(filepath.Join(mc.Dir, etcdDir))
}
