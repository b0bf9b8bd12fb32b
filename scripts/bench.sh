#!/bin/sh
# The benchmark: switchover and failover write outages through the cluster
# IP, the failover command with the primary powered off (typed command →
# its return, → the first acknowledged write), streaming after a partition
# heals (heal → `tandem status` shows streaming), the write gap of a live
# reload of tandemd on the primary, rejoin and clone times, catch-up rate,
# console latency, tandemd memory and idle CPU, in the lab. Prints a table (median, 95th percentile, worst,
# best) with the machine named; the full log goes to $TANDEM_BENCH_LOG
# (default /tmp/tandem-bench.log). Environment: TANDEM_BENCH_SWITCHOVERS
# (20), TANDEM_BENCH_RUNS (5, the other short measurements),
# TANDEM_BENCH_DB_MB (1024), TANDEM_BENCH_BIG_RUNS (3; 0 leaves the 1 GiB
# measurements out), TANDEM_BENCH_PGBENCH_MINUTES (0: off; N adds N
# minutes of pgbench on an automatic-mode cluster, counting fences and
# failovers). Automatic failover mode adds its own lab: power-off →
# first acknowledged write, tandemd's and the witness's memory. Run it on a quiet
# machine: a build alongside doubles the switchover gap on 2 cores.
set -eu
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
log="${TANDEM_BENCH_LOG:-/tmp/tandem-bench.log}"
./scripts/deps.sh
echo "benchmark running; log in $log"
if TANDEM_BENCH=1 go test -tags e2e -count=1 -timeout 4h -run '^TestBenchmark$' -v ./e2e/ >"$log" 2>&1; then
	grep -E '^(machine:|\|)' "$log"
else
	tail -60 "$log"
	echo "benchmark FAILED; full log in $log" >&2
	exit 1
fi
