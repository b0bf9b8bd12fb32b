package version

import "testing"

func TestCompatible(t *testing.T) {
	defer func(p string) { Protocol = p }(Protocol)
	Protocol = "4"
	for other, want := range map[int]bool{0: true, 2: false, 3: true, 4: true, 5: true, 6: false} {
		if got := Compatible(other); got != want {
			t.Errorf("protocol 4 with %d: compatible %v, want %v", other, got, want)
		}
	}
	Protocol = "x"
	if ProtocolLevel() != 0 {
		t.Errorf("a stamp that is not a number gives %d, want 0", ProtocolLevel())
	}
}
