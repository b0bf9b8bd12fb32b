package console

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/tandem-ha/tandem/internal/api"
)

// The failover's search for a primary that still runs. Every path is
// tried at once and the console waits for all of them only as long as a
// live primary needs to answer, so a dead primary costs about pathWait,
// not a timeout per path.

const (
	// pathWait is how long the console listens on every path at least. On
	// the cluster subnet a live host's kernel completes a TCP handshake in
	// a millisecond or two however busy its processes are (the handshake
	// needs no process), so what a short wait can miss is a lost packet,
	// which pathRedial covers.
	pathWait = 300 * time.Millisecond
	// pathRedial: a fresh connection attempt on every path this often
	// within the wait. The kernel retransmits a lost SYN only after a
	// second; a new attempt sends a new one at once.
	pathRedial = 100 * time.Millisecond
	// pathWaitPerDial stretches the wait for a console far from the nodes:
	// to this many times what the secondary's TCP and TLS handshakes took
	// (about two round trips). The secondary is on the primary's subnet,
	// so the way to it is as long as the way to the primary.
	pathWaitPerDial = 4
	// pathIdentify bounds the TLS handshake that names who answers on an
	// API path; the path already counts as answering from the TCP
	// connection on.
	pathIdentify = time.Second
	// peerSilentAfter is the secondary's: past this silence it promotes
	// without asking the primary once more (internal/cluster/failover.go).
	peerSilentAfter = 3 * time.Second
)

// heartbeatPath names the secondary's link to the primary among the paths.
const heartbeatPath = "heartbeat between the nodes"

// askAgain says whether the secondary will ask the primary once more.
func askAgain(c *api.PeerContact) string {
	if c.SilentSeconds >= 0 && c.SilentSeconds < peerSilentAfter.Seconds() {
		return "; it asks it once more before promoting, and refuses if it answers"
	}
	return ""
}

// failoverSurvey is what the console found before a failover.
type failoverSurvey struct {
	secondary, primary *probe
	paths              []PathCheck
}

// surveyFailover asks every cached node for its view at once, and as soon
// as the secondary has answered, tries every path to the other node, the
// primary: its API by its cached address and on the cluster IP, its
// PostgreSQL port by node IP and on the cluster IP. A node that answers
// as primary is refused at once (unless force). The secondary's own word
// on the link between the nodes comes with its view (PeerContact); the
// secondary asks that link again, and probes the cluster IP by ARP, when
// it receives the failover.
func surveyFailover(ctx context.Context, tr *trust, toks *Tokens, cc CachedCluster, force bool) (*failoverSurvey, error) {
	// Probes still out when this returns are abandoned: each works on a
	// probe of its own and hands it over only through done.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan *probe, len(cc.Nodes))
	for _, n := range cc.Nodes {
		go func() {
			p := &probe{node: n}
			p.look(ctx, tr, toks)
			done <- p
		}()
	}
	got := map[string]*probe{}
	answeredAsPrimary := func(p *probe) error {
		if force || !p.reachable() || p.view.Node.Role != rolePrimary {
			return nil
		}
		return exitf(ExitConflict, "%s answers as primary (term %d): failover refused. For a planned change use `tandem switchover`. Nothing was sent", nameOr(p), p.view.Node.Term)
	}
	var secondary *probe
	for secondary == nil && len(got) < len(cc.Nodes) {
		p := <-done // every look ends within probeTimeout
		got[p.node.Address] = p
		if err := answeredAsPrimary(p); err != nil {
			return nil, err
		}
		if p.reachable() && p.view.Node.Role == roleSecondary {
			secondary = p
		}
	}
	probes := func() []*probe {
		var ps []*probe
		for _, n := range cc.Nodes {
			if p := got[n.Address]; p != nil {
				ps = append(ps, p)
			} else {
				ps = append(ps, &probe{node: n, err: fmt.Errorf("no answer yet")})
			}
		}
		return ps
	}
	if secondary == nil {
		return nil, &ExitError{Code: ExitUnreachable, Err: fmt.Errorf("no node of cluster answers as secondary (%s): there is nothing to fail over to. Nothing was sent", describe(probes()))}
	}
	var primary *probe
	for _, p := range probes() {
		if p.node.Address != secondary.node.Address && (primary == nil || p.node.Name == cc.Primary) {
			primary = p
		}
	}
	pgPort := 5432
	if peer := secondary.view.Peer; peer != nil && peer.PGPort > 0 {
		pgPort = peer.PGPort
	}
	wait := min(max(pathWait, pathWaitPerDial*secondary.dialed), probeTimeout)
	paths := make(chan []PathCheck, 1)
	go func() { paths <- checkPaths(ctx, wait, primary, cc, apiPortOf(cc), pgPort, knownFingerprints(tr, cc)) }()
	// The primary's own look may still come back while the paths are
	// tried; an answer as primary is the clearest refusal.
	var sv *failoverSurvey
	for sv == nil {
		select {
		case p := <-done:
			got[p.node.Address] = p
			if err := answeredAsPrimary(p); err != nil {
				return nil, err
			}
		case pcs := <-paths:
			sv = &failoverSurvey{secondary: secondary, paths: pcs}
		}
	}
	for _, p := range probes() {
		if p.node.Address == primary.node.Address {
			sv.primary = p
		}
	}
	if c := secondary.view.PeerContact; c != nil {
		detail := fmt.Sprintf("has not heard from %s since it started", nameOr(sv.primary))
		if c.SilentSeconds >= 0 {
			detail = fmt.Sprintf("last heard from %s %s ago%s", nameOr(sv.primary), time.Duration(c.SilentSeconds*float64(time.Second)).Round(100*time.Millisecond), askAgain(c))
		}
		// Not counted as an answer here: the secondary asks the primary
		// afresh when it heard from it recently, and refuses the failover
		// if it answers.
		sv.paths = append(sv.paths, PathCheck{Path: heartbeatPath, Address: nameOr(secondary), Detail: detail})
	}
	return sv, nil
}

// checkPaths tries, all at once for wait, every way to the primary:
// its API by the cached address and on the cluster IP, its PostgreSQL
// port by node IP and on the cluster IP. A TCP connection accepted counts
// as an answer: whatever accepts it is alive at the primary's address.
func checkPaths(ctx context.Context, wait time.Duration, primary *probe, cc CachedCluster, apiPort string, pgPort int, known map[string]string) []PathCheck {
	var checks []PathCheck
	add := func(path, addr string) { checks = append(checks, PathCheck{Path: path, Address: addr}) }
	if primary != nil {
		add("node API", primary.node.Address)
		if primary.node.IP != "" {
			add("PostgreSQL on the node IP", net.JoinHostPort(primary.node.IP, strconv.Itoa(pgPort)))
		}
	}
	if p, err := netip.ParsePrefix(cc.ClusterIP); err == nil {
		add("node API on the cluster IP", net.JoinHostPort(p.Addr().String(), apiPort))
		add("PostgreSQL on the cluster IP", net.JoinHostPort(p.Addr().String(), strconv.Itoa(pgPort)))
	}
	start := time.Now()
	var wg sync.WaitGroup
	for i := range checks {
		wg.Go(func() {
			c := &checks[i]
			dctx, dcancel := context.WithTimeout(ctx, wait)
			conn, err := dialRepeatedly(dctx, c.Address)
			dcancel()
			c.MS = float64(time.Since(start).Microseconds()) / 1000
			if err != nil {
				c.Detail = fmt.Sprintf("no connection within %s (last attempt: %v)", time.Since(start).Round(time.Millisecond), err)
				return
			}
			c.Reachable = true
			if c.Path != "node API" && c.Path != "node API on the cluster IP" {
				conn.Close()
				return
			}
			ictx, icancel := context.WithTimeout(ctx, pathIdentify)
			defer icancel()
			a := identifyOver(ictx, conn, c.Address, known)
			switch {
			case a.Node != "":
				c.Detail = "answered as " + a.Node
			case a.Error != "":
				c.Detail = "accepted a connection; " + a.Error
			}
		})
	}
	wg.Wait()
	return checks
}

// dialRepeatedly starts a TCP connection attempt to addr every pathRedial
// until one succeeds or ctx ends, and returns the first connection, else
// the last attempt's error.
func dialRepeatedly(ctx context.Context, addr string) (net.Conn, error) {
	type result struct {
		conn net.Conn
		err  error
	}
	dctx, cancel := context.WithCancel(ctx)
	results := make(chan result)
	out := 0
	attempt := func() {
		out++
		go func() {
			conn, err := (&net.Dialer{}).DialContext(dctx, "tcp", addr)
			results <- result{conn, err}
		}()
	}
	defer func() {
		// The attempts still out end with dctx; a late connection is closed.
		cancel()
		go func(n int) {
			for ; n > 0; n-- {
				if r := <-results; r.conn != nil {
					r.conn.Close()
				}
			}
		}(out)
	}()
	t := time.NewTicker(pathRedial)
	defer t.Stop()
	attempt()
	var last error
	for {
		select {
		case r := <-results:
			out--
			if r.err == nil {
				return r.conn, nil
			}
			last = r.err
		case <-t.C:
			attempt()
		case <-ctx.Done():
			if last == nil {
				last = ctx.Err()
			}
			return nil, last
		}
	}
}
