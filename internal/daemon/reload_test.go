package daemon

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandem-ha/tandem/internal/cluster"
	"github.com/tandem-ha/tandem/internal/state"
)

func setHandoverEnv(t *testing.T, e envelope) {
	t.Helper()
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(handoverEnv, string(b))
}

func TestTakeHandover(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	// The lease has 1 s left when the handover is made, 300 ms ago on
	// CLOCK_MONOTONIC: about 700 ms are left now.
	setHandoverEnv(t, envelope{
		Handover: cluster.Handover{PID: os.Getpid(), Role: state.RolePrimary, Term: 4, LeaseLeft: time.Second},
		MadeMono: monoNow() - int64(300*time.Millisecond),
	})
	h := takeHandover(log)
	if h == nil || h.Role != state.RolePrimary || h.Term != 4 {
		t.Fatalf("handover %+v, want primary at term 4", h)
	}
	if left := time.Until(h.LeaseDeadline); left <= 500*time.Millisecond || left > 700*time.Millisecond {
		t.Fatalf("lease deadline in %s, want about 700ms", left)
	}
	if _, ok := os.LookupEnv(handoverEnv); ok {
		t.Fatal("the handover stays in the environment: hooks and PostgreSQL would inherit it")
	}
	if takeHandover(log) != nil {
		t.Fatal("a handover was taken twice")
	}

	// A process systemd started anew may inherit a stale variable; it is
	// not this process's handover.
	setHandoverEnv(t, envelope{Handover: cluster.Handover{PID: os.Getpid() + 1, Role: state.RolePrimary, Term: 4}})
	if h := takeHandover(log); h != nil {
		t.Fatalf("a handover for another PID was taken: %+v", h)
	}
}

// The old process runs the binary now on disk with --check; a binary that
// refuses (bad configuration, or one that cannot run at all) refuses the
// reload, with its output in the error.
func TestCheckNewBinary(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "tandemd")
	cfgPath := filepath.Join(dir, "tandemd.yaml")
	d := &Daemon{log: slog.New(slog.DiscardHandler), exe: exe, configPath: cfgPath}
	write := func(script string) {
		if err := os.WriteFile(exe, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write("#!/bin/sh\n[ \"$1 $2 $3\" = \"--config " + cfgPath + " --check\" ] && echo configuration ok && exit 0\nexit 3\n")
	if err := d.checkNewBinary(context.Background()); err != nil {
		t.Fatalf("a binary that accepts the configuration: %v", err)
	}
	write("#!/bin/sh\necho 'node.ip: 10.0.0.99 is on no interface' >&2\nexit 2\n")
	err := d.checkNewBinary(context.Background())
	if err == nil || !strings.Contains(err.Error(), "node.ip: 10.0.0.99 is on no interface") {
		t.Fatalf("a binary that refuses: %v, want the refusal with its message", err)
	}
	if err := os.Remove(exe); err != nil {
		t.Fatal(err)
	}
	if err := d.checkNewBinary(context.Background()); err == nil {
		t.Fatal("a missing binary was accepted")
	}
	d.configPath = ""
	write("#!/bin/sh\nexit 0\n")
	if err := d.checkNewBinary(context.Background()); err == nil {
		t.Fatal("a reload without a configuration file was accepted")
	}
}

func TestReloadWithoutRunningTandemd(t *testing.T) {
	dir := t.TempDir()
	if err := Reload(context.Background(), dir, t.Logf); err == nil || !strings.Contains(err.Error(), "start it instead") {
		t.Fatalf("Reload with no tandemd: %v, want a refusal saying to start it", err)
	}
	// A run file left by a tandemd that is gone: nobody holds the lock.
	if err := writeRunInfo(dir, runInfo{PID: os.Getpid(), Ready: true}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tandemd.lock"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Reload(context.Background(), dir, t.Logf); err == nil || !strings.Contains(err.Error(), "not running") {
		t.Fatalf("Reload with a stale run file: %v, want not running", err)
	}
}
