//go:build !linux

package clusterip

import "net"

// Relay is Linux only (a packet socket); elsewhere OpenRelay fails and the
// handover goes without one.
type Relay struct{}

// RelayStats says what a relay did.
type RelayStats struct{ Relayed, Dropped int64 }

// OpenRelay needs Linux.
func (m *Manager) OpenRelay() (*Relay, error) { return nil, errNotLinux }

func (r *Relay) Hold()                {}
func (r *Relay) Close()               {}
func (r *Relay) Stats() RelayStats    { return RelayStats{} }
func (r *Relay) To() net.HardwareAddr { return nil }
