package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeBinDir makes a directory with executables named like PostgreSQL's.
func fakeBinDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, n := range PostgresTools {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func validYAML(bin string) string {
	return `
node:
  name: a
  ip: 10.77.0.11
api:
  listen: 10.77.0.11:7400
postgres:
  bin_dir: ` + bin + `
  data_dir: /var/lib/tandem/pgdata
  port: 5432
  os_user: ` + osUser() + `
  socket_dir: /run/tandem/a
state_dir: /var/lib/tandem/state
`
}

// osUser is a user that exists and is allowed: "postgres" when tests run
// as root on a machine with PostgreSQL, else the current user.
func osUser() string {
	if os.Geteuid() == 0 {
		return "postgres"
	}
	return os.Getenv("USER")
}

func load(t *testing.T, yml string, env ...string) (Config, error) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tandemd.yaml")
	if err := os.WriteFile(p, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p, env)
	if err != nil {
		return c, err
	}
	return c, c.Validate()
}

func TestValidConfig(t *testing.T) {
	c, err := load(t, validYAML(fakeBinDir(t)))
	if err != nil {
		if strings.Contains(err.Error(), "os_user") {
			t.Skipf("no usable OS user on this machine: %v", err)
		}
		t.Fatal(err)
	}
	if c.Node.Name != "a" || c.Postgres.Port != 5432 || c.Postgres.StopTimeout.D() != 30*time.Second || c.Postgres.Init != "auto" {
		t.Fatalf("unexpected %+v", c)
	}
}

func TestEveryBadFieldIsNamed(t *testing.T) {
	yml := `
node:
  name: Bad_Name
  ip: 300.1.1.1
api:
  listen: nonsense
postgres:
  bin_dir: /nonexistent/bin
  data_dir: relative/pgdata
  port: 70000
  os_user: no-such-user-xyz
  socket_dir: ""
  init: sometimes
  stop_timeout: 0s
  listen_addresses: ""
state_dir: state
log:
  level: loud
  format: xml
`
	_, err := load(t, yml)
	var p *Problems
	if !errors.As(err, &p) {
		t.Fatalf("want *Problems, got %v", err)
	}
	for _, key := range []string{"node.name", "node.ip", "api.listen", "postgres.bin_dir", "postgres.data_dir", "postgres.port", "postgres.os_user", "postgres.socket_dir", "postgres.init", "postgres.stop_timeout", "postgres.listen_addresses", "state_dir", "log.level", "log.format"} {
		found := false
		for _, line := range p.List {
			if strings.HasPrefix(line, key+" ") || strings.HasPrefix(line, key+":") {
				found = true
			}
		}
		if !found {
			t.Errorf("no problem names %s; got:\n%s", key, err)
		}
	}
}

func TestMissingRequiredFields(t *testing.T) {
	_, err := load(t, "")
	if err == nil {
		t.Fatal("empty config accepted")
	}
	for _, want := range []string{"node.name is required", "node.ip is required"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
}

func TestUnknownKeyRefused(t *testing.T) {
	_, err := load(t, validYAML(fakeBinDir(t))+"postgress:\n  port: 1\n")
	if err == nil || !strings.Contains(err.Error(), "postgress") {
		t.Fatalf("a misspelt key must be refused by name, got %v", err)
	}
}

func TestBadDurationNamesLine(t *testing.T) {
	_, err := load(t, "postgres:\n  stop_timeout: soon\n")
	if err == nil || !strings.Contains(err.Error(), `"soon" is not a duration`) {
		t.Fatalf("got %v", err)
	}
}

func TestEnvironmentOverridesFile(t *testing.T) {
	c, err := load(t, validYAML(fakeBinDir(t)), "TANDEMD_POSTGRES_PORT=5499", "TANDEMD_NODE_NAME=b", "TANDEMD_POSTGRES_STOP_TIMEOUT=5s", "OTHER=1")
	if err != nil && !strings.Contains(err.Error(), "os_user") {
		t.Fatal(err)
	}
	if c.Postgres.Port != 5499 || c.Node.Name != "b" || c.Postgres.StopTimeout.D() != 5*time.Second {
		t.Fatalf("environment not applied: %+v", c)
	}
	_, err = load(t, validYAML(fakeBinDir(t)), "TANDEMD_POSTGRES_PORT=many")
	if err == nil || !strings.Contains(err.Error(), "TANDEMD_POSTGRES_PORT") {
		t.Fatalf("bad env value must be named, got %v", err)
	}
}

func TestAPIListenDefault(t *testing.T) {
	c, err := load(t, strings.Replace(validYAML(fakeBinDir(t)), "listen: 10.77.0.11:7400", "listen: \"\"", 1))
	if err != nil && !strings.Contains(err.Error(), "os_user") {
		t.Fatal(err)
	}
	if c.API.Listen != ":7400" {
		t.Fatalf("api.listen default %q", c.API.Listen)
	}
}

func TestSettingsCoverEveryLeaf(t *testing.T) {
	c := Defaults()
	keys := map[string]string{}
	for _, s := range Settings(&c) {
		keys[s.Key] = s.Env
	}
	for k, env := range map[string]string{"node.name": "TANDEMD_NODE_NAME", "postgres.bin_dir": "TANDEMD_POSTGRES_BIN_DIR", "state_dir": "TANDEMD_STATE_DIR", "log.format": "TANDEMD_LOG_FORMAT"} {
		if keys[k] != env {
			t.Errorf("setting %s maps to %q, want %q", k, keys[k], env)
		}
	}
}

func TestFindPostgresBinDirPrefersNewest(t *testing.T) {
	if versionOf("/usr/lib/postgresql/16/bin") <= versionOf("/usr/lib/postgresql/9/bin") {
		t.Fatal("version ordering wrong")
	}
}

// Strings that reach tandem.conf, postgresql.conf or a PostgreSQL
// program's arguments are refused where they enter, naming the setting: a
// newline in listen_addresses would start a new line of tandem.conf (a
// setting of the writer's choosing, or a file PostgreSQL refuses to start
// with).
func TestStringsBoundForPostgresAreChecked(t *testing.T) {
	bin := fakeBinDir(t)
	cases := []struct {
		key, value string
	}{
		{"postgres.listen_addresses", "*\nshared_preload_libraries = 'evil'"},
		{"postgres.listen_addresses", "10.0.0.1\r"},
		{"postgres.listen_addresses", "10.0.0.1,,10.0.0.2"},
		{"postgres.listen_addresses", "10.0.0.1; DROP"},
		{"postgres.listen_addresses", "'*'"},
		{"postgres.socket_dir", "/run/tandem/a\nport = 1"},
		{"postgres.socket_dir", "/run/tandem/a,/tmp"},
		{"postgres.socket_dir", `/run/tandem/"a"`},
		{"postgres.socket_dir", "/" + strings.Repeat("s", 100)},
		{"postgres.data_dir", "/var/lib/tandem/pg\ndata"},
		{"postgres.data_dir", "/var/lib/tandem/pg\x00data"},
		{"postgres.bin_dir", bin + "\t"},
		{"state_dir", "/var/lib/tandem/st\x7fate"},
		{"postgres.os_user", "postgres\n"},
	}
	for _, c := range cases {
		env := "TANDEMD_" + strings.ToUpper(strings.ReplaceAll(c.key, ".", "_")) + "=" + c.value
		_, err := load(t, validYAML(bin), env)
		var p *Problems
		if !errors.As(err, &p) {
			t.Errorf("%s %q accepted (%v)", c.key, c.value, err)
			continue
		}
		named := false
		for _, line := range p.List {
			if strings.HasPrefix(line, c.key+" ") || strings.HasPrefix(line, c.key+":") {
				named = true
			}
		}
		if !named {
			t.Errorf("%s %q: no problem names the setting:\n%v", c.key, c.value, err)
		}
	}
}

func TestListenAddressesForms(t *testing.T) {
	bin := fakeBinDir(t)
	for _, v := range []string{"*", "10.77.0.11", "10.77.0.11, 127.0.0.1", "localhost,::1", "db-a.example.net", "fe80::1%eth0", "0.0.0.0,::"} {
		_, err := load(t, validYAML(bin), "TANDEMD_POSTGRES_LISTEN_ADDRESSES="+v)
		if err != nil && strings.Contains(err.Error(), "listen_addresses") {
			t.Errorf("listen_addresses %q refused: %v", v, err)
		}
	}
}

func TestDNSUpdateSettings(t *testing.T) {
	base := func() Config {
		c := Defaults()
		c.Node.Name, c.Node.IP = "a", "10.77.1.11"
		c.Postgres.OSUser = "nobody"
		return c
	}
	problems := func(c Config) string {
		if err := c.Validate(); err != nil {
			return err.Error()
		}
		return ""
	}
	for _, tc := range []struct {
		name string
		set  func(*DNSUpdate)
		want []string // each must appear; none: no dns_update problem
	}{
		{"unset", func(*DNSUpdate) {}, nil},
		{"complete", func(d *DNSUpdate) {
			d.Server, d.Zone, d.KeyName, d.SecretFile = "10.77.3.53", "example.test", "tandemd-a", "/etc/tandem/dns.key"
		}, nil},
		{"only a key name", func(d *DNSUpdate) { d.KeyName = "tandemd-a" }, []string{
			"dns_update.server is required", "dns_update.zone is required", "dns_update.secret_file is required"}},
		{"host name server", func(d *DNSUpdate) {
			d.Server, d.Zone, d.SecretFile = "ns1.example.test", "example.test", "/k"
		}, []string{"dns_update: zone primary server", "a host name would need DNS"}},
		{"relative secret", func(d *DNSUpdate) {
			d.Server, d.Zone, d.SecretFile = "10.77.3.53", "example.test", "dns.key"
		}, []string{"dns_update.secret_file \"dns.key\" must be an absolute path"}},
		{"bad algorithm", func(d *DNSUpdate) {
			d.Server, d.Zone, d.SecretFile, d.Algorithm = "10.77.3.53", "example.test", "/k", "md5"
		}, []string{"dns_update: "}},
		{"ttl too short", func(d *DNSUpdate) { d.TTL = Duration(500 * time.Millisecond) }, []string{"dns_update.ttl 500ms must be a whole number of seconds"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			tc.set(&c.DNSUpdate)
			got := problems(c)
			if len(tc.want) == 0 && strings.Contains(got, "dns_update") {
				t.Fatalf("refused: %s", got)
			}
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("problems lack %q:\n%s", w, got)
				}
			}
		})
	}
	// The environment sets them like any other key.
	c := base()
	if err := applyEnv(&c, []string{"TANDEMD_DNS_UPDATE_SERVER=10.77.3.53", "TANDEMD_DNS_UPDATE_TTL=3s"}); err != nil {
		t.Fatal(err)
	}
	if c.DNSUpdate.Server != "10.77.3.53" || c.DNSUpdate.TTL.D() != 3*time.Second {
		t.Fatalf("env gave %+v", c.DNSUpdate)
	}
}
