package packaging

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tandem-ha/tandem/internal/config"
	"github.com/tandem-ha/tandem/internal/daemon"
)

// testVersion is a pre-release on purpose: Debian orders 1.2.3~rc1 before
// 1.2.3, so the package must say ~ where the Go version says -.
const (
	testVersion = "1.2.3-rc1"
	debVersion  = "1.2.3~rc1"
)

// built is the amd64 package, made once for all tests with the same code
// scripts/package.sh runs, and read apart.
type built struct {
	dir     string
	bins    string // tandem and tandemd, as packaged
	deb     string
	members []arMember
	control map[string]tarFile
	data    map[string]tarFile
}

type arMember struct {
	name string
	data []byte
}

type tarFile struct {
	hdr  *tar.Header
	body []byte
}

var shared struct {
	once sync.Once
	pkg  *built
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.pkg != nil {
		os.RemoveAll(shared.pkg.dir)
	}
	os.Exit(code)
}

func pkg(t *testing.T) *built {
	t.Helper()
	shared.once.Do(func() { shared.pkg, shared.err = buildPackage() })
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.pkg
}

func buildPackage() (*built, error) {
	dir, err := os.MkdirTemp("", "tandem-packaging-test-")
	if err != nil {
		return nil, err
	}
	b := &built{dir: dir, bins: filepath.Join(dir, "bin")}
	// The host's own build settings (no -trimpath, cgo as configured), so
	// the build cache that `go build ./...` filled is reused: only the link
	// with the version stamp is new. scripts/package.sh builds the release
	// binaries with CGO_ENABLED=0 and -trimpath.
	cmd := exec.Command("go", "build",
		"-ldflags", "-X github.com/tandem-ha/tandem/internal/version.Version="+testVersion,
		"-o", b.bins+string(filepath.Separator), "./cmd/tandem", "./cmd/tandemd", "./cmd/tandem-witness")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH=amd64")
	if out, err := cmd.CombinedOutput(); err != nil {
		return b, fmt.Errorf("go build: %v\n%s", err, out)
	}
	b.deb, err = Build(Deb{
		Version: testVersion,
		Arch:    "amd64",
		Tandemd: filepath.Join(b.bins, "tandemd"),
		Witness: filepath.Join(b.bins, "tandem-witness"),
		Tandem:  filepath.Join(b.bins, "tandem"),
	}, filepath.Join(dir, "out"))
	if err != nil {
		return b, err
	}
	raw, err := os.ReadFile(b.deb)
	if err != nil {
		return b, err
	}
	if b.members, err = readAr(raw); err != nil {
		return b, err
	}
	for _, m := range b.members {
		switch m.name {
		case "control.tar.gz":
			b.control, err = readTarGz(m.data)
		case "data.tar.gz":
			b.data, err = readTarGz(m.data)
		}
		if err != nil {
			return b, fmt.Errorf("%s: %w", m.name, err)
		}
	}
	return b, nil
}

// readAr reads a common-format ar archive, as dpkg writes and reads it.
func readAr(b []byte) ([]arMember, error) {
	const magic = "!<arch>\n"
	if !bytes.HasPrefix(b, []byte(magic)) {
		return nil, errors.New("not an ar archive: no !<arch> magic")
	}
	b = b[len(magic):]
	var out []arMember
	for len(b) > 0 {
		if len(b) < 60 {
			return nil, fmt.Errorf("truncated member header after %d members", len(out))
		}
		h := b[:60]
		if string(h[58:60]) != "`\n" {
			return nil, fmt.Errorf("bad member header %q", h)
		}
		name := strings.TrimSuffix(strings.TrimRight(string(h[0:16]), " "), "/")
		size, err := strconv.Atoi(strings.TrimSpace(string(h[48:58])))
		if err != nil || size < 0 || 60+size > len(b) {
			return nil, fmt.Errorf("member %s: bad size %q", name, h[48:58])
		}
		out = append(out, arMember{name: name, data: b[60 : 60+size]})
		b = b[60+size:]
		if size%2 == 1 && len(b) > 0 {
			b = b[1:] // members are padded to an even length
		}
	}
	return out, nil
}

func readTarGz(b []byte) (map[string]tarFile, error) {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	tr := tar.NewReader(zr)
	out := map[string]tarFile{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			return nil, err
		}
		out[strings.TrimPrefix(h.Name, "./")] = tarFile{hdr: h, body: body}
	}
}

func embedded(t *testing.T, name string) []byte {
	t.Helper()
	b, err := Files.ReadFile("files/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestArchiveHasTheThreeMembers(t *testing.T) {
	p := pkg(t)
	var names []string
	for _, m := range p.members {
		names = append(names, m.name)
	}
	// dpkg requires this order: the format version first.
	if want := []string{"debian-binary", "control.tar.gz", "data.tar.gz"}; !slices.Equal(names, want) {
		t.Fatalf("ar members %v, want %v", names, want)
	}
	if got := string(p.members[0].data); got != "2.0\n" {
		t.Errorf("debian-binary is %q, want \"2.0\\n\"", got)
	}
	if got, want := filepath.Base(p.deb), "tandem_"+debVersion+"_amd64.deb"; got != want {
		t.Errorf("package file is %s, want %s", got, want)
	}
}

// control parses the control file: "Field: value", continuation lines
// starting with a space.
func control(t *testing.T, p *built) map[string]string {
	t.Helper()
	f, ok := p.control["control"]
	if !ok {
		t.Fatal("control.tar.gz has no control file")
	}
	fields := map[string]string{}
	var last string
	sc := bufio.NewScanner(bytes.NewReader(f.body))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, " ") && last != "" {
			fields[last] += "\n" + line
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			t.Fatalf("control: bad line %q", line)
		}
		last = k
		fields[k] = strings.TrimSpace(v)
	}
	return fields
}

func TestControl(t *testing.T) {
	p := pkg(t)
	c := control(t, p)
	want := map[string]string{
		"Package":      "tandem",
		"Version":      debVersion,
		"Architecture": "amd64",
		"Depends":      "postgresql (>= 13) | postgresql-15 | postgresql-16, iproute2",
		"Maintainer":   Maintainer,
	}
	for k, v := range want {
		if c[k] != v {
			t.Errorf("control %s: %q, want %q", k, c[k], v)
		}
	}
	if d := c["Description"]; !strings.Contains(d, "PostgreSQL") || !strings.Contains(d, "\n ") {
		t.Errorf("control Description needs a synopsis and a long description: %q", d)
	}
	for _, k := range []string{"Recommends", "Suggests", "Pre-Depends"} {
		if v, ok := c[k]; ok {
			t.Errorf("control has %s: %q; the package needs no more than Depends", k, v)
		}
	}

	if got, want := string(p.control["conffiles"].body), ConfigPath+"\n"+WitnessConfigPath+"\n"; got != want {
		t.Errorf("conffiles is %q, want %q", got, want)
	}
	if _, ok := p.control["md5sums"]; !ok {
		t.Error("control.tar.gz has no md5sums")
	}
}

func TestMaintainerScripts(t *testing.T) {
	p := pkg(t)
	for _, name := range []string{"postinst", "postrm"} {
		f, ok := p.control[name]
		if !ok {
			t.Errorf("control.tar.gz has no %s", name)
			continue
		}
		if m := f.hdr.FileInfo().Mode().Perm(); m != 0o755 {
			t.Errorf("%s has mode %#o, want 0755", name, m)
		}
		if !bytes.Equal(f.body, embedded(t, name)) {
			t.Errorf("%s in the package differs from packaging/files/%s", name, name)
		}
		if sh, err := exec.LookPath("sh"); err == nil {
			if out, err := exec.Command(sh, "-n", "-c", string(f.body)).CombinedOutput(); err != nil {
				t.Errorf("%s: sh -n: %v\n%s", name, err, out)
			}
		}
	}
	for _, name := range []string{"preinst", "prerm"} {
		if _, ok := p.control[name]; ok {
			t.Errorf("control.tar.gz has a %s; the package only needs postinst and postrm", name)
		}
	}
	post := string(p.control["postinst"].body)
	var commands []string // postinst without its comments and messages
	for _, line := range strings.Split(post, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "#") && !strings.HasPrefix(line, "echo ") {
			commands = append(commands, line)
		}
	}
	for _, want := range []string{"/var/lib/tandem/state", "-m 0700", "systemctl enable --now tandemd"} {
		if !strings.Contains(post, want) {
			t.Errorf("postinst does not contain %q", want)
		}
	}
	// Installing must not start the service: the node has no name yet.
	for _, banned := range []string{"systemctl start", "systemctl enable tandemd", "systemctl restart", "deb-systemd-invoke"} {
		if strings.Contains(strings.Join(commands, "\n"), banned) {
			t.Errorf("postinst contains %q; it must not enable or start tandemd", banned)
		}
	}
	// An upgrade of a running tandemd reloads it, and only then: a restart
	// would stop PostgreSQL.
	if n := strings.Count(strings.Join(commands, "\n"), "systemctl reload tandemd"); n != 1 {
		t.Errorf("postinst runs `systemctl reload tandemd` %d times, want once, on upgrade", n)
	}
	if i, j := strings.Index(post, `elif [ -d /run/systemd/system ] && systemctl is-active`), strings.Index(post, "systemctl reload tandemd"); i < 0 || j < i {
		t.Error("postinst's reload is not inside the upgrade branch (a running tandemd, $2 set)")
	}
	// Purging must keep the database.
	postrm := string(p.control["postrm"].body)
	for _, line := range strings.Split(postrm, "\n") {
		if strings.Contains(line, "rm ") && strings.Contains(line, "/var/lib") {
			t.Errorf("postrm removes something under /var/lib: %q", line)
		}
	}
}

func TestDataContents(t *testing.T) {
	p := pkg(t)
	want := map[string]struct {
		mode os.FileMode
		body []byte
	}{
		"usr/bin/tandemd":                           {0o755, mustRead(t, filepath.Join(p.bins, "tandemd"))},
		"usr/bin/tandem":                            {0o755, mustRead(t, filepath.Join(p.bins, "tandem"))},
		"usr/bin/tandem-witness":                    {0o755, mustRead(t, filepath.Join(p.bins, "tandem-witness"))},
		"lib/systemd/system/tandemd.service":        {0o644, embedded(t, "tandemd.service")},
		"etc/tandem/tandemd.yaml":                   {0o644, embedded(t, "tandemd.yaml")},
		"lib/systemd/system/tandem-witness.service": {0o644, embedded(t, "tandem-witness.service")},
		"etc/tandem/witness.yaml":                   {0o644, embedded(t, "witness.yaml")},
	}
	var files []string
	for name, f := range p.data {
		if f.hdr.Typeflag == tar.TypeDir {
			continue
		}
		files = append(files, name)
		if f.hdr.Uid != 0 || f.hdr.Gid != 0 {
			t.Errorf("%s is owned by %d:%d, want root", name, f.hdr.Uid, f.hdr.Gid)
		}
		w, ok := want[name]
		if !ok {
			continue
		}
		if f.hdr.Typeflag != tar.TypeReg {
			t.Errorf("%s is not a regular file (type %c)", name, f.hdr.Typeflag)
		}
		if m := f.hdr.FileInfo().Mode().Perm(); m != w.mode {
			t.Errorf("%s has mode %#o, want %#o", name, m, w.mode)
		}
		if !bytes.Equal(f.body, w.body) {
			t.Errorf("%s in the package differs from its source", name)
		}
	}
	sort.Strings(files)
	var wantFiles []string
	for name := range want {
		wantFiles = append(wantFiles, name)
	}
	sort.Strings(wantFiles)
	if !slices.Equal(files, wantFiles) {
		t.Errorf("data.tar.gz holds files %v, want exactly %v", files, wantFiles)
	}
	for name := range p.data {
		// dpkg would own it, and a purge would try to remove it.
		if strings.HasPrefix(name, "var/") {
			t.Errorf("data.tar.gz holds %s; /var/lib/tandem is made by postinst and never removed", name)
		}
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// unitFile reads a systemd unit: section -> key -> values in order, and the
// comment text, for the checks that a decision is explained.
func unitFile(t *testing.T, b []byte) (map[string]map[string][]string, string) {
	t.Helper()
	out := map[string]map[string][]string{}
	var comments strings.Builder
	section := ""
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "":
		case strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
			comments.WriteString(line + "\n")
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			out[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("unit line %d: %q is not key=value in a section", i+1, line)
			}
			out[section][k] = append(out[section][k], v)
		}
	}
	return out, comments.String()
}

func TestUnitDecisions(t *testing.T) {
	u, comments := unitFile(t, embedded(t, "tandemd.service"))
	svc := u["Service"]
	one := func(k string) string {
		t.Helper()
		if len(svc[k]) != 1 {
			t.Errorf("[Service] %s is set %d times, want once", k, len(svc[k]))
			return ""
		}
		return svc[k][0]
	}
	want := map[string]string{
		// No READY=1 from tandemd yet; notify would time out.
		"Type":                     "notify",
		"NotifyAccess":             "main",
		"ExecStart":                TandemdPath + " --config " + ConfigPath,
		"ExecReload":               TandemdPath + " --config " + ConfigPath + " --reload",
		"Restart":                  "on-failure",
		"RestartSec":               "2s",
		"KillMode":                 "process",
		"NoNewPrivileges":          "yes",
		"ProtectSystem":            "full",
		"ReadWritePaths":           "/var/lib/tandem /run/tandem",
		"StateDirectory":           "tandem",
		"RuntimeDirectory":         "tandem",
		"RuntimeDirectoryPreserve": "yes",
	}
	for k, v := range want {
		if got := one(k); got != v {
			t.Errorf("[Service] %s=%s, want %s", k, got, v)
		}
	}

	// The default state_dir and data_dir live in the StateDirectory, the
	// socket dir in the RuntimeDirectory.
	d := config.Defaults()
	if !strings.HasPrefix(d.StateDir, "/var/lib/tandem/") || !strings.HasPrefix(d.Postgres.DataDir, "/var/lib/tandem/") {
		t.Errorf("defaults moved out of /var/lib/tandem (%s, %s): update StateDirectory and ReadWritePaths", d.StateDir, d.Postgres.DataDir)
	}
	if !strings.HasPrefix(d.Postgres.SocketDir, "/run/tandem/") {
		t.Errorf("default socket_dir %s is not under /run/tandem: update RuntimeDirectory", d.Postgres.SocketDir)
	}
	// The OS user must pass through /var/lib/tandem to reach its data dir;
	// the state dir below it is what stays private.
	if m := one("StateDirectoryMode"); m != "0711" {
		t.Errorf("StateDirectoryMode=%s, want 0711 (traversable by postgres.os_user, not listable)", m)
	}

	// tandemd waits for the operation in flight, stops PostgreSQL in three
	// stages of postgres.stop_timeout, then needs a few seconds of its own
	// (API, cluster IP, reap).
	stop, err := time.ParseDuration(one("TimeoutStopSec"))
	if err != nil {
		t.Fatalf("TimeoutStopSec: %v", err)
	}
	if min := daemon.OperationGrace + 3*d.Postgres.StopTimeout.D() + 15*time.Second; stop < min {
		t.Errorf("TimeoutStopSec=%s is shorter than the operation grace + 3 x postgres.stop_timeout + slack (%s)", stop, min)
	}

	caps := strings.Fields(one("CapabilityBoundingSet"))
	sort.Strings(caps)
	wantCaps := []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_KILL", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SYS_PTRACE"}
	if !slices.Equal(caps, wantCaps) {
		t.Errorf("CapabilityBoundingSet %v, want %v", caps, wantCaps)
	}
	for _, c := range caps {
		if !strings.Contains(comments, c+" ") && !strings.Contains(comments, c+",") {
			t.Errorf("%s has no comment saying why tandemd needs it", c)
		}
	}
	if _, ok := svc["User"]; ok {
		t.Error("[Service] sets User=; tandemd runs as root to switch to postgres.os_user")
	}
	for _, k := range []string{"Type=notify", "KillMode", "NoNewPrivileges", "RuntimeDirectoryPreserve"} {
		if !strings.Contains(comments, k) {
			t.Errorf("no comment explains %s", k)
		}
	}
	if got := u["Install"]["WantedBy"]; !slices.Equal(got, []string{"multi-user.target"}) {
		t.Errorf("[Install] WantedBy=%v, want multi-user.target", got)
	}
}

// TestUnitVerifies runs systemd's own checker on the unit, with ExecStart
// and ExecReload pointing at a real tandemd so the binary check can pass.
func TestUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed (Debian package systemd); the unit was not verified")
	}
	p := pkg(t)
	dir := t.TempDir()
	unit := string(embedded(t, "tandemd.service"))
	for _, k := range []string{"ExecStart=", "ExecReload="} {
		unit = strings.ReplaceAll(unit, k+TandemdPath, k+filepath.Join(p.bins, "tandemd"))
	}
	path := filepath.Join(dir, "tandemd.service")
	if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", "--man=no", path).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	// Unknown keys and bad values are warnings with exit status 0.
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "tandemd.service") {
			t.Errorf("systemd-analyze verify: %s", line)
		}
	}
}

// Config tests: the shipped file must load with the real config code.

// fakeBinDir holds executables named like PostgreSQL's, for machines
// without PostgreSQL.
func fakeBinDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, n := range config.PostgresTools {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// osUser is a user that exists and that Validate accepts: not root when we
// are root, ourselves when we are not.
func osUser(t *testing.T) string {
	t.Helper()
	if os.Geteuid() == 0 {
		for _, name := range []string{"postgres", "nobody"} {
			if _, err := user.Lookup(name); err == nil {
				return name
			}
		}
		t.Skip("no unprivileged user (postgres or nobody) on this machine")
	}
	u, err := user.Current()
	if err != nil {
		t.Skipf("cannot tell who runs the tests: %v", err)
	}
	return u.Username
}

// machineEnv points the settings that depend on this machine at things
// that exist here.
func machineEnv(t *testing.T) []string {
	return []string{
		"TANDEMD_POSTGRES_BIN_DIR=" + fakeBinDir(t),
		"TANDEMD_POSTGRES_OS_USER=" + osUser(t),
	}
}

func shippedConfig(t *testing.T) string {
	t.Helper()
	f, ok := pkg(t).data[strings.TrimPrefix(ConfigPath, "/")]
	if !ok {
		t.Fatalf("the package has no %s", ConfigPath)
	}
	return string(f.body)
}

// fillNode does what the operator does first.
func fillNode(t *testing.T, yml string) string {
	t.Helper()
	for _, r := range [][2]string{{"\n  name: \"\"\n", "\n  name: a\n"}, {"\n  ip: \"\"\n", "\n  ip: 10.0.0.11\n"}} {
		if strings.Count(yml, r[0]) != 1 {
			t.Fatalf("the shipped config should have one line %q to fill in", strings.TrimSpace(r[0]))
		}
		yml = strings.Replace(yml, r[0], r[1], 1)
	}
	return yml
}

func loadYAML(t *testing.T, yml string, env []string) (config.Config, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tandemd.yaml")
	if err := os.WriteFile(path, []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(path, env)
	if err != nil {
		return c, err
	}
	return c, c.Validate()
}

func TestShippedConfigRefusesOnlyTheMissingNode(t *testing.T) {
	_, err := loadYAML(t, shippedConfig(t), machineEnv(t))
	var p *config.Problems
	if !errors.As(err, &p) {
		t.Fatalf("the shipped config should be refused for its empty node settings, got %v", err)
	}
	if len(p.List) != 2 || !strings.HasPrefix(p.List[0], "node.name is required") || !strings.HasPrefix(p.List[1], "node.ip is required") {
		t.Fatalf("the shipped config should be refused for node.name and node.ip only:\n%v", err)
	}
}

func TestShippedConfigIsValidOnceTheNodeIsFilled(t *testing.T) {
	env := machineEnv(t)
	c, err := loadYAML(t, fillNode(t, shippedConfig(t)), env)
	if err != nil {
		t.Fatalf("the shipped config with node.name and node.ip filled in is refused:\n%v", err)
	}
	if c.Node.Name != "a" || c.Node.IP != "10.0.0.11" {
		t.Fatalf("node is %+v", c.Node)
	}
	// Everything else is left at the defaults.
	d := config.Defaults()
	d.Node = c.Node
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	d.Postgres.BinDir, d.Postgres.OSUser = c.Postgres.BinDir, c.Postgres.OSUser
	if !reflect.DeepEqual(c, d) {
		t.Errorf("the shipped config changes defaults:\n got %+v\nwant %+v", c, d)
	}
}

// uncomment turns the commented-out settings back into YAML: a "#"
// directly followed by text, or by the two-space indent of a nested line,
// is a setting; "# " followed by text is prose and stays a comment.
func uncomment(yml string) string {
	lines := strings.Split(yml, "\n")
	for i, line := range lines {
		rest := strings.TrimLeft(line, " ")
		indent := line[:len(line)-len(rest)]
		if len(rest) > 1 && rest[0] == '#' && (rest[1] != ' ' || strings.HasPrefix(rest, "#  ")) {
			lines[i] = indent + rest[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// yamlKeys lists the dotted keys of every mapping entry (not descending
// into lists) with the comment above it.
func yamlKeys(n *yaml.Node, prefix string, out map[string]string) {
	if n.Kind == yaml.DocumentNode {
		for _, c := range n.Content {
			yamlKeys(c, prefix, out)
		}
		return
	}
	if n.Kind != yaml.MappingNode {
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		key := k.Value
		if prefix != "" {
			key = prefix + "." + key
		}
		out[key] = k.HeadComment
		yamlKeys(v, key, out)
	}
}

// TestExampleConfigDocumentsEverySetting keeps the example in step with
// the code: every setting config.Settings knows appears, explained, with
// the built-in default as its value (settings without one show an example).
func TestExampleConfigDocumentsEverySetting(t *testing.T) {
	full := fillNode(t, uncomment(shippedConfig(t)))

	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(full), &doc); err != nil {
		t.Fatalf("the example with every setting uncommented is not YAML: %v\n%s", err, full)
	}
	keys := map[string]string{}
	yamlKeys(&doc, "", keys)

	d := config.Defaults()
	for _, s := range config.Settings(&d) {
		comment, ok := keys[s.Key]
		if !ok {
			t.Errorf("the example config does not show %s", s.Key)
			continue
		}
		if strings.TrimSpace(strings.TrimLeft(comment, "#")) == "" {
			t.Errorf("the example config shows %s without a comment saying what it changes", s.Key)
		}
	}

	if _, err := loadYAML(t, full, machineEnv(t)); err != nil {
		t.Fatalf("the example with every setting uncommented is refused:\n%v", err)
	}

	// A setting with a default shows that default; one without (empty
	// lists, automatic values) may show an example instead.
	path := filepath.Join(t.TempDir(), "full.yaml")
	if err := os.WriteFile(path, []byte(full), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := config.Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	gotSettings := map[string]any{}
	for _, s := range config.Settings(&got) {
		gotSettings[s.Key] = s.Value.Interface()
	}
	for _, s := range config.Settings(&d) {
		if s.Value.IsZero() {
			continue
		}
		if g := gotSettings[s.Key]; !reflect.DeepEqual(g, s.Value.Interface()) {
			t.Errorf("the example shows %s: %v, but the default is %v", s.Key, g, s.Value.Interface())
		}
	}
}

// TestInstallIntoScratchRoot unpacks the package the way dpkg does and
// runs what it installed.
func TestInstallIntoScratchRoot(t *testing.T) {
	dpkgDeb, err := exec.LookPath("dpkg-deb")
	if err != nil {
		t.Skip("dpkg-deb is not installed (Debian package dpkg); the install test needs it")
	}
	p := pkg(t)

	// dpkg-deb reads the control file itself: a malformed one fails here.
	out, err := exec.Command(dpkgDeb, "--field", p.deb, "Package", "Version", "Architecture").CombinedOutput()
	if err != nil {
		t.Fatalf("dpkg-deb --field: %v\n%s", err, out)
	}
	if want := "Package: tandem\nVersion: " + debVersion + "\nArchitecture: amd64\n"; string(out) != want {
		t.Errorf("dpkg-deb --field says\n%s\nwant\n%s", out, want)
	}

	root := t.TempDir()
	if out, err := exec.Command(dpkgDeb, "-x", p.deb, root).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x: %v\n%s", err, out)
	}
	for path, mode := range map[string]os.FileMode{
		TandemdPath: 0o755,
		WitnessPath: 0o755,
		ConsolePath: 0o755,
		UnitPath:    0o644,
		ConfigPath:  0o644,
	} {
		fi, err := os.Lstat(filepath.Join(root, path))
		if err != nil {
			t.Errorf("installed tree: %v", err)
			continue
		}
		if !fi.Mode().IsRegular() || fi.Mode().Perm() != mode {
			t.Errorf("installed %s has mode %v, want a regular file %#o", path, fi.Mode(), mode)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "var")); err == nil {
		t.Error("the package installs something under /var")
	}

	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skipf("the amd64 binaries do not run on %s/%s; the tree was checked", runtime.GOOS, runtime.GOARCH)
	}
	tandemd := filepath.Join(root, TandemdPath)
	for _, bin := range []string{tandemd, filepath.Join(root, WitnessPath), filepath.Join(root, ConsolePath)} {
		out, err := exec.Command(bin, "--version").CombinedOutput()
		if err != nil || !strings.Contains(string(out), testVersion) {
			t.Errorf("%s --version: %v: %q, want the stamped version %s", filepath.Base(bin), err, out, testVersion)
		}
	}

	// As shipped, tandemd refuses the config and names what to fill in.
	env := append(cleanEnv(), machineEnv(t)...)
	// So does the witness's program with its own.
	wcmd := exec.Command(filepath.Join(root, WitnessPath), "--config", filepath.Join(root, WitnessConfigPath), "--check")
	wcmd.Env = env
	wout, werr := wcmd.CombinedOutput()
	var wexit *exec.ExitError
	if !errors.As(werr, &wexit) || wexit.ExitCode() != 2 || !strings.Contains(string(wout), "node.name is required") || !strings.Contains(string(wout), "node.ip is required") {
		t.Errorf("tandem-witness --check on the shipped witness config: %v (want exit status 2 naming node.name and node.ip)\n%s", werr, wout)
	}
	cfg := filepath.Join(root, ConfigPath)
	cmd := exec.Command(tandemd, "--config", cfg, "--check")
	cmd.Env = env
	out, err = cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 {
		t.Fatalf("tandemd --check on the shipped config: %v (want exit status 2)\n%s", err, out)
	}
	for _, want := range []string{"node.name is required", "node.ip is required"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("tandemd --check on the shipped config does not say %q:\n%s", want, out)
		}
	}
	if n := strings.Count(string(out), "\n  - "); n != 2 {
		t.Errorf("tandemd --check on the shipped config lists %d problems, want 2 (node.name, node.ip):\n%s", n, out)
	}

	// Filled in, it checks the machine too: this one has neither the
	// node IP 10.0.0.11 nor the state dir the postinst makes (exit 2,
	// both named), and passes once both are there.
	if err := os.WriteFile(cfg, []byte(fillNode(t, string(mustRead(t, cfg)))), 0o644); err != nil {
		t.Fatal(err)
	}
	stateDir := filepath.Join(root, "var/lib/tandem/state")
	cmd = exec.Command(tandemd, "--config", cfg, "--check")
	cmd.Env = append(env, "TANDEMD_STATE_DIR="+stateDir)
	out, err = cmd.CombinedOutput()
	if !errors.As(err, &exit) || exit.ExitCode() != 2 || strings.Contains(string(out), "configuration ok") {
		t.Errorf("tandemd --check with a node IP of another machine and no state dir: %v (want exit status 2)\n%s", err, out)
	}
	for _, want := range []string{"node.ip 10.0.0.11 is on none of this machine's interfaces", "state_dir " + stateDir + " does not exist"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("tandemd --check does not say %q:\n%s", want, out)
		}
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	cmd = exec.Command(tandemd, "--config", cfg, "--check")
	cmd.Env = append(env, "TANDEMD_STATE_DIR="+stateDir, "TANDEMD_NODE_IP=127.0.0.1")
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "configuration ok") {
		t.Errorf("tandemd --check with node.name and node.ip filled in, on a machine with both: %v\n%s", err, out)
	}
}

// cleanEnv is our environment without TANDEMD_* settings that would
// override the file.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TANDEMD_") {
			env = append(env, kv)
		}
	}
	return env
}

func TestBuildRefusesMistakes(t *testing.T) {
	p := pkg(t)
	amd := Deb{Version: "0.1.0", Arch: "amd64", Tandemd: filepath.Join(p.bins, "tandemd"), Witness: filepath.Join(p.bins, "tandem-witness"), Tandem: filepath.Join(p.bins, "tandem")}
	for name, tc := range map[string]struct {
		mut  func(*Deb)
		want string
	}{
		"wrong architecture": {func(d *Deb) { d.Arch = "arm64" }, "is built for"},
		"unknown arch":       {func(d *Deb) { d.Arch = "riscv64" }, "amd64 and arm64"},
		"bad version":        {func(d *Deb) { d.Version = "latest" }, "must start with a digit"},
		"missing binary":     {func(d *Deb) { d.Tandem = filepath.Join(p.dir, "nope") }, "nope"},
		"not a binary":       {func(d *Deb) { d.Tandemd = filepath.Join(p.dir, "out") }, "binary"},
	} {
		t.Run(name, func(t *testing.T) {
			d := amd
			tc.mut(&d)
			out := t.TempDir()
			_, err := Build(d, out)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Build: %v, want an error containing %q", err, tc.want)
			}
			if entries, _ := os.ReadDir(out); len(entries) > 0 {
				t.Errorf("a refused build left %v behind", entries)
			}
		})
	}
}

// The witness's unit verifies like tandemd's, and its shipped config is
// refused only for the empty node settings, then valid once they are filled.
func TestWitnessUnitAndConfig(t *testing.T) {
	if analyze, err := exec.LookPath("systemd-analyze"); err == nil {
		p := pkg(t)
		dir := t.TempDir()
		unit := strings.ReplaceAll(string(embedded(t, "tandem-witness.service")), "ExecStart="+WitnessPath, "ExecStart="+filepath.Join(p.bins, "tandem-witness"))
		path := filepath.Join(dir, "tandem-witness.service")
		if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(analyze, "verify", "--man=no", path).CombinedOutput()
		if err != nil {
			t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
		}
		for _, line := range strings.Split(string(out), "\n") {
			if strings.Contains(line, "tandem-witness.service") {
				t.Errorf("systemd-analyze verify: %s", line)
			}
		}
	} else {
		t.Log("systemd-analyze is not installed; the witness unit was not verified")
	}
	units, _ := unitFile(t, embedded(t, "tandem-witness.service"))
	if got := units["Service"]["ExecStart"]; len(got) != 1 || got[0] != WitnessPath+" --config "+WitnessConfigPath {
		t.Errorf("the witness unit runs %v, want %s --config %s", got, WitnessPath, WitnessConfigPath)
	}
	load := func(y string) (config.Config, error) {
		c := config.Defaults()
		if err := config.Parse([]byte(y), &c); err != nil {
			return c, err
		}
		return c, c.ValidateWitness()
	}
	shipped := string(embedded(t, "witness.yaml"))
	_, err := load(shipped)
	var p *config.Problems
	if !errors.As(err, &p) || len(p.List) != 2 || !strings.HasPrefix(p.List[0], "node.name is required") || !strings.HasPrefix(p.List[1], "node.ip is required") {
		t.Fatalf("the shipped witness config should be refused for node.name and node.ip only: %v", err)
	}
	filled := strings.Replace(strings.Replace(shipped, `name: ""`, "name: w", 1), `ip: ""`, "ip: 10.0.0.13", 1)
	c, err := load(uncomment(filled))
	if err != nil {
		t.Fatalf("the shipped witness config, filled in and uncommented, is refused: %v", err)
	}
	if c.StateDir != "/var/lib/tandem-witness" || c.Quorum.PeerPort != 7410 || c.Quorum.ClientPort != 7411 {
		t.Errorf("witness config %+v", c)
	}
}
