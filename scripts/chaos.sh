#!/bin/sh
# The whole fault suite: every scenario of docs/faults.md, each
# TANDEM_CHAOS_RUNS times (default 5), in fresh labs. A failed run keeps
# its history and logs and prints where. Takes hours at 5 runs.
set -eu
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
./scripts/deps.sh
TANDEM_CHAOS=full TANDEM_CHAOS_RUNS="${TANDEM_CHAOS_RUNS:-5}" \
	go test -tags e2e -count=1 -timeout 12h -run '^TestChaos$' -v ./e2e/
