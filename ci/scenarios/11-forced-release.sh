#!/bin/bash
# 11-forced-release: a lockspace released with force by another process
# of the node, on 2 nodes (issue 15, defect 3). Node 1's forced-probe
# (package dlm-chaos) holds EX on f1 through this crate; node 2 waits for
# EX on f1. Another process of node 1 (dlm_tool leave, which releases with
# force) releases the lockspace: the kernel removes the device, node 1
# leaves the lockspace's membership and node 2 is granted EX, while the
# kernel still waits for the probe's handle to close. The probe must see
# the loss within the bound the crate documents, and its handle must
# grant nothing more (before, it went on granting: both nodes held EX on
# the same resource). Once the probe exits, the release completes.
. "$(dirname "$0")/../lib/scenario.sh"
scenario "forced release on 2 nodes: the handle left behind grants nothing, the other node gets EX"
PROBE=$BINS/forced-probe
[ -x "$PROBE" ] || fail "$PROBE is missing: cargo build -p dlm-chaos --bins"
start_cluster 2

step "node 1's probe takes EX on f1 in lockspace forced"
p=$(spawn 1 "$PROBE" forced f1)
wait_for_line "$p" '^granted EX$' 30

step "node 2 asks for EX on f1 and waits"
w=$(spawn 2 "$DLM_LOCK" -t --lockspace forced --mode EX --hold-until-file "$WORK/w2" f1)
wait_for_line "$w" '^requesting EX$' 30
sleep 1
no_line "$w" '^granted' "node 2 waits while node 1 holds EX"

step "another process of node 1 releases the lockspace with force"
t0=$(now)
l=$(spawn 1 dlm_tool leave forced)
wait_for_line "$p" '^lost ' 30
measure "forced release to the probe seeing it: $(elapsed "$t0" "$SEEN_AT") s (host clock, 50 ms polling)"
check "the probe's handle says the lockspace is gone" has_line "$p" ' alive false$'
t_lost=$(job_out "$p" | awk '$1 == "lost" { print $2 }')
wait_for_line "$w" '^granted EX$' 60
t_grant=$(line_time "$w" '^granted EX$')
measure "node 2's grant came $(awk -v a="$t_lost" -v b="$t_grant" 'BEGIN { printf "%.3f", b - a }') s after the probe saw the loss (guest clocks: the host's)"

step "node 1's handle grants nothing more"
wait_job "$p" 30
expect "the probe exits 0" 0 "$JOB_RC"
job_out "$p" | sed -E 's/^[0-9]+\.[0-9]+ //; s/^/   probe: /'
check "its guard's notifications say the lockspace is gone" has_line "$p" '^blocking Err\(LockspaceGone\)$'
check "a timed lock is refused: LockspaceGone" has_line "$p" '^relock timed Err\(LockspaceGone\)$'
check "a try is refused: LockspaceGone" has_line "$p" '^relock try Err\(LockspaceGone\)$'
check "a future is refused: LockspaceGone" has_line "$p" '^relock async Err\(LockspaceGone\)$'

step "the release completes once the probe has closed its handle"
wait_job "$l" 30
expect "dlm_tool leave exits 0" 0 "$JOB_RC"
release "$WORK/w2"
wait_job "$w" 30
expect "node 2's lock exits 0 (granted, released)" 0 "$JOB_RC"
no_panics
pass
