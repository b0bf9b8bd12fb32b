//go:build !linux

package clusterip

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"time"
)

var errNotLinux = errors.New("managing the cluster IP needs Linux (netlink, ARP and NDP sockets)")

func newSystem() (links, announcer) { return unsupported{}, unsupported{} }

type unsupported struct{}

func (unsupported) List() ([]link, error)                          { return nil, errNotLinux }
func (unsupported) Add(link, netip.Prefix) error                   { return errNotLinux }
func (unsupported) Del(link, netip.Prefix) error                   { return errNotLinux }
func (unsupported) Watch(context.Context) (<-chan struct{}, error) { return nil, errNotLinux }
func (unsupported) Announce(link, netip.Addr, netip.Addr) error    { return errNotLinux }
func (unsupported) Probe(context.Context, link, netip.Addr, netip.Addr, time.Duration) (bool, net.HardwareAddr, error) {
	return false, nil, errNotLinux
}
