package api

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tandem-ha/tandem/internal/version"
)

// Operations from a caller two protocols away are refused before they
// run; reads, the steady state's POSTs and the upgrade never are.
func TestProtocolRefusal(t *testing.T) {
	defer func(p string) { version.Protocol = p }(version.Protocol)
	version.Protocol = "3"
	for _, tc := range []struct {
		method, path, header string
		refused              bool
	}{
		{http.MethodPost, "/v1/cluster/switchover", "5", true},
		{http.MethodPost, "/v1/cluster/switchover", "1", true},
		{http.MethodPost, "/v1/cluster/switchover", "4", false},
		{http.MethodPost, "/v1/cluster/switchover", "2", false},
		{http.MethodPost, "/v1/cluster/switchover", "", false}, // curl, or a build from before
		{http.MethodPost, "/v1/peer/promote", "5", true},
		{http.MethodGet, "/v1/node", "5", false},
		{http.MethodGet, "/v1/peer/heartbeat", "5", false},
		{http.MethodPost, "/v1/peer/failsafe", "5", false},
		{http.MethodPost, "/v1/peer/event", "5", false},
		{http.MethodPost, "/v1/node/upgrade", "5", false},
	} {
		r := httptest.NewRequest(tc.method, tc.path, nil)
		if tc.header != "" {
			r.Header.Set(ProtocolHeader, tc.header)
		}
		err := protocolRefusal(r, tc.method)
		if !tc.refused {
			if err != nil {
				t.Errorf("%s %s from protocol %q: refused (%v), want answered", tc.method, tc.path, tc.header, err)
			}
			continue
		}
		var e *Error
		if !errors.As(err, &e) || e.Status != http.StatusConflict || e.Code != CodeIncompatible {
			t.Errorf("%s %s from protocol %s: %v, want a 409 %s", tc.method, tc.path, tc.header, err, CodeIncompatible)
			continue
		}
		if !strings.Contains(e.Message, "protocol 3") || !strings.Contains(e.Message, "protocol "+tc.header) || !strings.Contains(e.Message, "nothing was done") {
			t.Errorf("the refusal does not name both protocols and that nothing was done: %s", e.Message)
		}
	}
	r := httptest.NewRequest(http.MethodPost, "/v1/cluster/switchover", nil)
	r.Header.Set(ProtocolHeader, "three")
	var e *Error
	if err := protocolRefusal(r, http.MethodPost); !errors.As(err, &e) || e.Status != http.StatusBadRequest {
		t.Errorf("a protocol header that is not a number: %v, want a 400", err)
	}
}
