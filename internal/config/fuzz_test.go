package config

import (
	"reflect"
	"strings"
	"testing"
)

// Seeds for the config fuzzers: good files and bad ones.
var yamlSeeds = []string{
	"",
	"node:\n  name: a\n  ip: 10.77.0.11\n",
	"node:\n  name: a\n  ip: 10.77.0.11\napi:\n  listen: 10.77.0.11:7400\npostgres:\n  data_dir: /var/lib/tandem/pgdata\n  port: 5432\n  socket_dir: /run/tandem/a\n  listen_addresses: \"10.77.0.11, localhost\"\n  stop_timeout: 30s\nstate_dir: /var/lib/tandem/state\n",
	"replication:\n  max_slot_wal_keep_size: 512MB\n  sync_grace: 10s\nrejoin:\n  self_elect: false\n",
	"services:\n  - name: backup\n    unit: backup.service\n  - name: x\n    start: [/bin/true]\n    stop: [/bin/true]\n    timeout: 5s\n",
	"hooks:\n  on_role_change: [/usr/local/bin/hook, --role]\nnotify:\n  webhook: https://user:pw@hooks.example.net/services/T/B/X?token=y\n  events: [fenced]\n  retries: 3\n",
	"postgres:\n  listen_addresses: \"*\\nshared_preload_libraries = 'evil'\"\n",
	"postgres:\n  stop_timeout: soon\n",
	"postgress:\n  port: 1\n",
	"node: [a, b]\n",
	"node:\n  name: &a x\n  ip: *a\n",
	"{node: {name: a}}",
	"- a\n- b\n",
	"postgres:\n  port: 99999999999999999999\n",
	"log:\n  level: \"\\x00\"\n",
	"%YAML 1.2\n---\nnode: {name: a}\n...\n---\nnode: {name: b}\n",
	"dns_update:\n  server: 10.77.3.53\n  zone: lab.test\n  secret_file: /var/lib/tandem-lab/lab/a/dns-update.key\n  ttl: 5s\n",
	"dns_update:\n  server: ns1.lab.test\n  key_name: \"k\\ny\"\n  ttl: 500ms\n",
}

// FuzzParse: the YAML loader never panics; what it accepts, Validate
// judges without panicking; and what the file writer (the lab's) renders
// reads back to the same configuration.
func FuzzParse(f *testing.F) {
	for _, s := range yamlSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c := Defaults()
		if err := Parse(b, &c); err != nil {
			return
		}
		roundTrip(t, c)
		checkValidated(t, c)
	})
}

// FuzzEnv: TANDEMD_* overrides never panic, a string setting takes the
// value as given, and the validated result holds only what may reach
// PostgreSQL's files.
func FuzzEnv(f *testing.F) {
	for _, s := range []struct{ key, value string }{
		{"NODE_NAME", "a"},
		{"NODE_IP", "10.77.0.11"},
		{"POSTGRES_PORT", "5499"},
		{"POSTGRES_PORT", "many"},
		{"POSTGRES_STOP_TIMEOUT", "5s"},
		{"POSTGRES_LISTEN_ADDRESSES", "*\nport = 1"},
		{"POSTGRES_LISTEN_ADDRESSES", "10.0.0.1, ::1"},
		{"POSTGRES_SOCKET_DIR", "/run/tandem/a,/tmp"},
		{"POSTGRES_DATA_DIR", "/var/lib/tandem/pg\x00data"},
		{"REJOIN_SELF_ELECT", "maybe"},
		{"NOTIFY_WEBHOOK", "https://hooks.example.net/x?token=y"},
		{"NOTIFY_EVENTS", "fenced"},
		{"SERVICES", "x"},
		{"DNS_UPDATE_SERVER", "10.77.3.53:53"},
		{"DNS_UPDATE_TTL", "1h1s"},
		{"DNS_UPDATE_ZONE", "lab.test\nx"},
		{"node_name", "a"},
		{"", ""},
	} {
		f.Add(s.key, s.value)
	}
	f.Fuzz(func(t *testing.T, key, value string) {
		c := Defaults()
		c.Node.Name, c.Node.IP = "a", "10.77.0.11"
		env := "TANDEMD_" + key + "=" + value
		err := applyEnv(&c, []string{env, "OTHER=1"})
		if err == nil {
			for _, s := range Settings(&c) {
				if s.Env == "TANDEMD_"+key {
					if v, ok := s.Value.Interface().(string); ok && v != value {
						t.Fatalf("%s=%q set %s to %q", s.Env, value, s.Key, v)
					}
				}
			}
		}
		roundTrip(t, c)
		checkValidated(t, c)
	})
}

// roundTrip: FileYAML renders c as a file that parses back to c.
func roundTrip(t *testing.T, c Config) {
	t.Helper()
	text := c.FileYAML()
	back := Defaults()
	if err := Parse([]byte(text), &back); err != nil {
		t.Fatalf("FileYAML wrote what Parse refuses: %v\n%s", err, text)
	}
	if !reflect.DeepEqual(normalized(back), normalized(c)) {
		t.Fatalf("FileYAML does not read back:\nwrote %#v\nread  %#v\n%s", c, back, text)
	}
}

// normalized treats an empty list as no list: YAML writes both as [].
func normalized(c Config) Config {
	for _, l := range []*[]string{&c.Notify.Command, &c.Notify.Events, &c.Hooks.OnRoleChange, &c.Postgres.SuperuserAllow, &c.Postgres.HBA, &c.Metrics.Allow, &c.Sync.Files, &c.Upgrade.Command} {
		if len(*l) == 0 {
			*l = nil
		}
	}
	if len(c.Services) == 0 {
		c.Services = nil
	}
	for i := range c.Services {
		if len(c.Services[i].Start) == 0 {
			c.Services[i].Start = nil
		}
		if len(c.Services[i].Stop) == 0 {
			c.Services[i].Stop = nil
		}
	}
	return c
}

// checkValidated: a configuration Validate accepts carries no control
// character in any string setting, and nothing in listen_addresses or
// socket_dir that would break tandem.conf's lines or lists.
func checkValidated(t *testing.T, c Config) {
	t.Helper()
	if c.Validate() != nil {
		return
	}
	for _, s := range Settings(&c) {
		if v, ok := s.Value.Interface().(string); ok && checkPrintable(v) != nil {
			t.Fatalf("Validate accepted %s %q", s.Key, v)
		}
	}
	if strings.ContainsAny(c.Postgres.ListenAddresses, "'\\\"\n\r") || strings.ContainsAny(c.Postgres.SocketDir, ",\"\n\r") {
		t.Fatalf("Validate accepted listen_addresses %q, socket_dir %q", c.Postgres.ListenAddresses, c.Postgres.SocketDir)
	}
}
