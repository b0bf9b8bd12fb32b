# Reads `go test -v` output and, for each test that failed, prints the
# last lines it printed before the lab's logs were dumped (the failure
# message is there; the dump itself would push it out), then one line
# naming them all: CI keeps only the end of a run's output, and the
# end-to-end tier prints a lot.
/^=== (RUN|CONT|NAME|PAUSE) / { cur = $3; next }
/^ *--- FAIL: / { failed[++nf] = $3; names = names " " $3; next }
{
	if (cur != "" && !dumped[cur]) {
		# harness_test.go's dumpLogs starts each file with "=== <path>".
		if ($0 ~ /^ +harness_test\.go:[0-9]+: === /) {
			dumped[cur] = 1
			next
		}
		ring[cur, cnt[cur] % keep] = $0
		cnt[cur]++
	}
}
BEGIN { keep = 16 }
END {
	if (nf == 0) exit
	print "== the failed tests' last lines before their lab logs"
	for (i = 1; i <= nf; i++) {
		n = failed[i]
		print "--- FAIL: " n
		c = cnt[n] + 0
		for (j = (c > keep ? c - keep : 0); j < c; j++) print ring[n, j % keep]
	}
	print "== failed:" names
}
