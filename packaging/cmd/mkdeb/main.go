// Command mkdeb builds tandem's .deb from binaries built beforehand; see
// scripts/package.sh.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/tandem-ha/tandem/packaging"
)

func main() {
	var d packaging.Deb
	out := flag.String("out", "dist", "directory to write the package into")
	flag.StringVar(&d.Version, "version", "", "package version, such as 0.1.0")
	flag.StringVar(&d.Arch, "arch", "", "amd64 or arm64 (GOARCH of the binaries)")
	flag.StringVar(&d.Tandemd, "tandemd", "", "path of the built tandemd")
	flag.StringVar(&d.Witness, "witness", "", "path of the built tandem-witness")
	flag.StringVar(&d.Tandem, "tandem", "", "path of the built tandem console")
	flag.Parse()
	if flag.NArg() > 0 || d.Version == "" || d.Arch == "" || d.Tandemd == "" || d.Witness == "" || d.Tandem == "" {
		fmt.Fprintln(os.Stderr, "usage: mkdeb -version V -arch amd64|arm64 -tandemd PATH -witness PATH -tandem PATH [-out DIR]")
		os.Exit(2)
	}
	path, err := packaging.Build(d, *out)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkdeb:", err)
		os.Exit(1)
	}
	fmt.Println(path)
}
