package clusterip

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// fakeLinks is an in-memory address table.
type fakeLinks struct {
	mu      sync.Mutex
	links   []link
	addErr  error
	listErr error
	watch   chan struct{} // nil: no notifications
	// adds and dels count the manager's changes (not those by hand).
	adds, dels int
}

func newFakeLinks(ls ...link) *fakeLinks { return &fakeLinks{links: ls} }

func (f *fakeLinks) List() ([]link, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.listErr != nil {
		return nil, f.listErr
	}
	out := make([]link, len(f.links))
	for i, l := range f.links {
		l.Addrs = slices.Clone(l.Addrs)
		out[i] = l
	}
	return out, nil
}

func (f *fakeLinks) Add(l link, p netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.addErr != nil {
		return f.addErr
	}
	for i := range f.links {
		if f.links[i].Index == l.Index {
			f.adds++
			f.links[i].Addrs = append(f.links[i].Addrs, ifAddr{Prefix: p})
			return nil
		}
	}
	return errors.New("no such device") // as the kernel's ENODEV
}

// renumber gives the link name a new index, as a recreated interface gets.
func (f *fakeLinks) renumber(name string, index int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.links {
		if f.links[i].Name == name {
			f.links[i].Index = index
		}
	}
}

func (f *fakeLinks) setListErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.listErr = err
}

func (f *fakeLinks) Del(l link, p netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dels++
	for i := range f.links {
		if f.links[i].Index == l.Index {
			f.links[i].Addrs = slices.DeleteFunc(f.links[i].Addrs, func(a ifAddr) bool { return a.Prefix == p })
		}
	}
	return nil
}

func (f *fakeLinks) Watch(context.Context) (<-chan struct{}, error) { return f.watch, nil }

// holders names the interfaces that have ip.
func (f *fakeLinks) holders(ip netip.Addr) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, l := range f.links {
		for _, a := range l.Addrs {
			if a.Prefix.Addr() == ip {
				out = append(out, l.Name)
			}
		}
	}
	return out
}

func (f *fakeLinks) addByHand(name string, p netip.Prefix) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.links {
		if f.links[i].Name == name {
			f.links[i].Addrs = append(f.links[i].Addrs, ifAddr{Prefix: p})
		}
	}
}

func (f *fakeLinks) delByHand(ip netip.Addr) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.links {
		f.links[i].Addrs = slices.DeleteFunc(f.links[i].Addrs, func(a ifAddr) bool { return a.Prefix.Addr() == ip })
	}
}

// fakeAnnouncer records probes and announcements; conflict, when set, is the
// MAC of another host answering every probe.
type fakeAnnouncer struct {
	mu        sync.Mutex
	conflict  net.HardwareAddr
	probeErr  error
	block     bool          // Probe waits for ctx to end
	probing   chan struct{} // receives when a probe starts, if not nil
	probes    int
	announces []string // "ip iface"
}

func (a *fakeAnnouncer) Probe(ctx context.Context, l link, ip, src netip.Addr, timeout time.Duration) (bool, net.HardwareAddr, error) {
	a.mu.Lock()
	a.probes++
	conflict, block, probing, probeErr := a.conflict, a.block, a.probing, a.probeErr
	a.mu.Unlock()
	if probeErr != nil {
		return false, nil, probeErr
	}
	if probing != nil {
		probing <- struct{}{}
	}
	if block {
		<-ctx.Done()
		return false, nil, ctx.Err()
	}
	if conflict != nil {
		return true, conflict, nil
	}
	return false, nil, nil
}

func (a *fakeAnnouncer) Announce(l link, ip, src netip.Addr) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.announces = append(a.announces, ip.String()+" "+l.Name)
	return nil
}

func (a *fakeAnnouncer) setConflict(mac net.HardwareAddr) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.conflict = mac
}

func (a *fakeAnnouncer) counts() (probes, announces int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.probes, len(a.announces)
}

func (f *fakeLinks) changes() (adds, dels int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.adds, f.dels
}
