#!/bin/bash
# 04-node-failure: a node holding EX fails. Node 2 holds EX on res4 with an
# LVB it wrote under EX (set, published by a conversion to NL, and EX
# taken again); node 1 waits for EX on res4; node 2 is crashed (its kernel
# killed, no shutdown). Corosync and dlm_controld on the survivors (3
# nodes: quorum survives) remove node 2, the DLM recovers, and node 1's
# waiting request is granted, with the LVB marked not valid (its last
# writer died holding EX). A keeper NL lock on node 3 keeps the resource
# and its LVB alive. The time from the crash to node 1's grant is measured.
. "$(dirname "$0")/../lib/scenario.sh"
scenario "node failure on 3 nodes: the EX holder crashes, the waiter is granted, LVB not valid"
start_cluster 3

value=$(hex "written by node 2 under EX")

step "node 3 keeps an NL lock on res4 (with the LVB)"
k=$(spawn 3 "$DLM_LOCK" -t --mode NL --lvb-read --hold-until-file "$WORK/keeper" res4)
wait_for_line "$k" '^granted NL$' 30

step "node 2 takes EX, writes the LVB, converts EX -> NL -> EX, and holds"
h2=$(spawn 2 "$DLM_LOCK" -t --mode EX --notify --lvb-write "written by node 2 under EX" \
	--convert NL --convert EX --hold-until-file "$WORK/never" res4)
wait_for_line "$h2" '^converted EX$' 30
check "node 2 reads back its own value, valid, holding EX" has_line "$h2" "^lvb valid $value\$"

step "node 1 asks for EX and waits"
w1=$(spawn 1 "$DLM_LOCK" -t --mode EX --lvb-read res4)
wait_for_line "$w1" '^requesting EX$' 30
wait_for_line "$h2" '^blocking$' 30
no_line "$w1" '^granted' "node 1 is not granted while node 2 holds EX"

step "node 2 crashes"
crash 2
wait_for_line "$w1" '^granted EX$' 120
t_grant=$(line_time "$w1" '^granted EX$')
c2g=$(elapsed "$CRASHED_AT" "$SEEN_AT")
measure "crash-to-grant: $c2g s (host clock, 50 ms polling; by node 1's own stamp: $(elapsed "$CRASHED_AT" "$t_grant") s)"
check "node 1's grant was read after the crash" earlier "$CRASHED_AT" "$SEEN_AT"
check "node 1 reads the LVB marked not valid" has_line "$w1" '^lvb not-valid [0-9a-f]{64}$'
echo "   node 1's LVB line: $(job_out "$w1" | grep ' lvb ' | cut -d' ' -f2-)"
wait_job "$w1" 30
expect "node 1's request exits 0 (granted, released)" 0 "$JOB_RC"
check "node 1 released" has_line "$w1" '^released$'

step "the survivors go on"
on 1 dlm_tool ls
check "node 1's lockspace members are 1 and 3" out_has '^members +1 3 *$'
on 3 "$DLM_LOCK" -t --mode PR --lvb-read res4
expect "node 3 gets PR" 0 "$JOB_RC"
check "... and the LVB is still not valid (nobody has written it since)" out_has '^lvb not-valid '
on 3 "$DLM_LOCK" -t --mode EX --lvb-write "rewritten by node 3" res4
expect "node 3 rewrites the LVB under EX" 0 "$JOB_RC"
on 1 "$DLM_LOCK" -t --mode PR --lvb-read res4
check "node 1 reads node 3's value, valid again" out_has "^lvb valid $(hex "rewritten by node 3")\$"

release "$WORK/keeper"
wait_job "$k" 30
expect "node 3's keeper exits 0" 0 "$JOB_RC"
no_panics
pass
