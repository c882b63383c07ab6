#!/bin/bash
# 08-ebusy: timed requests racing a remote holder's hand-overs. Node 1 is
# the resource's master (it asks first) and hands EX over every few
# milliseconds; node 2 asks for EX with a timeout close to node 1's hold
# time, many times, and unlocks or converts down at once after each grant.
# A grant that crosses node 2's cancel on the wire leaves the lock with an
# operation in progress, and the kernel answers the immediate unlock or
# conversion with EBUSY until it ends: the crate must retry (bounded), so
# every round ends granted or timed out, never with an error, and no lock
# is left behind.
. "$(dirname "$0")/../lib/scenario.sh"
scenario "EBUSY on 2 nodes: timed requests racing a remote master's hand-overs"
start_cluster 2
RACE=$EXAMPLES/timeout-race
rounds=${DLM_EBUSY_ROUNDS:-1000}

step "node 1 becomes the master of res8 and hands EX over $rounds times (3 ms holds)"
h=$(spawn 1 "$RACE" holder ebusy res8 "$rounds" 3)
wait_for_line "$h" '^holding$' 30

step "node 2: $rounds requests with a 3 ms timeout, each unlocked or converted at once"
t0=$(now)
r=$(spawn 2 "$RACE" racer ebusy res8 "$rounds" 3)
wait_job "$r" 240
expect "node 2's racer exits 0 (no error answer)" 0 "$JOB_RC"
echo "   racer: $(job_out "$r" | tail -n 1)"
busy=$(job_out "$r" | tail -n 1 | sed -n 's/.*busy-retries=\([0-9]*\).*/\1/p')
check "the kernel answered EBUSY at least once (the race was exercised): ${busy:-?} retries" test "${busy:-0}" -gt 0
wait_job "$h" 240
expect "node 1's holder exits 0" 0 "$JOB_RC"
measure "$rounds timed requests racing remote hand-overs: $(elapsed "$t0") s ($(job_out "$r" | tail -n 1 | cut -d' ' -f2-))"

step "the same racing with node 2 in poll mode (its answers read by the crate from the device)"
h=$(spawn 1 "$RACE" holder ebusy res8 "$rounds" 3)
wait_for_line "$h" '^holding$' 30
t0=$(now)
r=$(spawn 2 "$RACE" racer-poll ebusy res8 "$rounds" 3)
wait_job "$r" 240
expect "node 2's poll-mode racer exits 0 (no error answer)" 0 "$JOB_RC"
echo "   racer-poll: $(job_out "$r" | tail -n 1)"
busy=$(job_out "$r" | tail -n 1 | sed -n 's/.*busy-retries=\([0-9]*\).*/\1/p')
check "EBUSY was answered in poll mode too: ${busy:-?} retries" test "${busy:-0}" -gt 0
wait_job "$h" 240
expect "node 1's holder exits 0" 0 "$JOB_RC"
measure "$rounds poll-mode timed requests racing remote hand-overs: $(elapsed "$t0") s ($(job_out "$r" | tail -n 1 | cut -d' ' -f2-))"

step "the same racing with futures on node 2 (the handle's worker writes requests, cancels, conversions and unlocks; every third future dropped while it waits)"
h=$(spawn 1 "$RACE" holder ebusy res8 "$rounds" 3)
wait_for_line "$h" '^holding$' 30
t0=$(now)
r=$(spawn 2 "$RACE" racer-async ebusy res8 "$rounds" 3)
wait_job "$r" 240
expect "node 2's async racer exits 0 (no error answer)" 0 "$JOB_RC"
last=$(job_out "$r" | tail -n 1)
echo "   racer-async: $last"
busy=$(sed -n 's/.*busy-retries=\([0-9]*\).*/\1/p' <<<"$last")
check "the worker's writes met EBUSY and were tried again: ${busy:-?} retries" test "${busy:-0}" -gt 0
failures=$(sed -n 's/.*release-failures=\([0-9]*\).*/\1/p' <<<"$last")
check "no background release failed: ${failures:-?}" test "${failures:-1}" -eq 0
wait_job "$h" 240
expect "node 1's holder exits 0" 0 "$JOB_RC"
measure "$rounds timed futures racing remote hand-overs: $(elapsed "$t0") s ($(cut -d' ' -f2- <<<"$last"))"

step "nothing is left: node 1 can take EX at once"
on 1 "$DLM_LOCK" -t --try --lockspace ebusy res8
expect "node 1's try exits 0" 0 "$JOB_RC"
no_panics
pass
