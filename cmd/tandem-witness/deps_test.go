package main

import (
	"os/exec"
	"strings"
	"testing"
)

// The witness's program exists to map less memory than tandemd: it must
// not link what only a node needs. A new import that pulls one of these
// in puts the witness back over its memory target (docs/quorum.md).
func TestLinksNoNodeParts(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = "/usr/local/go/bin/go"
	}
	out, err := exec.Command(goTool, "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list -deps listed only %v", deps)
	}
	for _, dep := range deps {
		for _, banned := range []string{
			"github.com/jackc/pgx",
			"github.com/vishvananda/netlink",
			"github.com/mdlayher/",
			"github.com/tandem-ha/tandem/internal/cluster",
			"github.com/tandem-ha/tandem/internal/console",
			"github.com/tandem-ha/tandem/internal/postgres",
			"github.com/tandem-ha/tandem/internal/clusterip",
			"github.com/tandem-ha/tandem/internal/webui",
			"github.com/tandem-ha/tandem/internal/daemon",
		} {
			if strings.HasPrefix(dep, banned) {
				t.Errorf("tandem-witness links %s", dep)
			}
		}
	}
	if !strings.Contains(string(out), "go.etcd.io/etcd/server/v3/embed") {
		t.Error("tandem-witness does not link etcd's embed: the witness is not in it")
	}
}
