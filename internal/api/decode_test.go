package api

import (
	"bytes"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// decodeBody runs decode on body as a handler would (with the API's body cap).
func decodeBody(body string, v any) error {
	r := httptest.NewRequest(http.MethodPost, "/v1/x", strings.NewReader(body))
	r.Body = http.MaxBytesReader(httptest.NewRecorder(), r.Body, maxBody)
	return decode(r, v)
}

func TestDecodeAcceptsOneExactObject(t *testing.T) {
	for _, body := range []string{
		`{"force":true}`,
		" \n\t{\"force\" : true}\r\n ",
		`{}`,
		`{"force":false}`,
	} {
		var req DisassembleRequest
		if err := decodeBody(body, &req); err != nil {
			t.Errorf("%q refused: %v", body, err)
		}
	}
	var req AssembleRequest
	err := decodeBody(`{"name":"db","cluster_ip":"10.0.0.10/24","dns_name":"db.example.net","secondary":{"address":"b:7400","token":"t","fingerprint":"sha256:ab"},"skip_preflight":true}`, &req)
	if err != nil || req.Secondary.Token != "t" || !req.SkipPreflight || req.Name != "db" {
		t.Fatalf("nested object: %+v, %v", req, err)
	}
}

// Each body is accepted by a plain json.Decoder with DisallowUnknownFields
// (which the API used before): they must all be refused with a 400 that
// names the problem.
func TestDecodeRefusesWhatIsNotExactlyOneObject(t *testing.T) {
	cases := []struct {
		name, body, want string
		v                any
	}{
		{"trailing brace", `{"force":true}}`, "after the JSON object", &DisassembleRequest{}},
		{"trailing bracket", `{"force":true}]`, "after the JSON object", &DisassembleRequest{}},
		{"second object", `{"force":true}{"force":false}`, "after the JSON object", &DisassembleRequest{}},
		{"trailing word", `{"force":true} x`, "after the JSON object", &DisassembleRequest{}},
		{"duplicate key", `{"force":false,"force":true}`, `duplicate key "force"`, &DisassembleRequest{}},
		{"case-folded key", `{"Force":true}`, `unknown key "Force"`, &DisassembleRequest{}},
		{"upper-case key", `{"ALLOW_DATA_LOSS":true}`, `unknown key "ALLOW_DATA_LOSS"`, &SwitchoverRequest{}},
		// U+017F LATIN SMALL LETTER LONG S folds to "s" in encoding/json.
		{"unicode-folded key", "{\"\u017fkip_preflight\":true}", "unknown key", &AssembleRequest{}},
		{"nested duplicate", `{"secondary":{"token":"a","token":"b"}}`, `duplicate key "secondary.token"`, &AssembleRequest{}},
		{"nested case-folded", `{"secondary":{"Token":"a"}}`, `unknown key "secondary.Token"`, &AssembleRequest{}},
		{"nested in join", `{"primary":{"Fingerprint":"sha256:x"}}`, `unknown key "primary.Fingerprint"`, &JoinRequest{}},
		{"top-level null", `null`, "JSON object", &DisassembleRequest{}},
		{"top-level array", `[]`, "JSON object", &DisassembleRequest{}},
		{"invalid UTF-8", "{\"kind\":\"\xff\"}", "UTF-8", &PeerEvent{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := decodeBody(c.body, c.v)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("%q accepted (%v)", c.body, err)
			}
			if e.Status != http.StatusBadRequest || e.Code != CodeBadRequest || !strings.Contains(e.Message, c.want) {
				t.Fatalf("%q: %d %s %q, want 400 bad_request naming %q", c.body, e.Status, e.Code, e.Message, c.want)
			}
		})
	}
}

func TestDecodeKeepsItsOtherRefusals(t *testing.T) {
	cases := []struct {
		name, body, want string
		status           int
	}{
		{"empty", ``, "empty", http.StatusBadRequest},
		{"blank", " \n ", "empty", http.StatusBadRequest},
		{"unknown key", `{"forse":true}`, `unknown key "forse"`, http.StatusBadRequest},
		{"wrong type", `{"force":"yes"}`, "force", http.StatusBadRequest},
		{"truncated", `{"force":tr`, "not valid JSON", http.StatusBadRequest},
		{"too large", `{"force":true,"x":"` + strings.Repeat("a", maxBody) + `"}`, "larger than", http.StatusRequestEntityTooLarge},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var req DisassembleRequest
			err := decodeBody(c.body, &req)
			var e *Error
			if !errors.As(err, &e) || e.Status != c.status || !strings.Contains(e.Message, c.want) {
				t.Fatalf("%.40q: %v, want %d naming %q", c.body, err, c.status, c.want)
			}
		})
	}
}

func TestStrictDecodingThroughTheAPI(t *testing.T) {
	b := &fakeCluster{}
	s := NewServer(Config{Token: testToken, Backend: b, Log: slog.New(slog.DiscardHandler)})
	req := httptest.NewRequest(http.MethodPost, "/v1/cluster/disassemble", bytes.NewReader([]byte(`{"Force":true}`)))
	req.Header.Set("Authorization", "Bearer "+testToken)
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), `unknown key \"Force\"`) {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	if got := b.called(); got != "" {
		t.Fatalf("the backend was called: %s", got)
	}
}
