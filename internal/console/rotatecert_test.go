package console

import (
	"strings"
	"testing"
)

func TestRotateCert(t *testing.T) {
	a, b := assembled(t)
	a.set(func(f *fakeNode) { f.rotationPeer = b })
	old := a.fp
	code, out, errOut := runIn(t, "", "rotate-cert", "a", "--yes", "-o", "json")
	if code != 0 {
		t.Fatalf("rotate-cert: exit %d\n%s\n%s", code, out, errOut)
	}
	res := decode[RotateCertOutput](t, out)
	var now string
	a.set(func(f *fakeNode) { now = f.fp })
	if res.Node != "a" || res.Old != old || res.New != now || res.New == old || !res.PeerPinsNew {
		t.Fatalf("rotate-cert answered %+v; a now presents %s", res, now)
	}
	var paths []string
	for _, r := range a.posts() {
		paths = append(paths, r.Path)
	}
	if strings.Join(paths, " ") != "/v1/cert/prepare /v1/cert/switch" {
		t.Errorf("a was sent %v, want prepare then switch", paths)
	}
	if len(b.posts()) != 0 {
		t.Errorf("the console posted to the peer: %v", b.posts())
	}
	c, err := LoadCache()
	if err != nil {
		t.Fatal(err)
	}
	if c.Pins[a.addr] != now || len(c.Rotating) != 0 || c.Pins[b.addr] != b.fp {
		t.Fatalf("the cache pins %v (rotating %v), want a's new certificate %s", c.Pins, c.Rotating, now)
	}
	// The console reaches a with the new pin, and only with it.
	if code, out, errOut := runIn(t, "", "status"); code != 0 {
		t.Fatalf("status after the rotation: exit %d\n%s\n%s", code, out, errOut)
	}
}

// Bad input is refused before anything is sent to a node.
func TestRotateCertRefusals(t *testing.T) {
	t.Run("unknown node", func(t *testing.T) {
		a, b := assembled(t)
		code, _, errOut := runIn(t, "", "rotate-cert", "c", "--yes")
		if code != ExitUsage || !strings.Contains(errOut, `no node "c"`) || !strings.Contains(errOut, "a (") || !strings.Contains(errOut, "Nothing was sent") {
			t.Errorf("unknown node: exit %d: %s", code, errOut)
		}
		if a.requestCount()+b.requestCount() != 0 {
			t.Error("requests were sent for an unknown node")
		}
	})
	t.Run("no argument", func(t *testing.T) {
		assembled(t)
		if code, _, errOut := runIn(t, "", "rotate-cert", "--yes"); code != ExitUsage {
			t.Errorf("no node: exit %d: %s", code, errOut)
		}
	})
	t.Run("wrong token", func(t *testing.T) {
		a, _ := assembled(t)
		toks, _ := LoadTokens()
		toks.ByAddress[a.addr] = "wrong-token-0123456789abcdef0123456789"
		if err := toks.Save(); err != nil {
			t.Fatal(err)
		}
		code, _, errOut := runIn(t, "", "rotate-cert", "a", "--yes")
		if code != ExitRefused || !strings.Contains(errOut, "token") {
			t.Errorf("wrong token: exit %d: %s", code, errOut)
		}
		if len(a.posts()) != 0 {
			t.Errorf("posts with a wrong token: %v", a.posts())
		}
	})
	t.Run("peer down", func(t *testing.T) {
		a, b := assembled(t)
		b.stop()
		code, _, errOut := runIn(t, "", "rotate-cert", "a", "--yes")
		if code != ExitUnreachable || !strings.Contains(errOut, "the peer of a, b, does not answer") {
			t.Errorf("peer down: exit %d: %s", code, errOut)
		}
		if len(a.posts()) != 0 {
			t.Errorf("posts with the peer down: %v", a.posts())
		}
	})
	t.Run("not confirmed", func(t *testing.T) {
		a, _ := assembled(t)
		if code, _, errOut := runIn(t, "", "rotate-cert", "a"); code != ExitUsage || len(a.posts()) != 0 {
			t.Errorf("without --yes off a terminal: exit %d: %s", code, errOut)
		}
	})
}

// A console killed between the node's switch and its own cache update
// still reaches the node (it accepts the next certificate too), and the
// next look at the node finishes the rotation in the cache.
func TestInterruptedRotationSettlesInTheCache(t *testing.T) {
	a, b := assembled(t)
	a.set(func(f *fakeNode) { f.rotationPeer = b })
	old := a.fp
	code, out, errOut := runIn(t, "", "rotate-cert", "a", "--yes", "-o", "json")
	if code != 0 {
		t.Fatalf("rotate-cert: exit %d\n%s\n%s", code, out, errOut)
	}
	now := decode[RotateCertOutput](t, out).New
	// Put the cache back to what it was between the prepare and the
	// console's update after the switch: old pinned, new accepted too.
	c, _ := LoadCache()
	c.Pins[a.addr] = old
	c.Rotating[a.addr] = now
	if err := c.Save(); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := runIn(t, "", "status"); code != 0 {
		t.Fatalf("status with the rotation half-recorded: exit %d\n%s\n%s", code, out, errOut)
	}
	c, _ = LoadCache()
	if c.Pins[a.addr] != now || len(c.Rotating) != 0 {
		t.Fatalf("after status the cache pins %s (rotating %v), want %s alone", c.Pins[a.addr], c.Rotating, now)
	}
	// Without the rotation pending, the old pin alone is refused as
	// changed: the rotating pin is what let the console through.
	c.Pins[a.addr] = old
	if err := c.Save(); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := runIn(t, "", "status", "--endpoint", a.addr); code != ExitRefused || !strings.Contains(errOut, "CHANGED") {
		t.Errorf("the old pin alone: exit %d: %s", code, errOut)
	}
}
