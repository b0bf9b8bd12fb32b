package cluster

import (
	"testing"
	"time"
)

// The heal watch restarts the receiver once per heal: on a connection
// after a failed attempt, not on the first look at an open path, and it
// looks at an open path again only after healRecheckEvery.
func TestHealWatch(t *testing.T) {
	now := time.Now()
	var w healWatch
	if !w.due(now) || w.tried(true, now) {
		t.Fatal("the first look at an open path is due and is no heal")
	}
	if w.due(now.Add(healProbeEvery)) || !w.due(now.Add(healRecheckEvery)) {
		t.Fatal("an open path is looked at again after healRecheckEvery, not before")
	}
	now = now.Add(healRecheckEvery)
	if w.tried(false, now) || !w.due(now.Add(healProbeEvery)) {
		t.Fatal("a cut path is no heal and is tried again at once")
	}
	if w.tried(false, now.Add(healProbeEvery)) {
		t.Fatal("still cut: no heal")
	}
	if !w.tried(true, now.Add(2*healProbeEvery)) {
		t.Fatal("a connection after a failed attempt is the heal")
	}
	if w.tried(true, now.Add(2*healProbeEvery+healRecheckEvery)) {
		t.Fatal("the heal is reported once")
	}
}
