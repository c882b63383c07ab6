#!/bin/bash
# 10-executor-stall: how long the crate's futures block an executor's
# thread while a peer crashes. Node 1 runs stall-probe (package dlm-chaos):
# one current-thread tokio runtime with a ticker task and four workers
# taking, trying, timing out and dropping requests on 24 resources, some
# mastered by node 3, one held EX by node 3. Node 3 crashes 8 s in; the
# survivors recover (quorum: 2 of 3). The probe prints the longest stall of
# its thread each second; this scenario measures it before the crash and
# through the recovery, and checks that the futures went on working after
# it. The bound it checks is the one the crate documents for a recovery.
. "$(dirname "$0")/../lib/scenario.sh"
scenario "executor stall: futures on one thread while a peer crashes and the DLM recovers"
PROBE=$BINS/stall-probe
[ -x "$PROBE" ] || fail "$PROBE is missing: cargo build -p dlm-chaos --bins"
start_cluster 3

step "node 3 holds EX on probe1, which node 1's probe will ask for"
h=$(spawn 3 "$DLM_LOCK" -t --mode EX --hold-until-file "$WORK/never" probe1)
wait_for_line "$h" '^granted EX$' 30

step "the probe runs on node 1 for 40 s"
p=$(spawn 1 "$PROBE" dlm-lock 40 24)
wait_for_line "$p" '^second ' 30
sleep 7

step "node 3 crashes"
crash 3
wait_job "$p" 120
expect "the probe exits 0" 0 "$JOB_RC"
job_out "$p" | grep -v '^second ' | sed 's/^/   /'
crash_t=$CRASHED_AT
stalls() {
	job_out "$p" | awk -v c="$crash_t" -v from="$1" -v to="$2" '
		$1 == "second" && $2 - c >= from && $2 - c < to { if ($4 > m) m = $4; n++ }
		END { printf "%.1f ms over %d s", m, n }'
}
before=$(stalls -100 0)
during=$(stalls 0 25)
after=$(stalls 25 100)
measure "executor stall (longest block of the runtime's thread): before the crash $before; crash to +25 s $during; after $after"
ops_after=$(job_out "$p" | awk -v c="$crash_t" '$1 == "second" && $2 - c >= 25 { s += $6 } END { print s + 0 }')
check "the futures went on after the recovery ($ops_after operations)" test "$ops_after" -gt 0
no_panics
pass
