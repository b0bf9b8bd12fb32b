#!/bin/sh
# The README's second command: install what is missing, then vet, lint
# (staticcheck) and run every test tier, the unit and integration tiers
# under the race detector, then each fuzz target briefly. As root it includes the end-to-end tier in the
# lab; otherwise that tier is skipped with a message (and under CI=true, not
# being root fails).
set -eu
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"

./scripts/deps.sh --test
gobin="$(go env GOBIN)"
[ -n "$gobin" ] || gobin="$(go env GOPATH | cut -d: -f1)/bin"
echo "== vet and staticcheck"
go vet ./...
go vet -tags e2e,crashhook ./...
# Every package, with and without the e2e and crashhook build tags (the
# crash hook of the test builds); nothing is excluded.
"$gobin/staticcheck" ./...
"$gobin/staticcheck" -tags e2e,crashhook ./...
echo "== build"
go build ./...
echo "== console cross-compiles for Windows and macOS"
GOOS=windows GOARCH=amd64 go build -o /dev/null ./cmd/tandem
GOOS=darwin GOARCH=arm64 go build -o /dev/null ./cmd/tandem
echo "== unit and integration tests, with the race detector"
CGO_ENABLED=1 go test -race -count=1 ./...
echo "== fuzz targets, ${FUZZTIME:-8s} each"
# The unit tests above already ran every seed corpus (and any crash kept in
# testdata/fuzz); this explores further for a short while. A failure leaves
# the input in the package's testdata/fuzz/: commit it as a regression test.
# Minimizing a new input is capped, or it stalls the run for up to a minute.
fuzz() {
	go test -run '^$' -fuzz "^$1\$" -fuzztime "${FUZZTIME:-8s}" -fuzzminimizetime 1s "$2"
}
fuzz FuzzParse ./internal/config
fuzz FuzzEnv ./internal/config
fuzz FuzzDecode ./internal/api
fuzz FuzzConninfo ./internal/cluster
fuzz FuzzHBAPeers ./internal/postgres
if [ "$(id -u)" = 0 ]; then
	echo "== end-to-end tests in the lab"
	# The output is kept as well, to end the run with what failed
	# (scripts/failures.awk).
	# In the clone, not in /tmp: the run itself cleans temporary files.
	e2elog="$PWD/.e2e-output.log"
	# Test artifacts (the web console's screenshots of each step) are kept
	# in .e2e-artifacts/ of the clone (go test wants the directory there).
	mkdir -p .e2e-artifacts
	{ go test -count=1 -tags e2e -timeout 75m -v -artifacts -outputdir "$PWD/.e2e-artifacts" ./e2e/... 2>&1; echo $? >"$e2elog.rc"; } | tee "$e2elog"
	rc="$(cat "$e2elog.rc" 2>/dev/null || echo 1)"
	if [ "$rc" != 0 ]; then
		awk -f scripts/failures.awk "$e2elog"
		rm -f "$e2elog" "$e2elog.rc"
		exit "$rc"
	fi
	rm -f "$e2elog" "$e2elog.rc"
elif [ "${CI:-}" = true ]; then
	echo "the end-to-end tier needs root; CI must run as root" >&2
	exit 1
else
	echo "== end-to-end tests skipped: they need root (sudo ./scripts/test.sh)"
fi
echo "== all tests passed"
