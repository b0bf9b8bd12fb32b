// Package version is tandem's own version, set at build time with
// -ldflags "-X github.com/tandem-ha/tandem/internal/version.Version=…".
package version

// Version of tandemd and the console.
var Version = "0.1.0-dev"
