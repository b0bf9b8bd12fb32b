// Command tandem-witness is tandem's quorum witness; see
// `tandem-witness --help`.
package main

import (
	"os"

	"github.com/tandem-ha/tandem/internal/witness"
)

func main() { os.Exit(witness.Main()) }
