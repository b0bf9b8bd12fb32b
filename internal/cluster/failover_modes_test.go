package cluster

import (
	"strings"
	"testing"

	"github.com/tandem-ha/tandem/internal/api"
)

func TestFailoverProblems(t *testing.T) {
	q := &api.QuorumSpec{}
	for _, tc := range []struct {
		mode string
		q    *api.QuorumSpec
		want string
	}{
		{"", nil, ""},
		{"manual", nil, ""},
		{"automatic", q, ""},
		{"automatic", nil, "needs a quorum"},
		{"manual", q, "failover mode is manual"},
		{"auto", nil, "must be manual or automatic"},
	} {
		p := failoverProblems(tc.mode, tc.q)
		got := strings.Join(p, "; ")
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("failoverProblems(%q, %v) = %q, want %q", tc.mode, tc.q != nil, got, tc.want)
		}
	}
}
