package api

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

// requestTypes are the bodies the node API decodes, one per POST route.
var requestTypes = []func() any{
	func() any { return new(AssembleRequest) },
	func() any { return new(JoinRequest) },
	func() any { return new(DisassembleRequest) },
	func() any { return new(PreflightRequest) },
	func() any { return new(SwitchoverRequest) },
	func() any { return new(FailoverRequest) },
	func() any { return new(PromoteRequest) },
	func() any { return new(PeerEvent) },
}

// FuzzDecode runs every request type's decoder on any body. It never
// panics; what it accepts, encoding/json reads the same way (strict is
// only ever stricter); and what it accepts survives encoding and strict
// decoding again unchanged.
func FuzzDecode(f *testing.F) {
	for _, s := range []struct {
		kind uint8
		body string
	}{
		{0, `{"name":"db","cluster_ip":"10.0.0.10/24","dns_name":"db.example.net","replication":"sync","secondary":{"address":"b:7400","token":"t","fingerprint":"sha256:ab"},"skip_preflight":true}`},
		{1, `{"name":"db","cluster_ip":"10.0.0.10/24","dns_name":"db.example.net","replication":"sync","term":1,"primary":{"name":"a","ip":"10.0.0.11","api_port":7400,"pg_port":5432,"fingerprint":"sha256:00"},"secondary":{"name":"b","ip":"10.0.0.12","slot":"tandem_b"},"replication_user":"tandem_replication","replication_password":"x"}`},
		{2, `{"force":true}`},
		{2, `{"force":true}}`},
		{2, `{"force":true}]`},
		{2, `{"Force":true}`},
		{2, `{"force":false,"force":true}`},
		{2, `null`},
		{2, ` {} `},
		{3, `{"peer":{"name":"b","ip":"10.0.0.12","api_port":7400,"pg_port":5432},"cluster_ip":"10.0.0.10/24","dns_name":"db","dns_server":"10.0.0.53"}`},
		{4, `{"allow_data_loss":true}`},
		{5, `{"force":1}`},
		{6, `{"term":3,"lsn":"0/3000060"}`},
		{6, `{"term":1e400}`},
		{7, `{"kind":"sync_degraded","message":"\u00e9\ud800"}`},
		{7, "{\"kind\":\"\xff\"}"},
		{1, `{"primary":{"name":"a","name":"b"}}`},
		{0, `{"secondary":{"Token":"t"}}`},
		{0, "{\"\u017fkip_preflight\":true}"},
		{3, `{"peer":[]}`},
		{2, ``},
		{2, `{"force":tr`},
	} {
		f.Add(s.kind, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, kind uint8, body []byte) {
		mk := requestTypes[int(kind)%len(requestTypes)]
		v := mk()
		if decodeStrict(body, v) != nil {
			return
		}
		loose := mk()
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(loose); err != nil {
			t.Fatalf("strict accepted %q, encoding/json refuses it: %v", body, err)
		}
		if !reflect.DeepEqual(v, loose) {
			t.Fatalf("%q: strict read %+v, encoding/json %+v", body, v, loose)
		}
		again, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("%q decoded into what does not encode: %v", body, err)
		}
		back := mk()
		if err := decodeStrict(again, back); err != nil {
			t.Fatalf("%q decoded, re-encoded as %s, which is refused: %v", body, again, err)
		}
		if !reflect.DeepEqual(v, back) {
			t.Fatalf("%q: %+v after a round trip, want %+v", body, back, v)
		}
	})
}
