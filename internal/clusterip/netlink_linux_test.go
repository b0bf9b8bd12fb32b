package clusterip

import (
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"
)

func TestNlAddr(t *testing.T) {
	a := nlAddr(7, netip.MustParsePrefix("fd00:99::100/64"))
	if a.LinkIndex != 7 || a.Flags&unix.IFA_F_NODAD == 0 || a.PreferedLft != 0 || uint32(a.ValidLft) != ^uint32(0) {
		t.Errorf("IPv6 cluster IP = %+v, want NODAD, preferred 0 (deprecated), valid forever", a)
	}
	if ones, _ := a.Mask.Size(); ones != 64 {
		t.Errorf("prefix length %d, want 64", ones)
	}
	a = nlAddr(7, netip.MustParsePrefix("10.99.0.100/24"))
	if a.Flags != 0 || a.ValidLft != 0 || a.PreferedLft != 0 || a.IP.To4() == nil {
		t.Errorf("IPv4 cluster IP = %+v, want a plain address", a)
	}
}
