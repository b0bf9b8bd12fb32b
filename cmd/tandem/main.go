// Command tandem is the operator's console; see `tandem --help`.
package main

import (
	"os"

	"github.com/tandem-ha/tandem/internal/console"
)

func main() { os.Exit(console.Main(os.Args[1:], os.Stdout, os.Stderr)) }
