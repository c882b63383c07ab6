#!/bin/bash
# 02-bast: blocking notifications (BASTs) cross nodes. Node 1 holds EX and
# listens for them; node 2 asks for PR; node 1 is notified and converts
# down to PR; node 2 is then granted PR while node 1 still holds PR. That
# both hold PR at once is proved by both programs still running, holding,
# and by the DLM itself: further PR requests with try succeed on both
# nodes, an EX request with try is refused.
. "$(dirname "$0")/../lib/scenario.sh"
scenario "blocking notification across 2 nodes: EX holder converts down to PR, both hold PR"
start_cluster 2

step "node 1 takes EX on res2, converts down to PR when notified"
h1=$(spawn 1 "$DLM_LOCK" -t --on-blocking downconvert:PR --hold-until-file "$WORK/release-1" res2)
wait_for_line "$h1" '^granted EX$' 30

step "node 2 asks for PR"
h2=$(spawn 2 "$DLM_LOCK" -t --mode PR --hold-until-file "$WORK/release-2" res2)
wait_for_line "$h1" '^blocking$' 30
wait_for_line "$h2" '^granted PR$' 30
# Node 1 prints "converting PR" before it asks for the conversion: node 2's
# grant cannot have been read before that line was written.
check "node 1 was converting to PR when node 2's grant was read" has_line "$h1" '^converting PR$'
wait_for_line "$h1" '^converted PR$' 30

step "both hold PR at once"
check "node 1 still holds (no unlock)" eval '! has_line "$h1" "^unlocking$" && ! job_done "$h1"'
check "node 2 still holds (no unlock)" eval '! has_line "$h2" "^unlocking$" && ! job_done "$h2"'
on 1 "$DLM_LOCK" -t --try --mode PR res2
expect "a third PR request (try) on node 1 is granted while both hold PR" 0 "$JOB_RC"
on 2 "$DLM_LOCK" -t --try --mode PR res2
expect "a PR request (try) on node 2 is granted while both hold PR" 0 "$JOB_RC"
on 2 "$DLM_LOCK" -t --try --mode EX res2
expect "an EX request (try) on node 2 is refused while they hold PR" 1 "$JOB_RC"
check "... with would-block" out_has '^would-block$'
check "node 1 and node 2 still hold PR after those requests" \
	eval '! job_done "$h1" && ! job_done "$h2"'
expect "node 1 was notified once" 1 "$(count_lines "$h1" '^blocking$')"

step "both release"
release "$WORK/release-1"
release "$WORK/release-2"
wait_job "$h1" 30
expect "node 1's holder exits 0" 0 "$JOB_RC"
wait_job "$h2" 30
expect "node 2's holder exits 0" 0 "$JOB_RC"
check "both released" eval 'has_line "$h1" "^released$" && has_line "$h2" "^released$"'
no_panics
pass
