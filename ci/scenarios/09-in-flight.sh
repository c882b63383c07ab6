#!/bin/bash
# 09-in-flight: node 2 takes 1,000 locks whose master is node 1 with all
# requests in flight at once, from one thread (futures joined). Node 1
# first takes each resource in EX, which makes it their master and keeps
# every request of node 2 waiting: node 2's program reports when all 1,000
# are written and none answered. Node 1 then unlocks them all; node 2 is
# granted all 1,000; node 1 sees them held (its try is refused); node 2
# releases them all at once, and node 1 can take them.
. "$(dirname "$0")/../lib/scenario.sh"
scenario "1,000 requests in flight from one thread on node 2, mastered by node 1"
start_cluster 2
MANY=$EXAMPLES/many-in-flight
n=1000

step "node 1 masters $n resources and holds them in EX"
m=$(spawn 1 "$MANY" master inflight r "$n" "$WORK/release-1")
wait_for_line "$m" "^mastered $n\$" 120

step "node 2 asks for all $n in EX at once: all wait"
a=$(spawn 2 "$MANY" acquire inflight r "$n" "$WORK/release-2")
wait_for_line "$a" "^in flight $n\$" 120
no_line "$a" '^granted' "node 2 has no grant while node 1 holds them"

step "node 1 unlocks them; node 2 is granted all $n"
release "$WORK/release-1"
wait_for_line "$a" "^granted $n in [0-9]+ ms\$" 120
measure "node 2, remote master, $n in flight: $(job_out "$a" | grep '^granted')"
wait_job "$m" 60
expect "node 1's master exits 0" 0 "$JOB_RC"

step "node 1 sees them held"
on 1 "$DLM_LOCK" -t --try --lockspace inflight r500 EX
expect "node 1's try on r500 exits 1 (would block)" 1 "$JOB_RC"
check "... would-block" out_has '^would-block$'

step "node 2 releases them all at once; node 1 takes one"
release "$WORK/release-2"
wait_for_line "$a" '^released$' 120
wait_job "$a" 60
expect "node 2's program exits 0" 0 "$JOB_RC"
on 1 "$DLM_LOCK" -t --try --lockspace inflight r999 EX
expect "node 1's try on r999 exits 0" 0 "$JOB_RC"
no_panics
pass
