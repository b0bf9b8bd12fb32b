//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The end-to-end proof of issue 3: assemble and disassemble, streaming
// replication, WAL retention with its cap, and the replication modes. Each
// test has a lab of its own; the console runs on the lab's client host.

// TestAssemble assembles a cluster and checks what an operator sees and
// relies on: status (name, term 1, synchronized, roles, reachability,
// cluster IP on the primary only), a row written through the cluster DNS
// name read on the secondary, a write on the secondary refused, the
// replication role, slot and pg_hba entries on the primary, and the
// `assembled` event.
func TestAssemble(t *testing.T) {
	needRoot(t)
	t.Parallel()
	p := upCluster(t, clusterOpts{})

	var st labStatus
	eventually(t, "status shows the cluster synchronized", 30*time.Second, func() (bool, string) {
		var err error
		if st, err = p.statusErr(); err != nil {
			return false, err.Error()
		}
		return st.Cluster != nil && st.Cluster.Synchronized, st.String()
	})
	c := st.Cluster
	if c.Name != p.env.DNSName || c.State != "assembled" || c.Term != 1 || c.Primary != "a" || c.Replication != "sync" || c.Degraded {
		t.Errorf("status cluster: %s; want name %s, assembled, term 1, primary a, sync, not degraded", st, p.env.DNSName)
	}
	a, b := st.node("a"), st.node("b")
	if len(st.Nodes) != 2 || a == nil || b == nil {
		t.Fatalf("status nodes: %s; want a and b", st)
	}
	if !a.Reachable || a.Role != "primary" || a.Term != 1 || a.Address != p.fqdn("a")+":7400" || a.Postgres.InRecovery {
		t.Errorf("status of a: %+v; want reachable primary at term 1, read-write", *a)
	}
	if !b.Reachable || b.Role != "secondary" || b.Term != 1 || b.Address != p.fqdn("b")+":7400" || !b.Postgres.InRecovery {
		t.Errorf("status of b: %+v; want reachable secondary at term 1, in recovery", *b)
	}
	if r := a.Replication; r == nil || r.State != "streaming" || r.SyncState != "sync" || r.Slot != "tandem_b" || r.SlotWALStatus != "reserved" {
		t.Errorf("a's view of replication: %s; want streaming, sync, slot tandem_b reserved", st)
	}
	if a.ClusterIP == nil || !a.ClusterIP.Held || b.ClusterIP == nil || b.ClusterIP.Held {
		t.Errorf("cluster IP as the nodes report it: %s; want held by a only", st)
	}
	if !p.holdsClusterIP("a") || p.holdsClusterIP("b") {
		t.Errorf("cluster IP %s in the namespaces: a %v, b %v; want a only", p.env.ClusterIP, p.holdsClusterIP("a"), p.holdsClusterIP("b"))
	}

	// Replication: a row written through the cluster DNS name is read on b.
	p.mustSQL("db", `create table assemble_check (id int primary key, note text); insert into assemble_check values (1, 'written through the cluster IP')`)
	p.waitSQL("b", `select note from assemble_check where id = 1`, "written through the cluster IP", 10*time.Second)
	if got := p.mustSQL("b", `select pg_is_in_recovery()`); got != "t" {
		t.Errorf("b: pg_is_in_recovery() = %s, want t (a hot standby)", got)
	}
	// A write on b fails: it is a read-only hot standby.
	if out, err := p.sql("b", `insert into assemble_check values (2, 'on the secondary')`); err == nil || !strings.Contains(err.Error(), "read-only transaction") {
		t.Errorf("a write on the secondary: %q, %v; want it refused as a read-only transaction", out, err)
	}
	if got := p.mustSQL("db", `select count(*) from assemble_check`); got != "1" {
		t.Errorf("rows on the primary after the refused write on b: %s, want 1", got)
	}
	// The cluster record is in schema tandem, replicated like any change.
	if got := p.mustSQL("b", `select count(*) from pg_namespace where nspname = 'tandem'`); got != "1" {
		t.Errorf("b has no schema tandem (the replicated cluster record): %s", got)
	}

	// What assembly set up on the primary: a SCRAM replication role, the
	// slot, pg_hba replication entries for the two node IPs only.
	if got := p.mustSQL("a", `select rolreplication::text || ' ' || rolcanlogin::text || ' ' || (rolpassword like 'SCRAM-SHA-256$%')::text from pg_authid where rolname = 'tandem_replication'`); got != "true true true" {
		t.Errorf("replication role on a (replication, login, SCRAM password): %q, want \"true true true\"", got)
	}
	if got := p.mustSQL("a", `select slot_name || ' ' || slot_type || ' ' || active::text from pg_replication_slots`); got != "tandem_b physical true" {
		t.Errorf("slots on a: %q, want one active physical slot tandem_b", got)
	}
	hba := p.mustSQL("a", `select address || '/' || netmask from pg_hba_file_rules where 'tandem_replication' = any(user_name) and 'replication' = any(database) and auth_method <> 'reject' order by address`)
	wantHBA := []string{p.env.nodeIP("a") + "/255.255.255.255", p.env.nodeIP("b") + "/255.255.255.255"}
	slices.Sort(wantHBA)
	if got := strings.Fields(hba); !slices.Equal(got, wantHBA) {
		t.Errorf("pg_hba replication entries on a: %v, want exactly %v (the node IPs)", got, wantHBA)
	}
	if got := p.mustSQL("a", `show synchronous_standby_names`); got != `"b"` && got != "b" {
		t.Errorf("a: synchronous_standby_names = %q, want b", got)
	}

	// b's own data was moved aside for the clone and is gone now it streams.
	p.noOldDataOn(t, "b")

	ev := p.events()
	if countEvents(ev, "assembled") != 1 {
		t.Errorf("events: %v; want one assembled", eventKinds(ev))
	}
	for _, e := range ev {
		if e.Kind == "assembled" && (e.At.IsZero() || e.Term != 1 || !strings.Contains(e.Message, "a") || time.Since(e.At) > 10*time.Minute) {
			t.Errorf("assembled event: %+v; want a recent time, term 1 and a message", e)
		}
	}
}

// TestAssembleRefused: every refused assembly leaves both nodes as they
// were: wrong tokens, no confirmation off a terminal, and (after a real
// assembly) an assembly of nodes that already form a cluster.
func TestAssembleRefused(t *testing.T) {
	needRoot(t)
	t.Parallel()
	p := upLab(t)
	// b's own database, which an accepted assembly would replace.
	p.mustSQL("b", `create table b_own_data (note text); insert into b_own_data values ('b was here')`)
	untouched := func(t *testing.T, q *testLab) {
		t.Helper()
		for _, node := range []string{"a", "b"} {
			n, err := q.nodeStatusErr(node)
			if err != nil {
				t.Errorf("%s: %v", node, err)
				continue
			}
			if n.Role != "none" || n.Term != 0 || n.Cluster != "" || n.Operation != "" || n.Postgres.State != "running" || n.Postgres.InRecovery {
				t.Errorf("%s after the refusal: role %q term %d cluster %q operation %q PostgreSQL %s (recovery %v); want role none, no cluster, read-write PostgreSQL running",
					node, n.Role, n.Term, n.Cluster, n.Operation, n.Postgres.State, n.Postgres.InRecovery)
			}
			if q.holdsClusterIP(node) {
				t.Errorf("%s holds the cluster IP after a refused assembly", node)
			}
		}
		if got, err := q.sql("b", `select note from b_own_data`); err != nil || got != "b was here" {
			t.Errorf("b's own table after the refusal: %q, %v; want it still there", got, err)
		}
		q.noReplicationLeftOn(t, "a")
		if got, err := q.sql("a", `select count(*) from pg_namespace where nspname = 'tandem'`); err != nil || got != "0" {
			t.Errorf("a has a schema tandem after a refused assembly: %q %v", got, err)
		}
	}
	untouched(t, p)

	refused := func(t *testing.T, q *testLab, env []string, wantCode int, wantMsg string, args ...string) {
		t.Helper()
		out, errOut, code := q.consoleWith(env, 2*time.Minute, args...)
		if code != wantCode || !strings.Contains(errOut, wantMsg) {
			t.Errorf("tandem %s: exit %d, want %d with %q in the message\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, wantCode, wantMsg, out, errOut)
		}
	}
	t.Run("wrong-secondary-token", func(t *testing.T) {
		q := p.sub(t)
		env := []string{"TANDEM_PRIMARY_TOKEN=" + q.env.token("a"), "TANDEM_SECONDARY_TOKEN=not-" + q.env.token("b")}
		refused(t, q, env, 4, "token", q.assembleArgs("--yes")...)
		untouched(t, q)
	})
	t.Run("wrong-primary-token", func(t *testing.T) {
		q := p.sub(t)
		env := []string{"TANDEM_PRIMARY_TOKEN=not-" + q.env.token("a"), "TANDEM_SECONDARY_TOKEN=" + q.env.token("b")}
		refused(t, q, env, 4, "token", q.assembleArgs("--yes")...)
		untouched(t, q)
	})
	t.Run("no-confirmation", func(t *testing.T) {
		// The secondary holds data (b_own_data) and the console is not on a
		// terminal: without --yes it asks nobody and sends nothing (exit 2),
		// whether its stdin is a pipe or /dev/null (as under cron or systemd).
		q := p.sub(t)
		out, errOut, code := q.consolePiped(q.assembleEnv(), 2*time.Minute, q.assembleArgs()...)
		if code != 2 || !strings.Contains(errOut, "--yes") {
			t.Errorf("assemble without --yes, stdin a pipe: exit %d, want 2 with a hint at --yes\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
		}
		untouched(t, q)
		out, errOut, code = q.consoleWith(q.assembleEnv(), 2*time.Minute, q.assembleArgs()...)
		if code != 2 || !strings.Contains(errOut, "--yes") {
			t.Errorf("assemble without --yes, stdin /dev/null: exit %d, want 2 with a hint at --yes (the console must not take /dev/null, a character device, for a terminal)\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
		}
		untouched(t, q)
	})
	t.Run("version-mismatch", func(t *testing.T) {
		t.Skip("cannot be produced honestly in the lab: both nodes run the one PostgreSQL installed on this machine (apt offers no other major version here), and server_version_num cannot be faked; the refusal is covered by internal/console's assemble tests (\"major versions differ\") and by the same check in internal/cluster's Assemble")
	})
	t.Run("already-assembled", func(t *testing.T) {
		q := p.sub(t)
		// Nothing was left half done by the refusals: assembly now works.
		q.assemble("")
		q.waitStreaming("after assembly", time.Minute)
		q.mustSQL("db", `create table after_assembly (x int); insert into after_assembly values (42)`)
		q.waitSQL("b", `select x from after_assembly`, "42", 10*time.Second)
		if got, err := q.sql("b", `select count(*) from pg_tables where tablename = 'b_own_data'`); err != nil || got != "0" {
			t.Errorf("b's own table after the accepted assembly: %q %v; want it replaced by a's database", got, err)
		}
		before := q.status()
		refused(t, q, q.assembleEnv(), 5, "already", q.assembleArgs("--yes")...)
		// The same nodes the other way round.
		swapped := []string{"assemble", "--trust-new", "--yes", "--primary", q.fqdn("b"), "--secondary", q.fqdn("a"),
			"--cluster-ip", q.env.ClusterPrefix, "--dns-name", q.env.DNSName}
		refused(t, q, []string{"TANDEM_PRIMARY_TOKEN=" + q.env.token("b"), "TANDEM_SECONDARY_TOKEN=" + q.env.token("a")}, 5, "already", swapped...)

		after := q.status()
		ac, bc := before.Cluster, after.Cluster
		if ac == nil || bc == nil || bc.Term != 1 || bc.Primary != "a" || bc.Name != ac.Name || bc.State != "assembled" {
			t.Errorf("cluster after the refused assemblies: %s; before: %s", after, before)
		}
		if n := after.node("a"); n == nil || n.Role != "primary" || n.Term != 1 {
			t.Errorf("a after the refused assemblies: %s", after)
		}
		if n := after.node("b"); n == nil || n.Role != "secondary" || n.Term != 1 || n.Replication == nil || n.Replication.ReceiverStatus != "streaming" {
			t.Errorf("b after the refused assemblies: %s", after)
		}
		q.mustSQL("db", `insert into after_assembly values (43)`)
		q.waitSQL("b", `select count(*) from after_assembly`, "2", 10*time.Second)
		if ev := q.events(); countEvents(ev, "assembled") != 1 {
			t.Errorf("events after the refused assemblies: %v; want exactly one assembled", eventKinds(ev))
		}
	})
}

// TestSecondaryAway stops the secondary, writes ~100 MB on the primary,
// checks the slot keeps that WAL in pg_wal, and starts the secondary
// again: it catches up from the slot by itself, without a re-seed.
func TestSecondaryAway(t *testing.T) {
	needRoot(t)
	t.Parallel()
	// A short grace, so the write below does not wait long for b.
	p := upCluster(t, clusterOpts{settings: map[string]map[string]any{"a": {"replication.sync_grace": "2s"}}})
	p.mustSQL("db", `create table before_away (x int); insert into before_away values (1)`)
	p.waitSQL("b", `select count(*) from before_away`, "1", 10*time.Second)

	p.stopTandemd("b")
	var base int64
	eventually(t, "a sees b disconnected", 20*time.Second, func() (bool, string) {
		n, err := p.nodeStatusErr("a")
		if err != nil {
			return false, err.Error()
		}
		if n.Replication == nil {
			return false, "no replication info"
		}
		base = n.Replication.RetainedBytes
		return n.Replication.State == "disconnected", n.Replication.State
	})

	start := time.Now()
	p.mustSQL("db", `create table big as select g, repeat('x', 1000) as pad from generate_series(1, 100000) g`)
	p.mustSQL("db", `checkpoint`) // a checkpoint removes what no slot holds: the slot's WAL stays
	t.Logf("wrote ~100 MB on a in %s", time.Since(start).Round(10*time.Millisecond))
	const wrote = 80 << 20
	eventually(t, "status shows the slot retaining the WAL written while b is away", 20*time.Second, func() (bool, string) {
		n, err := p.nodeStatusErr("a")
		if err != nil {
			return false, err.Error()
		}
		r := n.Replication
		if r == nil {
			return false, "no replication info"
		}
		return r.RetainedBytes >= base+wrote && (r.SlotWALStatus == "reserved" || r.SlotWALStatus == "extended"),
			fmt.Sprintf("retained %d bytes (from %d), slot %s", r.RetainedBytes, base, r.SlotWALStatus)
	})
	// PostgreSQL agrees: the slot holds its restart point and the segments
	// since are still in pg_wal.
	held := p.mustSQL("a", `select wal_status || ' ' || pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint from pg_replication_slots where slot_name = 'tandem_b'`)
	f := strings.Fields(held)
	if len(f) != 2 || f[0] == "lost" {
		t.Fatalf("slot tandem_b on a: %q", held)
	}
	if n, _ := strconv.ParseInt(f[1], 10, 64); n < wrote {
		t.Errorf("slot tandem_b holds %s bytes of WAL, want at least %d", f[1], wrote)
	}
	inWAL := p.mustSQL("a", `select count(*) from pg_ls_waldir() w, pg_replication_slots s where s.slot_name = 'tandem_b' and w.name >= pg_walfile_name(s.restart_lsn) and w.name ~ '^[0-9A-F]{24}$'`)
	// A new cluster's segments are 1 MB (postgres.initdb_options,
	// docs/config.md: promotions are faster so).
	seg := p.mustSQL("a", `select setting from pg_settings where name = 'wal_segment_size'`)
	segBytes, _ := strconv.Atoi(seg)
	if segBytes != 1<<20 {
		t.Errorf("a's WAL segments are %s bytes, want 1 MB, the default --wal-segsize=1", seg)
	}
	if n, _ := strconv.Atoi(inWAL); segBytes <= 0 || int64(n)*int64(segBytes) < wrote {
		t.Errorf("pg_wal on a holds %s segments of %s bytes from the slot's restart point on, want at least %d MB of them", inWAL, seg, wrote>>20)
	}
	want := p.mustSQL("db", `select count(*) from big`)

	// b comes back and catches up by itself.
	back := time.Now()
	p.startTandemd("b")
	p.waitReady("b", 90*time.Second)
	p.waitSQL("b", `select count(*) from big`, want, 2*time.Minute)
	p.waitStreaming("after its return", time.Minute)
	t.Logf("b caught up %s rows in %s after its tandemd started", want, time.Since(back).Round(10*time.Millisecond))
	ev := p.events()
	for _, k := range []string{"reseeded", "wal_cap_reached"} {
		if countEvents(ev, k) != 0 {
			t.Errorf("events: %v; b should have caught up from the slot, without %s", eventKinds(ev), k)
		}
	}
	if got := p.mustSQL("a", `select wal_status from pg_replication_slots where slot_name = 'tandem_b'`); got != "reserved" {
		t.Errorf("slot on a after the catch-up: %s, want reserved", got)
	}
}

// TestWALCapReseed passes a small WAL cap while the secondary is away:
// the primary releases the WAL (slot lost, wal_cap_reached), and the
// secondary, when it returns, is re-seeded by itself (reseeded) and
// streams again with every row.
func TestWALCapReseed(t *testing.T) {
	needRoot(t)
	t.Parallel()
	p := upCluster(t, clusterOpts{settings: map[string]map[string]any{"a": {
		"replication.max_slot_wal_keep_size": "32MB",
		"replication.sync_grace":             "2s",
	}}})
	if got := p.mustSQL("a", `show max_slot_wal_keep_size`); got != "32MB" {
		t.Fatalf("a: max_slot_wal_keep_size = %s, want 32MB from replication.max_slot_wal_keep_size", got)
	}
	p.mustSQL("db", `create table before_cap (x int); insert into before_cap values (1)`)
	p.waitSQL("b", `select count(*) from before_cap`, "1", 10*time.Second)

	p.stopTandemd("b")
	p.mustSQL("db", `create table big as select g, repeat('x', 1000) as pad from generate_series(1, 100000) g`)
	eventually(t, "the slot for b passes the cap and is lost", 60*time.Second, func() (bool, string) {
		p.mustSQL("a", `select pg_switch_wal()`)
		p.mustSQL("a", `checkpoint`)
		out := p.mustSQL("a", `select coalesce(wal_status, '-') from pg_replication_slots where slot_name = 'tandem_b'`)
		return out == "lost", "wal_status " + out
	})
	p.waitEvent("wal_cap_reached", 30*time.Second)
	if n := p.nodeStatus("a"); n.Replication == nil || n.Replication.SlotWALStatus != "lost" {
		t.Errorf("status of a with the cap passed: %+v, want slot_wal_status lost", n.Replication)
	}
	p.mustSQL("db", `insert into big select g, 'after the cap' from generate_series(100001, 100010) g`)
	want := p.mustSQL("db", `select count(*) from big`)

	back := time.Now()
	p.startTandemd("b")
	p.waitReady("b", 90*time.Second)
	ev := p.waitEvent("reseeded", 3*time.Minute)
	p.waitStreaming("after the re-seed", time.Minute)
	p.waitSQL("b", `select count(*) from big`, want, time.Minute)
	t.Logf("b re-seeded and caught up in %s; events %v", time.Since(back).Round(10*time.Millisecond), eventKinds(ev))
	if got := p.mustSQL("a", `select wal_status from pg_replication_slots where slot_name = 'tandem_b'`); got != "reserved" {
		t.Errorf("slot on a after the re-seed: %s, want reserved", got)
	}
	// The re-seeded b is a real standby again: new rows reach it.
	p.mustSQL("db", `insert into before_cap values (2)`)
	p.waitSQL("b", `select count(*) from before_cap`, "2", 10*time.Second)
	p.noOldDataOn(t, "b")
	// One cap passed, one re-seed: no loop.
	ev = p.events()
	if countEvents(ev, "wal_cap_reached") != 1 || countEvents(ev, "reseeded") != 1 {
		t.Errorf("events: %v; want one wal_cap_reached and one reseeded", eventKinds(ev))
	}
}

// TestSync checks the default mode: a commit is acknowledged only once b
// has it (sync_state sync; a commit blocks while b's WAL receiver is
// frozen); with b gone, commits wait for the grace, then sync degrades
// (sync_degraded, not synchronized) and comes back when b returns
// (sync_restored, synchronized).
func TestSync(t *testing.T) {
	needRoot(t)
	t.Parallel()
	const grace = 5 * time.Second
	p := upCluster(t, clusterOpts{settings: map[string]map[string]any{"a": {"replication.sync_grace": "5s"}}})
	eventually(t, "a reports b as its synchronous standby", 30*time.Second, func() (bool, string) {
		out, err := p.sql("a", `select application_name || ' ' || sync_state from pg_stat_replication`)
		return err == nil && out == "b sync", fmt.Sprint(out, err)
	})
	p.mustSQL("db", `create table sync_check (id int primary key)`)

	// 1. Freeze b's WAL receiver: a commit waits for it.
	_, resume := p.pauseWALReceiver("b")
	res := p.sqlAsync("db", `insert into sync_check values (1)`)
	eventually(t, "the commit waits for b (SyncRep)", 3*time.Second, func() (bool, string) { return p.waitingOnSyncRep("insert into sync_check") })
	select {
	case r := <-res:
		resume()
		t.Fatalf("the commit returned while b's WAL receiver was frozen: %+v", r)
	case <-time.After(time.Second):
	}
	resume()
	select {
	case r := <-res:
		if r.err != nil {
			t.Fatalf("the commit after the WAL receiver went on: %v", r.err)
		}
		t.Logf("the commit waited %s for b's frozen WAL receiver", r.took.Round(10*time.Millisecond))
	case <-time.After(30 * time.Second):
		t.Fatal("the commit did not complete within 30s of the WAL receiver going on")
	}
	// Acknowledged means flushed on b; replay there follows at once.
	p.waitSQL("b", `select count(*) from sync_check`, "1", 5*time.Second)

	// 2. b goes away: commits wait for the grace, then sync degrades.
	pid := p.signalTandemd("b", syscall.SIGTERM)
	eventually(t, "a loses b's replication connection", 20*time.Second, func() (bool, string) {
		out, err := p.sql("a", `select count(*) from pg_stat_replication`)
		return err == nil && out == "0", fmt.Sprint(out, err)
	})
	res = p.sqlAsync("db", `insert into sync_check values (2)`)
	eventually(t, "a commit waits for the absent b", 3*time.Second, func() (bool, string) { return p.waitingOnSyncRep("insert into sync_check") })
	select {
	case r := <-res:
		t.Fatalf("a commit returned at once after b left, before the grace: %+v", r)
	case <-time.After(time.Second):
	}
	select {
	case r := <-res:
		if r.err != nil {
			t.Fatalf("the commit after the grace: %v", r.err)
		}
		t.Logf("the commit waited %s for the absent b (grace %s)", r.took.Round(10*time.Millisecond), grace)
	case <-time.After(grace + 20*time.Second):
		t.Fatalf("the commit still waits %s after b left; sync should have degraded after %s", grace+20*time.Second, grace)
	}
	p.waitTandemdGone("b", pid)
	p.waitEvent("sync_degraded", 20*time.Second)
	eventually(t, "status shows the cluster not synchronized", 20*time.Second, func() (bool, string) {
		st, err := p.statusErr()
		if err != nil {
			return false, err.Error()
		}
		return st.Cluster != nil && !st.Cluster.Synchronized && st.Cluster.Degraded, st.String()
	})
	// Degraded, commits do not wait.
	start := time.Now()
	p.mustSQL("db", `insert into sync_check values (3)`)
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("a commit with sync degraded took %s; it should not wait for b", took)
	}

	// 3. b returns: synchronous again.
	p.startTandemd("b")
	p.waitReady("b", 90*time.Second)
	p.waitEvent("sync_restored", time.Minute)
	eventually(t, "status shows the cluster synchronized again", 30*time.Second, func() (bool, string) {
		st, err := p.statusErr()
		if err != nil {
			return false, err.Error()
		}
		a := st.node("a")
		return st.Cluster != nil && st.Cluster.Synchronized && a != nil && a.Replication != nil && a.Replication.SyncState == "sync", st.String()
	})
	p.waitSQL("b", `select count(*) from sync_check`, "3", 30*time.Second)
}

// TestStrict: with b gone, a commit in strict mode keeps waiting well past
// the grace, and completes once b is back.
func TestStrict(t *testing.T) {
	needRoot(t)
	t.Parallel()
	const grace = 2 * time.Second
	p := upCluster(t, clusterOpts{mode: "strict", settings: map[string]map[string]any{"a": {"replication.sync_grace": "2s"}}})
	eventually(t, "a reports b as its synchronous standby", 30*time.Second, func() (bool, string) {
		out, err := p.sql("a", `select application_name || ' ' || sync_state from pg_stat_replication`)
		return err == nil && out == "b sync", fmt.Sprint(out, err)
	})
	p.mustSQL("db", `create table strict_check (id int primary key)`)
	p.stopTandemd("b")

	res := p.sqlAsync("db", `insert into strict_check values (1)`)
	eventually(t, "the commit waits for b (SyncRep)", 5*time.Second, func() (bool, string) { return p.waitingOnSyncRep("insert into strict_check") })
	hold := 4*grace + 2*time.Second
	select {
	case r := <-res:
		t.Fatalf("a commit in strict mode returned without b: %+v", r)
	case <-time.After(hold):
	}
	if ok, why := p.waitingOnSyncRep("insert into strict_check"); !ok {
		t.Errorf("after %s the commit should still wait for b: %s", hold, why)
	}
	st := p.status()
	if st.Cluster == nil || st.Cluster.Replication != "strict" || st.Cluster.Synchronized {
		t.Errorf("status with b gone in strict mode: %s; want strict, not synchronized", st)
	}
	if got := p.mustSQL("a", `show synchronous_standby_names`); got != `"b"` && got != "b" {
		t.Errorf("a: synchronous_standby_names = %q with b gone; strict must keep waiting for b", got)
	}
	if ev := p.events(); countEvents(ev, "sync_degraded") != 0 {
		t.Errorf("events: %v; strict mode never degrades", eventKinds(ev))
	}

	p.startTandemd("b")
	p.waitReady("b", 90*time.Second)
	select {
	case r := <-res:
		if r.err != nil {
			t.Fatalf("the waiting commit once b was back: %v", r.err)
		}
		t.Logf("the commit waited %s, until b was back", r.took.Round(10*time.Millisecond))
	case <-time.After(time.Minute):
		t.Fatal("the waiting commit did not complete within a minute of b's return")
	}
	p.waitSQL("b", `select count(*) from strict_check`, "1", 10*time.Second)
}

// TestAsync: commits never wait for b, neither while its WAL receiver is
// frozen nor while it is gone; b still gets every row.
func TestAsync(t *testing.T) {
	needRoot(t)
	t.Parallel()
	p := upCluster(t, clusterOpts{mode: "async"})
	eventually(t, "a streams to b asynchronously", 30*time.Second, func() (bool, string) {
		out, err := p.sql("a", `select application_name || ' ' || sync_state from pg_stat_replication`)
		return err == nil && out == "b async", fmt.Sprint(out, err)
	})
	if got := p.mustSQL("a", `show synchronous_standby_names`); got != "" {
		t.Errorf("a: synchronous_standby_names = %q in async mode, want empty", got)
	}
	p.mustSQL("db", `create table async_check (id int primary key)`)
	timed := func(what, query string) {
		t.Helper()
		start := time.Now()
		p.mustSQL("db", query)
		if took := time.Since(start); took > 3*time.Second {
			t.Errorf("a commit %s took %s; async never waits", what, took)
		}
	}

	_, resume := p.pauseWALReceiver("b")
	timed("with b's WAL receiver frozen", `insert into async_check values (1)`)
	if ok, why := p.waitingOnSyncRep("insert into async_check"); ok {
		t.Errorf("a commit waits for b in async mode: %s", why)
	}
	resume()
	p.waitSQL("b", `select count(*) from async_check`, "1", 20*time.Second)

	p.stopTandemd("b")
	timed("with b gone", `insert into async_check values (2)`)
	if st := p.status(); st.Cluster == nil || st.Cluster.Replication != "async" {
		t.Errorf("status: %s; want replication async", st)
	}
	if ev := p.events(); countEvents(ev, "sync_degraded") != 0 {
		t.Errorf("events: %v; async has nothing to degrade", eventKinds(ev))
	}
	p.startTandemd("b")
	p.waitReady("b", 90*time.Second)
	p.waitSQL("b", `select count(*) from async_check`, "2", time.Minute)
}

// TestDisassemble takes a cluster apart with both nodes up (a standalone
// with its data and the cluster IP; b back to no cluster with a fresh,
// empty PostgreSQL), then assembles again and disassembles with --force
// while b is gone (a alone; the console says b was not told), and cleans b
// with --force --endpoint once it is back.
func TestDisassemble(t *testing.T) {
	needRoot(t)
	t.Parallel()
	p := upCluster(t, clusterOpts{})
	p.mustSQL("db", `create table kept (note text); insert into kept values ('before disassembly')`)
	p.waitSQL("b", `select count(*) from kept`, "1", 10*time.Second)

	standaloneA := func(t *testing.T, q *testLab, rows string) {
		t.Helper()
		n, err := q.nodeStatusErr("a")
		if err != nil || n.Role != "standalone" || n.Postgres.InRecovery || n.Postgres.State != "running" {
			t.Errorf("a after disassembly: %+v %v; want standalone, read-write", n, err)
		}
		if !q.holdsClusterIP("a") || q.holdsClusterIP("b") {
			t.Errorf("cluster IP after disassembly: on a %v, on b %v; want a keeps it", q.holdsClusterIP("a"), q.holdsClusterIP("b"))
		}
		// a keeps its data and takes writes through the cluster IP.
		if got, err := q.sql("db", `select count(*) from kept`); err != nil || got != rows {
			t.Errorf("a's table after disassembly: %q %v; want %s rows", got, err, rows)
		}
		if _, err := q.sql("db", `insert into kept values ('standalone write'); delete from kept where note = 'standalone write'`); err != nil {
			t.Errorf("a write on the standalone a: %v", err)
		}
		q.noReplicationLeftOn(t, "a")
	}
	freshB := func(t *testing.T, q *testLab) {
		t.Helper()
		n, err := q.nodeStatusErr("b")
		if err != nil || n.Role != "none" || n.Cluster != "" || n.Postgres.State != "running" || n.Postgres.InRecovery {
			t.Errorf("b after disassembly: %+v %v; want role none, its own read-write PostgreSQL running", n, err)
		}
		if got, err := q.sql("b", `select count(*) from pg_tables where tablename = 'kept'`); err != nil || got != "0" {
			t.Errorf("b after disassembly: table kept %q (%v); want a fresh, empty PostgreSQL", got, err)
		}
		if got, err := q.sql("b", `select count(*) from pg_namespace where nspname = 'tandem'`); err != nil || got != "0" {
			t.Errorf("b after disassembly: schema tandem %q (%v); want none", got, err)
		}
	}

	t.Run("both-nodes", func(t *testing.T) {
		q := p.sub(t)
		out := q.consoleOK(nil, 3*time.Minute, "disassemble", "--yes")
		t.Logf("disassemble:\n%s", out)
		standaloneA(t, q, "1")
		freshB(t, q)
		ev, err := q.eventsErr("a")
		if err != nil || countEvents(ev, "disassembled") != 1 {
			t.Errorf("a's events after disassembly: %v %v; want disassembled", eventKinds(ev), err)
		}
		// The console forgot the cluster.
		if _, errOut, code := q.consoleWith(nil, 30*time.Second, "status"); code == 0 {
			t.Errorf("tandem status still finds a cluster after disassembly: %s", errOut)
		}
	})
	if t.Failed() {
		return
	}

	t.Run("force-with-b-gone", func(t *testing.T) {
		q := p.sub(t)
		// A standalone a assembles again with the fresh b.
		q.assemble("")
		q.waitStreaming("after assembly", time.Minute)
		q.mustSQL("db", `insert into kept values ('second cluster')`)
		q.waitSQL("b", `select count(*) from kept`, "2", 10*time.Second)

		q.stopTandemd("b")
		// Without --force the console refuses: it cannot tell b.
		if out, errOut, code := q.consoleWith(nil, time.Minute, "disassemble", "--yes"); code != 3 || !strings.Contains(errOut, "--force") {
			t.Errorf("disassemble with b gone, without --force: exit %d, want 3 and a hint at --force\n%s%s", code, out, errOut)
		}
		if n := q.nodeStatus("a"); n.Role != "primary" {
			t.Errorf("a after the refused disassembly: role %s, want primary still", n.Role)
		}
		out, errOut, code := q.consoleWith(nil, 3*time.Minute, "disassemble", "--yes", "--force")
		if code != 0 {
			t.Fatalf("disassemble --force with b gone: exit %d\n%s%s", code, out, errOut)
		}
		if !strings.Contains(out, "NOT TOLD") || !strings.Contains(out, q.fqdn("b")) || !strings.Contains(out, "--force --endpoint") {
			t.Errorf("disassemble --force output should say b was not told and how to clean it:\n%s", out)
		}
		standaloneA(t, q, "2")

		// b comes back still believing it is a secondary; --force --endpoint cleans it.
		q.startTandemd("b")
		q.waitReady("b", 90*time.Second)
		if n := q.nodeStatus("b"); n.Role != "secondary" {
			t.Errorf("b back after the forced disassembly: role %s; want secondary until cleaned", n.Role)
		}
		out = q.consoleOK([]string{"TANDEM_TOKEN=" + q.env.token("b")}, 3*time.Minute, "disassemble", "--yes", "--force", "--endpoint", q.fqdn("b"))
		t.Logf("disassemble --force --endpoint b:\n%s", out)
		freshB(t, q)
		standaloneA(t, q, "2")
		// Forced, with its primary out of reach, b may hold the last copy of
		// the data: its replica is kept aside, not deleted, and the answer
		// says where.
		kept, _ := filepath.Glob(filepath.Join(q.nodeDir("b"), "pgdata.tandem-left-*"))
		if len(kept) != 1 {
			t.Fatalf("b's replica after a forced disassembly: %v; want it kept aside once as pgdata.tandem-left-*", kept)
		}
		if _, err := os.Stat(filepath.Join(kept[0], "PG_VERSION")); err != nil {
			t.Errorf("the copy kept aside at %s holds no PostgreSQL cluster: %v", kept[0], err)
		}
		if !strings.Contains(out, filepath.Base(kept[0])) {
			t.Errorf("the forced disassembly did not say where the replica was kept (%s):\n%s", kept[0], out)
		}
	})
}
