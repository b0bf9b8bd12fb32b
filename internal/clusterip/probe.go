package clusterip

import (
	"context"
	"fmt"
	"net/netip"
)

// Probe asks the network whether another host answers for p's address,
// without adding anything: the preflight's "cluster IP not already in use"
// check. It is independent of the reconcile loop.
func (m *Manager) Probe(ctx context.Context, p netip.Prefix) (holderMAC string, inUse bool, err error) {
	ls, err := m.links.List()
	if err != nil {
		return "", false, fmt.Errorf("while listing interfaces: %w", err)
	}
	l, err := pickInterface(ls, m.opts.Interface, p)
	if err != nil {
		return "", false, err
	}
	found, mac, err := m.ann.Probe(ctx, l, p.Addr(), sourceFor(l, p), m.opts.ProbeTimeout)
	if err != nil {
		return "", false, fmt.Errorf("while probing for %s on %s: %w", p.Addr(), l.Name, err)
	}
	if !found {
		return "", false, nil
	}
	return macString(mac), true, nil
}
