package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tandem-ha/tandem/internal/api"
	"github.com/tandem-ha/tandem/internal/identity"
	"github.com/tandem-ha/tandem/internal/state"
)

const primaryFP = "sha256:1111111111111111111111111111111111111111111111111111111111111111"

// goodJoin is what a primary sends node "a" during assembly.
func goodJoin() api.JoinRequest {
	return api.JoinRequest{
		Name: "db.example.test", ClusterIP: "10.0.0.10/24", DNSName: "db.example.test", Replication: ModeSync, Term: 1,
		Primary:         api.Member{Name: "b", IP: "10.0.0.12", APIPort: 7400, PGPort: 5432, Fingerprint: primaryFP},
		Secondary:       api.Member{Name: "a", IP: "10.0.0.11", APIPort: 7400, PGPort: 5432, Fingerprint: "sha256:2222222222222222222222222222222222222222222222222222222222222222", Slot: slotName("a")},
		ReplicationUser: ReplicationUser, ReplicationPassword: randomPassword(),
	}
}

func TestValidateJoinAcceptsWhatAPrimarySends(t *testing.T) {
	if err := validateJoin(goodJoin(), "a"); err != nil {
		t.Fatal(err)
	}
}

// Every field of a join request ends up in the state file, tandem.conf
// (primary_conninfo, primary_slot_name, synchronous_standby_names after a
// switchover), the password file or a PostgreSQL tool's arguments: each is
// checked where it enters, and the refusal names it.
func TestValidateJoinRefusesWhatCouldReachPostgresConfig(t *testing.T) {
	cases := []struct {
		name string
		edit func(*api.JoinRequest)
		want string
	}{
		{"password with a newline", func(r *api.JoinRequest) { r.ReplicationPassword += "\nport=1" }, "replication password"},
		{"password with a quote", func(r *api.JoinRequest) { r.ReplicationPassword += "' host='evil" }, "replication password"},
		{"password with a space", func(r *api.JoinRequest) { r.ReplicationPassword += " x" }, "replication password"},
		{"short password", func(r *api.JoinRequest) { r.ReplicationPassword = "abc" }, "replication password"},
		{"slot with a newline", func(r *api.JoinRequest) { r.Secondary.Slot += "\nfsync = off" }, "slot"},
		{"slot with a quote", func(r *api.JoinRequest) { r.Secondary.Slot = "tandem_a'" }, "slot"},
		{"slot in capitals", func(r *api.JoinRequest) { r.Secondary.Slot = "Tandem_A" }, "slot"},
		{"slot too long", func(r *api.JoinRequest) { r.Secondary.Slot = strings.Repeat("s", 64) }, "slot"},
		{"primary name with a newline", func(r *api.JoinRequest) { r.Primary.Name = "b\nsynchronous_commit = off" }, "primary's name"},
		{"primary name with a quote", func(r *api.JoinRequest) { r.Primary.Name = `b"` }, "primary's name"},
		{"primary IP with a zone", func(r *api.JoinRequest) { r.Primary.IP = "fe80::1%eth0" }, "primary's IP"},
		{"primary IP not an IP", func(r *api.JoinRequest) { r.Primary.IP = "10.0.0.12 port=1" }, "primary's IP"},
		{"secondary IP", func(r *api.JoinRequest) { r.Secondary.IP = "x" }, "secondary's IP"},
		{"fingerprint not hex", func(r *api.JoinRequest) { r.Primary.Fingerprint = "sha256:zz\n" }, "fingerprint"},
		{"cluster name with a newline", func(r *api.JoinRequest) { r.Name = "db\nx" }, "cluster name"},
		{"cluster IP", func(r *api.JoinRequest) { r.ClusterIP = "10.0.0.10" }, "cluster IP"},
		{"DNS name", func(r *api.JoinRequest) { r.DNSName = "db.example.test\n" }, "DNS name"},
		{"replication mode", func(r *api.JoinRequest) { r.Replication = "sync\n" }, "replication mode"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := goodJoin()
			c.edit(&r)
			err := validateJoin(r, "a")
			var ae *api.Error
			if !errors.As(err, &ae) {
				t.Fatalf("accepted: %+v", r)
			}
			if ae.Status != http.StatusBadRequest || !strings.Contains(ae.Message, c.want) {
				t.Fatalf("%d %q, want a 400 naming %q", ae.Status, ae.Message, c.want)
			}
		})
	}
}

// The join request arrives with this node's admin token, from the primary
// presenting its node certificate: the certificate must be the one the
// request names as the primary's, which this node then pins.
func TestJoinIsBoundToTheCallersCertificate(t *testing.T) {
	tn := newTestNode(t, clusterState(state.RoleSecondary, 1))
	req := goodJoin()
	for name, ctx := range map[string]context.Context{
		"no client certificate":      context.Background(),
		"another node's certificate": api.WithClientFingerprint(context.Background(), "sha256:"+strings.Repeat("3", 64)),
	} {
		_, err := tn.Join(ctx, req)
		var ae *api.Error
		if !errors.As(err, &ae) || ae.Status != http.StatusForbidden || ae.Code != api.CodeForbidden {
			t.Errorf("%s: %v, want 403 forbidden", name, err)
		}
	}
	// The caller's own certificate passes the check (and meets the next
	// one: this node already belongs to a cluster).
	_, err := tn.Join(api.WithClientFingerprint(context.Background(), primaryFP), req)
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Status != http.StatusConflict {
		t.Fatalf("with the primary's certificate: %v, want the 409 of a node already in a cluster", err)
	}
}

// The future secondary's own answer about itself (its name, its IP) goes
// into the primary's pg_hba.conf, its synchronous_standby_names and a slot
// name: the primary checks it before anything changes.
func TestAssembleChecksWhatTheSecondarySaysOfItself(t *testing.T) {
	for name, info := range map[string]api.NodeInfo{
		"a name with a newline": {Name: "b\nsynchronous_commit = off", IP: "10.0.0.12"},
		"a name with a quote":   {Name: `b"`, IP: "10.0.0.12"},
		"an IP with a zone":     {Name: "b", IP: "fe80::2%eth0"},
	} {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				_ = json.NewEncoder(w).Encode(info)
			}))
			defer srv.Close()
			fp := identity.Fingerprint(srv.Certificate().Raw)
			info.Fingerprint, info.Role, info.Postgres = fp, "none", api.PostgresInfo{State: "running", VersionNum: 150000}
			tn := newTestNode(t, state.State{Role: state.RoleNone})
			tn.pg.running = true
			_, err := tn.Assemble(context.Background(), api.AssembleRequest{
				ClusterIP: "10.0.0.10/24", DNSName: "db.example.test", SkipPreflight: true,
				Secondary: api.PeerRef{Address: srv.Listener.Addr().String(), Token: "t", Fingerprint: fp},
			})
			var ae *api.Error
			if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest || !strings.Contains(ae.Message, "secondary") {
				t.Fatalf("%v, want a 400 about the secondary", err)
			}
			if got := tn.pg.called(); len(got) != 0 {
				t.Fatalf("PostgreSQL was asked for %v", got)
			}
		})
	}
}

func TestValidateSpecChecksTheClusterName(t *testing.T) {
	req := api.AssembleRequest{Name: "db\nx", ClusterIP: "10.0.0.10/24", DNSName: "db.example.test",
		Secondary: api.PeerRef{Address: "b:7400", Token: "t", Fingerprint: primaryFP}}
	if err := ValidateSpec(&req); err == nil || !strings.Contains(err.Error(), "cluster name") {
		t.Fatalf("%v, want the cluster name refused", err)
	}
}

// TestValidateSpecEndpoint: the DNS endpoint takes no cluster IP, the
// cluster IP endpoint needs one, and any other mode is refused, each
// naming what to change.
func TestValidateSpecEndpoint(t *testing.T) {
	for _, c := range []struct {
		endpoint, clusterIP string
		says                string // "" accepted
	}{
		{"", "10.0.0.10/24", ""},
		{"vip", "10.0.0.10/24", ""},
		{"dns", "", ""},
		{"dns", "10.0.0.10/24", "drop --cluster-ip"},
		{"vip", "", "cluster IP \"\" must be an address"},
		{"", "", "cluster IP \"\" must be an address"},
		{"anycast", "", "must be vip"},
	} {
		req := api.AssembleRequest{Name: "db", ClusterIP: c.clusterIP, DNSName: "db.example.test", Endpoint: c.endpoint,
			Secondary: api.PeerRef{Address: "b:7400", Token: "t", Fingerprint: primaryFP}}
		err := ValidateSpec(&req)
		switch {
		case c.says == "" && err != nil:
			t.Errorf("endpoint %q, cluster IP %q refused: %v", c.endpoint, c.clusterIP, err)
		case c.says != "" && (err == nil || !strings.Contains(err.Error(), c.says)):
			t.Errorf("endpoint %q, cluster IP %q: %v, want it refused saying %q", c.endpoint, c.clusterIP, err, c.says)
		}
	}
}

// TestDNSEndpointWithoutSettingsRefused: a node without dns_update.*
// refuses a DNS-endpoint assembly before anything changes.
func TestDNSEndpointWithoutSettingsRefused(t *testing.T) {
	n := &Node{cfg: Config{Name: "a"}}
	if err := n.canPointName(EndpointDNS, "db.example.test"); err == nil || !strings.Contains(err.Error(), "dns_update.server") {
		t.Fatalf("%v, want a refusal naming dns_update.server", err)
	}
	if err := n.canPointName(EndpointVIP, "db.example.test"); err != nil {
		t.Fatalf("vip endpoint: %v", err)
	}
}
