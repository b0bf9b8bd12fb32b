// Package e2e holds tandem's end-to-end tests. They drive the built tandem
// and tandemd binaries in the lab (real namespaces, DNS, PostgreSQL), need
// root, and build only with the e2e tag:
//
//	sudo go test -tags e2e -count=1 -v ./e2e/
//
// TANDEM_BIN_DIR points them at prebuilt binaries instead of building.
package e2e
