// Package config holds tandemd's per-node settings: defaults, then the YAML
// file, then TANDEMD_* environment variables, then flags, merged once and
// validated once.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/tandem-ha/tandem/internal/valid"
)

// DefaultAPIPort is the node API's port when api.listen names none.
const DefaultAPIPort = 7400

// Config is one node's tandemd configuration.
type Config struct {
	Node     Node     `yaml:"node"`
	API      API      `yaml:"api"`
	Postgres Postgres `yaml:"postgres"`
	// StateDir holds the state file, the node certificate and key, and the
	// admin token. It must be private to root.
	StateDir    string      `yaml:"state_dir"`
	Replication Replication `yaml:"replication"`
	Rejoin      Rejoin      `yaml:"rejoin"`
	// Services run only on the primary: started after promotion, stopped
	// before demotion (the backup server's own services).
	Services []Service `yaml:"services"`
	Hooks    Hooks     `yaml:"hooks"`
	Notify   Notify    `yaml:"notify"`
	// Metrics says who may scrape GET /metrics (metrics.go).
	Metrics Metrics `yaml:"metrics"`
	// Quorum: this node's etcd member in automatic failover mode, and the
	// witness's (quorum.go).
	Quorum Quorum `yaml:"quorum"`
	// Watchdog: the device a primary in automatic failover mode arms
	// (watchdog.go).
	Watchdog Watchdog `yaml:"watchdog"`
	// Sync: files the primary carries to the secondary (sync.go).
	Sync Sync `yaml:"sync"`
	// Upgrade: how `tandem upgrade` installs another version (upgrade.go).
	Upgrade Upgrade `yaml:"upgrade"`
	// DNSUpdate: how this node points the cluster DNS name at itself in a
	// cluster without a cluster IP (dnsupdate.go).
	DNSUpdate DNSUpdate `yaml:"dns_update"`
	Log       Log       `yaml:"log"`
}

// Notify says whom to tell about events that need a person.
type Notify struct {
	Command []string `yaml:"command"`
	Webhook string   `yaml:"webhook"`
	Events  []string `yaml:"events"`
	Retries int      `yaml:"retries"`
	Timeout Duration `yaml:"timeout"`
}

// Rejoin says what a node that restarts as primary does before it opens
// for writes.
type Rejoin struct {
	// PeerGrace is how long it waits for its peer to answer before it may
	// elect itself (if SelfElect) once a probe finds the cluster IP free.
	PeerGrace Duration `yaml:"peer_grace"`
	// SelfElect false ("strict") never takes the primary role back without
	// hearing from the peer: no split brain, at the price of staying down
	// until an operator acts when the peer is gone for good.
	SelfElect bool `yaml:"self_elect"`
}

// Service is a role-bound service: a systemd unit, or start and stop
// commands.
type Service struct {
	Name    string   `yaml:"name"`
	Unit    string   `yaml:"unit"`
	Start   []string `yaml:"start"`
	Stop    []string `yaml:"stop"`
	Timeout Duration `yaml:"timeout"`
}

// Hooks run synchronously at role changes, with TANDEM_ROLE (old),
// TANDEM_NEW_ROLE and TANDEM_TERM in their environment.
type Hooks struct {
	OnRoleChange []string `yaml:"on_role_change"`
	Timeout      Duration `yaml:"timeout"`
}

// Replication tunes how this node keeps and waits for its peer.
type Replication struct {
	// MaxSlotWALKeep caps the WAL the primary keeps in pg_wal for an absent
	// secondary (PostgreSQL's max_slot_wal_keep_size). Past it the WAL is
	// released and the secondary is re-seeded when it returns.
	MaxSlotWALKeep string `yaml:"max_slot_wal_keep_size"`
	// SyncGrace is how long sync mode waits for an absent secondary before
	// commits stop waiting for it.
	SyncGrace Duration `yaml:"sync_grace"`
	// AwayAfter is how long the secondary may be gone before the
	// "secondary unavailable" event (and notification).
	AwayAfter Duration `yaml:"secondary_away_after"`
}

// Node identifies this machine inside the cluster.
type Node struct {
	// Name is the node's short name, unique in the cluster.
	Name string `yaml:"name"`
	// IP is the node's static address in the cluster subnet, used for
	// replication and node-to-node traffic.
	IP string `yaml:"ip"`
}

// API configures the node API (HTTPS).
type API struct {
	// Listen is host:port for the node API. Empty means all addresses
	// (so the cluster IP is served too once this node holds it) on port 7400.
	Listen string `yaml:"listen"`
}

// Postgres configures the PostgreSQL instance tandemd supervises.
type Postgres struct {
	// BinDir holds postgres, initdb and pg_ctl. Empty means found
	// automatically (newest /usr/lib/postgresql/N/bin, then PATH).
	BinDir string `yaml:"bin_dir"`
	// DataDir is the PostgreSQL data directory.
	DataDir string `yaml:"data_dir"`
	// Port is PostgreSQL's TCP port and the suffix of its socket name.
	Port int `yaml:"port"`
	// OSUser is the unprivileged OS user PostgreSQL runs as.
	OSUser string `yaml:"os_user"`
	// SocketDir is this node's own Unix socket directory.
	SocketDir string `yaml:"socket_dir"`
	// ListenAddresses is PostgreSQL's listen_addresses.
	ListenAddresses string `yaml:"listen_addresses"`
	// Init says what to do with an empty data directory: "auto" runs initdb,
	// "never" refuses to start PostgreSQL until an operator provides one.
	Init string `yaml:"init"`
	// StopTimeout bounds each stage of smart → fast → immediate shutdown.
	StopTimeout Duration `yaml:"stop_timeout"`
	// DataChecksums makes initdb checksum every data page, so that a page
	// the disk corrupted is reported instead of read. Only a new cluster
	// is affected; the secondary's copy has what the primary has.
	DataChecksums bool `yaml:"data_checksums"`
	// InitdbOptions are more of initdb's options (encoding, locale…) for a
	// new cluster, each one item of the form --name=value (initdb.go).
	InitdbOptions []string `yaml:"initdb_options"`
	// SuperuserAllow and HBA say who may connect over TCP; tandemd writes
	// pg_hba.conf from them (hba.go).
	SuperuserAllow []string `yaml:"superuser_allow"`
	HBA            []string `yaml:"hba"`
}

// Log configures tandemd's structured log on stderr.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // text or json
}

// Duration is a time.Duration written as "30s" in YAML.
type Duration time.Duration

// UnmarshalYAML reads a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (write it like 30s or 2m)", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration as a string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Defaults returns the settings used when nothing else says otherwise.
func Defaults() Config {
	return Config{
		Postgres: Postgres{
			DataDir:         "/var/lib/tandem/pgdata",
			Port:            5432,
			OSUser:          "postgres",
			SocketDir:       "/run/tandem/postgresql",
			ListenAddresses: "*",
			Init:            "auto",
			StopTimeout:     Duration(30 * time.Second),
			DataChecksums:   true,
			InitdbOptions:   append([]string(nil), DefaultInitdbOptions...),
			HBA:             append([]string(nil), DefaultHBA...),
		},
		StateDir: "/var/lib/tandem/state",
		Replication: Replication{
			MaxSlotWALKeep: "8GB",
			SyncGrace:      Duration(10 * time.Second),
			AwayAfter:      Duration(10 * time.Minute),
		},
		Rejoin:    Rejoin{PeerGrace: Duration(30 * time.Second), SelfElect: true},
		Hooks:     Hooks{Timeout: Duration(30 * time.Second)},
		Notify:    Notify{Retries: 5, Timeout: Duration(10 * time.Second)},
		Log:       Log{Level: "info", Format: "text"},
		Quorum:    defaultQuorum(),
		Watchdog:  defaultWatchdog(),
		Upgrade:   defaultUpgrade(),
		DNSUpdate: defaultDNSUpdate(),
	}
}

// Load reads defaults, then the file at path (if path is not empty), then
// TANDEMD_* variables from environ. It does not validate.
func Load(path string, environ []string) (Config, error) {
	c := Defaults()
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return c, fmt.Errorf("while reading the config file: %w", err)
		}
		if err := Parse(b, &c); err != nil {
			return c, fmt.Errorf("in %s: %w", path, err)
		}
	}
	if err := applyEnv(&c, environ); err != nil {
		return c, err
	}
	return c, nil
}

// Parse decodes YAML onto c, refusing keys it does not know.
func Parse(b []byte, c *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // an empty file means all defaults
		}
		return err
	}
	return nil
}

// Setting describes one leaf setting, for env mapping and documentation.
type Setting struct {
	Key   string // dotted YAML path, e.g. postgres.port
	Env   string // TANDEMD_POSTGRES_PORT
	Value reflect.Value
}

// Settings lists every leaf setting of c in file order.
func Settings(c *Config) []Setting {
	var out []Setting
	var walk func(prefix string, v reflect.Value)
	walk = func(prefix string, v reflect.Value) {
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
			if tag == "" || tag == "-" {
				continue
			}
			key := tag
			if prefix != "" {
				key = prefix + "." + tag
			}
			fv := v.Field(i)
			if fv.Kind() == reflect.Struct {
				walk(key, fv)
				continue
			}
			env := "TANDEMD_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
			out = append(out, Setting{Key: key, Env: env, Value: fv})
		}
	}
	walk("", reflect.ValueOf(c).Elem())
	return out
}

func applyEnv(c *Config, environ []string) error {
	env := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "TANDEMD_") {
			env[k] = v
		}
	}
	var problems []string
	for _, s := range Settings(c) {
		raw, ok := env[s.Env]
		if !ok {
			continue
		}
		if err := Set(s, raw); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", s.Env, err))
		}
	}
	if len(problems) > 0 {
		return &Problems{List: problems}
	}
	return nil
}

// Set assigns a string value to one setting, converting it to its type.
func Set(s Setting, raw string) error {
	switch s.Value.Interface().(type) {
	case string:
		s.Value.SetString(raw)
	case int:
		n, err := strconv.Atoi(raw)
		if err != nil {
			return fmt.Errorf("%q is not a whole number", raw)
		}
		s.Value.SetInt(int64(n))
	case bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return fmt.Errorf("%q is not true or false", raw)
		}
		s.Value.SetBool(b)
	case Duration:
		d, err := time.ParseDuration(raw)
		if err != nil {
			return fmt.Errorf("%q is not a duration (write it like 30s or 2m)", raw)
		}
		s.Value.SetInt(int64(d))
	default:
		return fmt.Errorf("cannot be set from text")
	}
	return nil
}

// Problems is every reason a configuration was refused.
type Problems struct{ List []string }

func (p *Problems) Error() string {
	return "configuration refused:\n  - " + strings.Join(p.List, "\n  - ")
}

// Validate checks every setting and returns all problems at once, each
// naming the setting and what to write instead. It fills in derived values
// (the API address, the PostgreSQL bin dir) when they were left empty.
// identityProblems checks what tandemd and the witness both need: no
// control characters anywhere, the node's name and IP, the API address and
// the state dir. garbled names the settings refused for their characters
// (not checked further).
func (c *Config) identityProblems() (p []string, garbled map[string]bool) {
	add := func(format string, a ...any) { p = append(p, fmt.Sprintf(format, a...)) }

	// Strings go into tandem.conf, PostgreSQL's arguments, file names and
	// log lines: none may hold a control character (a newline would start
	// a line of tandem.conf of the writer's choosing). A setting refused
	// here is not checked further.
	garbled = map[string]bool{}
	for _, s := range Settings(c) {
		if v, ok := s.Value.Interface().(string); ok {
			if err := checkPrintable(v); err != nil {
				add("%s %q: %v", s.Key, v, err)
				garbled[s.Key] = true
			}
		}
	}

	switch {
	case garbled["node.name"]:
	case c.Node.Name == "":
		add("node.name is required: a short lowercase name such as \"a\" or \"db1\"")
	case !valid.Label(c.Node.Name, true):
		add("node.name %q must be lowercase letters, digits and '-', at most 63 characters", c.Node.Name)
	}
	var nodeIP netip.Addr
	if !garbled["node.ip"] {
		if c.Node.IP == "" {
			add("node.ip is required: this node's static IP in the cluster subnet")
		} else if a, err := netip.ParseAddr(c.Node.IP); err != nil || a.Zone() != "" {
			add("node.ip %q is not an IP address", c.Node.IP)
		} else if a.IsUnspecified() || a.IsMulticast() {
			add("node.ip %q must be a unicast address of this node", c.Node.IP)
		} else {
			nodeIP = a
		}
	}

	if c.API.Listen == "" {
		c.API.Listen = net.JoinHostPort("", strconv.Itoa(DefaultAPIPort))
	}
	if host, port, err := net.SplitHostPort(c.API.Listen); err != nil {
		add("api.listen %q must be host:port, for example %s", c.API.Listen, net.JoinHostPort(orDefault(nodeIP), strconv.Itoa(DefaultAPIPort)))
	} else {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			add("api.listen %q: port must be 1-65535", c.API.Listen)
		}
		if host != "" {
			if _, err := netip.ParseAddr(host); err != nil {
				add("api.listen %q: host must be an IP address or empty (all addresses)", c.API.Listen)
			}
		}
	}

	if msg := absProblem(garbled, "state_dir", c.StateDir); msg != "" {
		p = append(p, msg)
	}
	return p, garbled
}

func absProblem(garbled map[string]bool, key, v string) string {
	switch {
	case garbled[key]:
	case v == "":
		return key + " is required: an absolute path"
	case !filepath.IsAbs(v):
		return fmt.Sprintf("%s %q must be an absolute path", key, v)
	}
	return ""
}

func (c *Config) Validate() error {
	p, garbled := c.identityProblems()
	add := func(format string, a ...any) { p = append(p, fmt.Sprintf(format, a...)) }
	checkAbs := func(key, v string) {
		if msg := absProblem(garbled, key, v); msg != "" {
			p = append(p, msg)
		}
	}
	checkAbs("postgres.data_dir", c.Postgres.DataDir)
	checkAbs("postgres.socket_dir", c.Postgres.SocketDir)
	if c.Postgres.Port < 1 || c.Postgres.Port > 65535 {
		add("postgres.port %d must be 1-65535", c.Postgres.Port)
	}
	if sd := c.Postgres.SocketDir; !garbled["postgres.socket_dir"] && filepath.IsAbs(sd) {
		// unix_socket_directories is a comma-separated list that honours
		// double quotes; the kernel caps a socket's path at 107 bytes.
		if strings.ContainsAny(sd, ",\"") {
			add("postgres.socket_dir %q must not contain a comma or a double quote (PostgreSQL would read it as a list)", sd)
		}
		if sock := filepath.Join(sd, ".s.PGSQL."+strconv.Itoa(c.Postgres.Port)); len(sock) > 107 {
			add("postgres.socket_dir %q is too long: the socket path %s exceeds the kernel's 107 bytes; choose a shorter directory", sd, sock)
		}
	}
	switch c.Postgres.Init {
	case "auto", "never":
	default:
		add("postgres.init %q must be \"auto\" (initdb an empty data dir) or \"never\"", c.Postgres.Init)
	}
	if c.Postgres.StopTimeout.D() <= 0 {
		add("postgres.stop_timeout must be a positive duration such as 30s")
	}
	p = append(p, initdbProblems(c.Postgres.InitdbOptions)...)
	if !garbled["postgres.listen_addresses"] {
		if c.Postgres.ListenAddresses == "" {
			add("postgres.listen_addresses is required: \"*\" or a comma-separated list of addresses")
		} else if err := checkListenAddresses(c.Postgres.ListenAddresses); err != nil {
			add("postgres.listen_addresses %q: %v", c.Postgres.ListenAddresses, err)
		}
	}
	if !garbled["postgres.os_user"] {
		if c.Postgres.OSUser == "" {
			add("postgres.os_user is required: the unprivileged OS user PostgreSQL runs as (PostgreSQL refuses root)")
		} else if u, err := user.Lookup(c.Postgres.OSUser); err != nil {
			add("postgres.os_user %q does not exist on this machine: create it or name an existing user", c.Postgres.OSUser)
		} else if u.Uid == "0" {
			add("postgres.os_user %q is root; PostgreSQL refuses to run as root: name an unprivileged user", c.Postgres.OSUser)
		} else if os.Geteuid() != 0 && strconv.Itoa(os.Geteuid()) != u.Uid {
			add("postgres.os_user %q differs from the user tandemd runs as: run tandemd as root or set postgres.os_user to your own user", c.Postgres.OSUser)
		}
	}

	if !garbled["postgres.bin_dir"] {
		if c.Postgres.BinDir == "" {
			if dir, err := FindPostgresBinDir(); err != nil {
				add("postgres.bin_dir: %v", err)
			} else {
				c.Postgres.BinDir = dir
			}
		} else if err := checkBinDir(c.Postgres.BinDir); err != nil {
			add("postgres.bin_dir %q: %v", c.Postgres.BinDir, err)
		}
	}

	if !walSizeRE.MatchString(c.Replication.MaxSlotWALKeep) {
		add("replication.max_slot_wal_keep_size %q must be a size such as 512MB, 8GB or 1TB", c.Replication.MaxSlotWALKeep)
	}
	if c.Replication.SyncGrace.D() <= 0 {
		add("replication.sync_grace must be a positive duration such as 10s")
	}
	if c.Replication.AwayAfter.D() <= 0 {
		add("replication.secondary_away_after must be a positive duration such as 10m")
	}
	if c.Rejoin.PeerGrace.D() <= 0 {
		add("rejoin.peer_grace must be a positive duration such as 30s")
	}
	if c.Hooks.Timeout.D() <= 0 {
		add("hooks.timeout must be a positive duration such as 30s")
	}
	if len(c.Hooks.OnRoleChange) > 0 && !filepath.IsAbs(c.Hooks.OnRoleChange[0]) {
		add("hooks.on_role_change: the program %q must be an absolute path", c.Hooks.OnRoleChange[0])
	}
	if len(c.Notify.Command) > 0 && !filepath.IsAbs(c.Notify.Command[0]) {
		add("notify.command: the program %q must be an absolute path", c.Notify.Command[0])
	}
	if c.Notify.Webhook != "" {
		if u, err := url.Parse(c.Notify.Webhook); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			add("notify.webhook %q must be an http:// or https:// URL", c.Notify.Webhook)
		}
	}
	if c.Notify.Retries < 0 || c.Notify.Retries > 20 {
		add("notify.retries %d must be 0-20", c.Notify.Retries)
	}
	if c.Notify.Timeout.D() <= 0 {
		add("notify.timeout must be a positive duration such as 10s")
	}
	seen := map[string]bool{}
	for i := range c.Services {
		sv := &c.Services[i]
		where := fmt.Sprintf("services[%d]", i)
		if sv.Name == "" {
			add("%s.name is required", where)
		} else if seen[sv.Name] {
			add("%s.name %q is used twice", where, sv.Name)
		}
		seen[sv.Name] = true
		switch {
		case sv.Unit != "" && (len(sv.Start) > 0 || len(sv.Stop) > 0):
			add("%s: give either unit or start/stop commands, not both", where)
		case sv.Unit == "" && (len(sv.Start) == 0 || len(sv.Stop) == 0):
			add("%s: give a systemd unit, or both start and stop commands", where)
		}
		for _, cmd := range [][]string{sv.Start, sv.Stop} {
			if len(cmd) > 0 && !filepath.IsAbs(cmd[0]) {
				add("%s: the program %q must be an absolute path", where, cmd[0])
			}
		}
		if sv.Timeout == 0 {
			sv.Timeout = Duration(30 * time.Second)
		} else if sv.Timeout < 0 {
			add("%s.timeout must be positive", where)
		}
	}
	p = append(p, c.hbaProblems()...)
	p = append(p, c.metricsProblems()...)
	p = append(p, c.quorumProblems()...)
	p = append(p, c.watchdogProblems()...)
	p = append(p, c.syncProblems()...)
	p = append(p, c.upgradeProblems()...)
	p = append(p, c.dnsUpdateProblems(garbled)...)
	p = append(p, c.logProblems()...)
	if len(p) > 0 {
		return &Problems{List: p}
	}
	return nil
}

func (c *Config) logProblems() []string {
	var p []string
	add := func(format string, a ...any) { p = append(p, fmt.Sprintf(format, a...)) }
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		add("log.level %q must be one of debug, info, warn, error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		add("log.format %q must be text or json", c.Log.Format)
	}
	return p
}

// checkPrintable refuses invalid UTF-8 and control characters (C0, DEL
// and C1), naming the first one.
func checkPrintable(v string) error {
	for i, r := range v {
		switch {
		case r == utf8.RuneError && !strings.HasPrefix(v[i:], "\uFFFD"):
			return fmt.Errorf("is not valid UTF-8 at byte %d", i)
		case r < 0x20 || (r >= 0x7f && r < 0xa0):
			return fmt.Errorf("holds the control character %U at byte %d: settings are one line of printable text", r, i)
		}
	}
	return nil
}

// checkListenAddresses accepts what PostgreSQL's listen_addresses means:
// "*", or a comma-separated list of IP addresses and host names.
func checkListenAddresses(v string) error {
	for _, part := range strings.Split(v, ",") {
		a := strings.TrimSpace(part)
		switch {
		case a == "*":
		case a == "":
			return errors.New("has an empty entry: write \"*\" or addresses separated by single commas")
		default:
			if _, err := netip.ParseAddr(a); err == nil {
				continue
			}
			if len(a) > 253 || !valid.Name(a, false) {
				return fmt.Errorf("entry %q is neither \"*\", an IP address nor a host name", a)
			}
		}
	}
	return nil
}

func orDefault(a netip.Addr) string {
	if a.IsValid() {
		return a.String()
	}
	return "10.0.0.1"
}

// PostgresTools are the executables tandemd needs in the bin dir.
var PostgresTools = []string{"postgres", "initdb", "pg_ctl", "pg_controldata"}

func checkBinDir(dir string) error {
	var missing []string
	for _, t := range PostgresTools {
		fi, err := os.Stat(filepath.Join(dir, t))
		if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("has no executable %s: point it at the directory holding PostgreSQL's server programs", strings.Join(missing, ", "))
	}
	return nil
}

// FindPostgresBinDir looks for PostgreSQL's server programs: the newest
// /usr/lib/postgresql/N/bin (Debian, Ubuntu), then /usr/pgsql-N/bin (RPM
// packages), then the directory of `postgres` on PATH.
func FindPostgresBinDir() (string, error) {
	var cands []string
	for _, pattern := range []string{"/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin"} {
		m, _ := filepath.Glob(pattern)
		sort.Slice(m, func(i, j int) bool { return versionOf(m[i]) > versionOf(m[j]) })
		cands = append(cands, m...)
	}
	for _, d := range cands {
		if checkBinDir(d) == nil {
			return d, nil
		}
	}
	for _, d := range filepath.SplitList(os.Getenv("PATH")) {
		if d != "" && checkBinDir(d) == nil {
			return d, nil
		}
	}
	return "", errors.New("no PostgreSQL server programs found (looked in /usr/lib/postgresql/*/bin, /usr/pgsql-*/bin and PATH): install PostgreSQL or set postgres.bin_dir")
}

var digitsRE = regexp.MustCompile(`\d+`)

// walSizeRE accepts what PostgreSQL accepts for a size in MB-granular
// settings, without the -1 ("unlimited"), which would let an absent
// secondary fill the primary's disk.
var walSizeRE = regexp.MustCompile(`^[1-9][0-9]*(MB|GB|TB)$`)

func versionOf(path string) int {
	n, _ := strconv.Atoi(digitsRE.FindString(path))
	return n
}

// YAML renders the merged configuration for --print-config, with secrets
// masked: the webhook URL shows only its scheme and host (MaskURL). The
// admin token and passwords are not settings; they live in the state dir.
func (c *Config) YAML() string {
	shown := *c
	if shown.Notify.Webhook != "" {
		shown.Notify.Webhook = MaskURL(shown.Notify.Webhook)
	}
	return shown.FileYAML()
}

// FileYAML renders the configuration as a file tandemd reads back, with
// nothing masked (the lab writes its nodes' files with it).
func (c *Config) FileYAML() string {
	b, _ := yaml.Marshal(c)
	return string(b)
}
