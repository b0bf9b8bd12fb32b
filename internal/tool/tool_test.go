package tool

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func logger(buf *bytes.Buffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func TestRunStreamsAndCaptures(t *testing.T) {
	var buf bytes.Buffer
	res, err := Run(context.Background(), logger(&buf), Cmd{Path: "/bin/sh", Args: []string{"-c", "echo out1; echo err1 >&2; echo out2"}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Stdout != "out1\nout2\n" {
		t.Fatalf("stdout %q", res.Stdout)
	}
	if res.Stderr != "err1" {
		t.Fatalf("stderr tail %q", res.Stderr)
	}
	log := buf.String()
	for _, want := range []string{"msg=running tool=sh", "msg=out1 tool=sh stream=stdout", "msg=err1 tool=sh stream=stderr"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
}

func TestRunReportsExitStatusWithStderr(t *testing.T) {
	var buf bytes.Buffer
	_, err := Run(context.Background(), logger(&buf), Cmd{Path: "/bin/sh", Args: []string{"-c", "echo 'could not open directory' >&2; exit 3"}})
	var ee *ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("want *ExitError, got %v", err)
	}
	if ee.Code != 3 || !strings.Contains(ee.Error(), "could not open directory") || ee.Tool != "sh" {
		t.Fatalf("unexpected %+v / %v", ee, ee)
	}
}

func TestRunDoesNotUseAShell(t *testing.T) {
	var buf bytes.Buffer
	res, err := Run(context.Background(), logger(&buf), Cmd{Path: "/bin/echo", Args: []string{"$(id)", ";", "*"}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Stdout != "$(id) ; *\n" {
		t.Fatalf("arguments were interpreted: %q", res.Stdout)
	}
}

func TestRunHonoursContext(t *testing.T) {
	var buf bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := Run(ctx, logger(&buf), Cmd{Path: "/bin/sleep", Args: []string{"10"}})
	if err == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("context not honoured: %v after %v", err, time.Since(start))
	}
}

// A cancelled program's children die with it; Run does not wait for a
// grandchild that holds the output pipes.
func TestCancelKillsTheProcessGroup(t *testing.T) {
	var buf bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := Run(ctx, logger(&buf), Cmd{Path: "/bin/sh", Args: []string{"-c", "sleep 30 & sleep 30 & wait"}})
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want a cancellation error, got %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("Run returned after %s: the background sleeps outlived the cancellation", took)
	}
}

func TestMissingProgram(t *testing.T) {
	var buf bytes.Buffer
	_, err := Run(context.Background(), logger(&buf), Cmd{Path: "/nonexistent/initdb"})
	if err == nil || !strings.Contains(err.Error(), "while starting initdb") {
		t.Fatalf("got %v", err)
	}
}

func TestTailKeepsLastLines(t *testing.T) {
	var tl tail
	for i := 0; i < 50; i++ {
		tl.add(strings.Repeat("x", i))
	}
	lines := strings.Split(tl.String(), "\n")
	if len(lines) != tailLines || lines[len(lines)-1] != strings.Repeat("x", 49) {
		t.Fatalf("tail kept %d lines, last %q", len(lines), lines[len(lines)-1])
	}
}
