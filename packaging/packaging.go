// Package packaging builds tandem's Debian package with nfpm: tandemd,
// the witness's program and the console, the systemd units, the example configuration (a conffile)
// and the maintainer scripts. scripts/package.sh drives it through
// packaging/cmd/mkdeb; the tests call it directly.
package packaging

import (
	"debug/elf"
	"embed"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/deb"
	"github.com/goreleaser/nfpm/v2/files"
)

// Where the package puts things on the target system.
const (
	Name        = "tandem"
	TandemdPath = "/usr/bin/tandemd"
	ConsolePath = "/usr/bin/tandem"
	// WitnessPath is the witness's own program (tandemd --witness runs the
	// same code, with more mapped: see docs/quorum.md).
	WitnessPath = "/usr/bin/tandem-witness"
	UnitPath    = "/lib/systemd/system/tandemd.service"
	ConfigPath  = "/etc/tandem/tandemd.yaml"
	// The witness of automatic failover mode, on a third machine: its
	// program, its own unit (not enabled) and config.
	WitnessUnitPath   = "/lib/systemd/system/tandem-witness.service"
	WitnessConfigPath = "/etc/tandem/witness.yaml"
)

// Depends is the package's Depends field: a PostgreSQL server (tandemd runs
// it from /usr/lib/postgresql/N/bin) and iproute2.
var Depends = []string{"postgresql (>= 13) | postgresql-15 | postgresql-16", "iproute2"}

// Maintainer goes into the control file.
const Maintainer = "tandem developers <tandem-ha@users.noreply.github.com>"

const description = `two-node PostgreSQL high availability
 tandemd keeps a server whose state lives in PostgreSQL available on two
 nodes: a primary holding the cluster IP and a hot standby fed by streaming
 replication, with switchover, failover and automatic rejoin. This package
 holds tandemd, its systemd unit and example configuration, the quorum
 witness (tandem-witness) with its own unit, and the tandem console.`

// Files are the package's own files, kept beside this code: the unit, the
// example configuration and the maintainer scripts.
//
//go:embed files
var Files embed.FS

// Deb says what to package.
type Deb struct {
	Version string // 0.1.0, 1.2.0-rc1; a leading "v" is dropped
	Arch    string // GOARCH of the binaries: amd64 or arm64
	Tandemd string // path of the built tandemd
	Witness string // path of the built tandem-witness
	Tandem  string // path of the built console
}

// debArch maps GOARCH to the ELF machine the binaries must be built for.
var debArch = map[string]elf.Machine{
	"amd64": elf.EM_X86_64,
	"arm64": elf.EM_AARCH64,
}

var versionRE = regexp.MustCompile(`^[0-9][0-9A-Za-z.+~-]*$`)

// Build writes the package into outDir and returns its path, named the
// Debian way: tandem_VERSION_ARCH.deb.
func Build(d Deb, outDir string) (string, error) {
	d.Version = strings.TrimPrefix(d.Version, "v")
	if !versionRE.MatchString(d.Version) {
		return "", fmt.Errorf("version %q: must start with a digit, like 0.1.0 or 1.2.0-rc1", d.Version)
	}
	machine, ok := debArch[d.Arch]
	if !ok {
		return "", fmt.Errorf("arch %q: packages are built for amd64 and arm64", d.Arch)
	}
	for _, bin := range []string{d.Tandemd, d.Witness, d.Tandem} {
		if err := checkBinary(bin, machine); err != nil {
			return "", err
		}
	}

	// nfpm reads contents and scripts from files: lay the embedded ones out.
	src, err := os.MkdirTemp("", "tandem-deb-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(src)
	if err := writeFiles(src); err != nil {
		return "", err
	}

	info := nfpm.WithDefaults(&nfpm.Info{
		Name:        Name,
		Arch:        d.Arch,
		Platform:    "linux",
		Version:     d.Version,
		Section:     "database",
		Priority:    "optional",
		Maintainer:  Maintainer,
		Description: description,
		Homepage:    "https://github.com/tandem-ha/tandem",
		Overridables: nfpm.Overridables{
			Depends: Depends,
			Contents: files.Contents{
				{Source: d.Tandemd, Destination: TandemdPath, FileInfo: &files.ContentFileInfo{Mode: 0o755}},
				{Source: d.Witness, Destination: WitnessPath, FileInfo: &files.ContentFileInfo{Mode: 0o755}},
				{Source: d.Tandem, Destination: ConsolePath, FileInfo: &files.ContentFileInfo{Mode: 0o755}},
				{Source: filepath.Join(src, "tandemd.service"), Destination: UnitPath, FileInfo: &files.ContentFileInfo{Mode: 0o644}},
				// No secrets in it (they live in state_dir), so world-readable.
				{Source: filepath.Join(src, "tandemd.yaml"), Destination: ConfigPath, Type: files.TypeConfig, FileInfo: &files.ContentFileInfo{Mode: 0o644}},
				{Source: filepath.Join(src, "tandem-witness.service"), Destination: WitnessUnitPath, FileInfo: &files.ContentFileInfo{Mode: 0o644}},
				{Source: filepath.Join(src, "witness.yaml"), Destination: WitnessConfigPath, Type: files.TypeConfig, FileInfo: &files.ContentFileInfo{Mode: 0o644}},
			},
			Scripts: nfpm.Scripts{
				PostInstall: filepath.Join(src, "postinst"),
				PostRemove:  filepath.Join(src, "postrm"),
			},
			Deb: nfpm.Deb{Compression: "gzip"},
		},
	})
	if err := nfpm.Validate(info); err != nil {
		return "", fmt.Errorf("while checking the package description: %w", err)
	}

	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(outDir, deb.Default.ConventionalFileName(info))
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp)
	if err := deb.Default.Package(info, f); err != nil {
		f.Close()
		return "", fmt.Errorf("while building %s: %w", filepath.Base(path), err)
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return path, os.Rename(tmp, path)
}

// checkBinary refuses a missing file or one built for another machine, so a
// mixed-up path cannot ship an arm64 binary in the amd64 package.
func checkBinary(path string, want elf.Machine) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("binary %s: %w", path, err)
	}
	defer f.Close()
	if f.Machine != want {
		return fmt.Errorf("binary %s is built for %s, not %s", path, f.Machine, want)
	}
	return nil
}

func writeFiles(dir string) error {
	entries, err := Files.ReadDir("files")
	if err != nil {
		return err
	}
	for _, e := range entries {
		b, err := Files.ReadFile("files/" + e.Name())
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}
