#!/bin/sh
# The README's second command: install what is missing, then run every test
# tier. As root it includes the end-to-end tier in the lab; otherwise that
# tier is skipped with a message (and under CI=true, not being root fails).
set -eu
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"

./scripts/deps.sh
echo "== vet and build"
go vet ./...
go vet -tags e2e ./...
go build ./...
echo "== console cross-compiles for Windows and macOS"
GOOS=windows GOARCH=amd64 go build -o /dev/null ./cmd/tandem
GOOS=darwin GOARCH=arm64 go build -o /dev/null ./cmd/tandem
echo "== unit and integration tests"
go test -count=1 ./...
if [ "$(id -u)" = 0 ]; then
	echo "== end-to-end tests in the lab"
	go test -count=1 -tags e2e -timeout 75m -v ./e2e/...
elif [ "${CI:-}" = true ]; then
	echo "the end-to-end tier needs root; CI must run as root" >&2
	exit 1
else
	echo "== end-to-end tests skipped: they need root (sudo ./scripts/test.sh)"
fi
echo "== all tests passed"
