package version

import "strconv"

// Protocol is the version of what tandemd nodes and the console say to
// each other over the node API (routes, fields, the order of an
// operation's steps). It is a string so that a build can be stamped with
// -ldflags "-X github.com/tandem-ha/tandem/internal/version.Protocol=N"
// (the end-to-end tests do, to stand for a later release).
//
// Two sides work together when their protocols differ by at most one: a
// release that changes the protocol still speaks the one before, so a
// rolling update (one node at N, the other at N+1) can run every
// operation, and the step after that may drop what N needed. A pair two
// steps apart refuses operations and says to upgrade the older node.
//
// 1: the first protocol reported (Tandem-Protocol, heartbeat, GET
// /v1/node). 2: a switchover hands the cluster IP over after the
// promotion (PromoteRequest.HandClusterIP, POST /v1/peer/cluster-ip).
var Protocol = "2"

// ProtocolLevel is Protocol as a number (0 if the stamp is not one).
func ProtocolLevel() int {
	n, err := strconv.Atoi(Protocol)
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// Compatible says whether a side speaking protocol other works with this
// build. 0 is "not said" (a build from before protocols were checked, or a
// client such as curl): those are not refused.
func Compatible(other int) bool {
	return WorkTogether(other, ProtocolLevel())
}

// WorkTogether is the rule for two sides speaking protocols a and b: at
// most one apart, or one of them not said (0).
func WorkTogether(a, b int) bool {
	if a <= 0 || b <= 0 {
		return true
	}
	return a-b >= -1 && a-b <= 1
}
