//go:build e2e

package e2e

import (
	"testing"
	"time"
)

// TestStreamingResumesAfterPartitionHeals: a partition between the nodes
// outlasts wal_receiver_timeout, so the secondary's WAL receiver gives up
// its connection and tries again into the cut; once the partition heals,
// the secondary streams again, the cluster is synchronized again and a
// synchronous commit through the cluster name completes, without anyone
// touching the nodes. The time from the heal to the console's status
// saying "streaming" is logged (the benchmark has its median).
func TestStreamingResumesAfterPartitionHeals(t *testing.T) {
	needRoot(t)
	c := upCluster(t, clusterOpts{mode: "sync", synchronized: true})
	resumed := c.partitionAndHeal(12 * time.Second)
	t.Logf("streaming again %s after the heal (as `tandem status` shows it)", resumed.Round(time.Millisecond))
	c.waitStatus("the cluster synchronized again", 30*time.Second, func(s labStatus) bool {
		return s.Cluster != nil && s.Cluster.Synchronized && s.roles()["a"] == "primary" && s.roles()["b"] == "secondary"
	})
	if _, err := c.sql(c.env.DNSName, "CREATE TABLE after_heal (x int); INSERT INTO after_heal VALUES (1)"); err != nil {
		t.Fatalf("a synchronous commit after the heal: %v", err)
	}
}

// partitionAndHeal cuts the nodes apart for d, makes sure the primary saw
// its secondary go, heals, and returns how long after the heal began the
// console's status first showed the secondary streaming. The status is
// asked back to back, so the time is what an operator watching it sees,
// give or take one status call.
func (l *testLab) partitionAndHeal(d time.Duration) time.Duration {
	l.t.Helper()
	cut := time.Now()
	l.partition("a", "b")
	l.waitStatus("the primary sees its secondary gone during the partition", d+30*time.Second, func(s labStatus) bool {
		return !s.streaming()
	})
	time.Sleep(time.Until(cut.Add(d)))
	healed := time.Now()
	l.heal()
	healCmd := time.Since(healed)
	// Generous: without help the receiver waits for the kernel SYN
	// retransmission, 15 to 60 s apart after a long cut.
	deadline := healed.Add(30 * time.Second)
	for {
		st, err := l.statusErr()
		if err == nil && st.streaming() {
			took := time.Since(healed)
			l.t.Logf("partition of %s healed (the heal command took %s); streaming again after %s", d, healCmd.Round(time.Millisecond), took.Round(time.Millisecond))
			return took
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("not streaming again within 30 s of the heal: %v %s", err, st)
		}
	}
}
