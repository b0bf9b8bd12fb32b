// Command tandemd is tandem's HA service; see `tandemd --help`.
package main

import (
	"os"

	"github.com/tandem-ha/tandem/internal/daemon"
)

func main() { os.Exit(daemon.Main()) }
