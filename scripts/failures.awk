# Reads `go test -v` output and, for each test that failed, prints the
# last lines it printed, then one line naming them all: CI keeps only the
# end of a run's output, and the end-to-end tier prints a lot.
/^=== (RUN|CONT|NAME|PAUSE) / { cur = $3; next }
/^ *--- FAIL: / { failed[++nf] = $3; names = names " " $3; next }
{
	if (cur != "") {
		ring[cur, cnt[cur] % keep] = $0
		cnt[cur]++
	}
}
BEGIN { keep = 10 }
END {
	if (nf == 0) exit
	print "== the failed tests' last lines"
	for (i = 1; i <= nf; i++) {
		n = failed[i]
		print "--- FAIL: " n
		c = cnt[n] + 0
		for (j = (c > keep ? c - keep : 0); j < c; j++) print ring[n, j % keep]
	}
	print "== failed:" names
}
