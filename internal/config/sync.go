package config

import (
	"fmt"
	"path/filepath"
	"strings"
)

// Sync lists the files the primary carries to the secondary (filesync.go
// in internal/cluster): the role-bound services' configuration, kept the
// same on both nodes. Both nodes list the same paths: a secondary writes
// only what its own list names, so a primary cannot write anywhere else on
// it.
type Sync struct {
	Files []string `yaml:"files"`
}

// Limits of sync.files: the files travel in the cluster record, which is
// replicated like any other change; they are configuration, not data.
const (
	MaxSyncFiles    = 64
	MaxSyncFileSize = 256 << 10
)

func (c *Config) syncProblems() []string {
	var p []string
	if len(c.Sync.Files) > MaxSyncFiles {
		p = append(p, fmt.Sprintf("sync.files lists %d files: at most %d", len(c.Sync.Files), MaxSyncFiles))
	}
	seen := map[string]bool{}
	for _, f := range c.Sync.Files {
		switch {
		case !filepath.IsAbs(f):
			p = append(p, fmt.Sprintf("sync.files: %q must be an absolute path", f))
			continue
		case filepath.Clean(f) != f:
			p = append(p, fmt.Sprintf("sync.files: %q must be a clean path (%s)", f, filepath.Clean(f)))
			continue
		case seen[f]:
			p = append(p, fmt.Sprintf("sync.files: %s is listed twice", f))
		case strings.HasSuffix(f, ".tandem-prev"):
			p = append(p, fmt.Sprintf("sync.files: %s is where a replaced copy is kept; list the file itself", f))
		}
		seen[f] = true
		// tandemd's own files differ between the nodes on purpose (node
		// name, keys, PostgreSQL's data): never carried.
		for _, dir := range []struct{ key, path string }{{"state_dir", c.StateDir}, {"postgres.data_dir", c.Postgres.DataDir}} {
			if dir.path != "" && (f == dir.path || strings.HasPrefix(f, strings.TrimSuffix(dir.path, "/")+"/")) {
				p = append(p, fmt.Sprintf("sync.files: %s is under %s (%s), whose files belong to each node alone", f, dir.key, dir.path))
			}
		}
		for _, own := range []struct{ key, path string }{
			{"quorum.etcd.ca_file", c.Quorum.Etcd.CAFile}, {"quorum.etcd.cert_file", c.Quorum.Etcd.CertFile},
			{"quorum.etcd.key_file", c.Quorum.Etcd.KeyFile}, {"metrics.token_file", c.Metrics.TokenFile},
		} {
			if own.path != "" && f == own.path {
				p = append(p, fmt.Sprintf("sync.files: %s is this node's %s, which is each node's own", f, own.key))
			}
		}
		if filepath.Base(f) == "tandemd.yaml" || filepath.Base(f) == "witness.yaml" {
			p = append(p, fmt.Sprintf("sync.files: %s looks like tandemd's own configuration, which names each node: it is not carried", f))
		}
	}
	return p
}
