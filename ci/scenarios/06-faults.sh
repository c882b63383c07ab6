#!/bin/bash
# 06-faults: dlm_controld dies (kill -9) on node 2 while a request waits
# there. The waiter (dlm-lock --timeout 3) must answer -- grant, timeout or
# error -- within a bounded time, never hang; a new request made on node 2
# after the kill too. A second waiter, an untimed future on a poll-mode
# handle driven by its own poll(2) and dispatch loop (poll-waiter, package
# dlm-chaos: it polls the future only when woken), must end with the
# lockspace stopped too (issue 15, defect 5). No program may panic. The
# survivor, node 1, removes node 2 and goes on granting locks.
#
# What the kernel does: when dlm_controld's monitor device closes, the DLM
# stops every lockspace of that node (dlm_stop_lockspaces), and a stopped
# lockspace blocks each request, cancel and unlock write in
# dlm_lock_recovery(), uninterruptibly, until a recovery that no daemon
# will ever run. The crate sees that state from outside without writing
# (the lockspace's /sys/kernel/dlm/NAME/recover_status reads 0 and
# nobody holds dlm_controld's pid-file lock, re-read as soon as the
# daemon exits: the crate's watchdog waits on a pidfd of it): the
# waiter's wait ends with "the lockspace is stopped ..." before its
# timeout's cancel would be written, and a new request fails at once,
# nothing sent. (Closing the handle still blocks in the kernel: the
# programs cannot exit until the node goes; a real cluster fences it.)
. "$(dirname "$0")/../lib/scenario.sh"
scenario "dlm_controld killed on node 2 while a request waits there: bounded answers, no panic"
POLL_WAITER=$BINS/poll-waiter
[ -x "$POLL_WAITER" ] || fail "$POLL_WAITER is missing: cargo build -p dlm-chaos --bins"
start_cluster 2
limit=10 # seconds: about a second to see the stall, and slack

step "node 1 holds EX on res6; node 2 waits for it with an untimed future on a poll-mode handle"
h1=$(spawn 1 "$DLM_LOCK" -t --notify --hold-until-file "$WORK/release-1" res6)
wait_for_line "$h1" '^granted EX$' 30
# The untimed waiter first: the timed one's 3 s run from its request on.
p2=$(spawn 2 "$POLL_WAITER" dlm-lock res6)
wait_for_line "$p2" '^pending$' 30
wait_for_line "$h1" '^blocking$' 30
step "node 2 also waits for res6 with --timeout 3"
w2=$(spawn 2 "$DLM_LOCK" -t --timeout 3 res6)
wait_for_line "$w2" '^requesting EX$' 30

step "kill -9 dlm_controld on node 2"
pid=$(cat "$DIR/node2/dlm_controld.pid")
t_kill=$(now)
on 2 sh -c "date +%s.%N && kill -9 $pid"
expect "dlm_controld (pid $pid in node 2) killed" 0 "$JOB_RC"
t_kill_guest=$(head -n 1 <<<"$OUT")
sleep 0.2 # the crate re-reads the state when the daemon exits
n2=$(spawn 2 "$DLM_LOCK" -t --timeout 3 res6-new)

step "the waiter on node 2 answers within ${limit} s"
wait_for_line "$w2" '^(granted|timed-out|would-block|deadlock|cancelled|error:)' "$limit"
measure "dlm_controld-kill-to-answer: $(elapsed "$t_kill" "$SEEN_AT") s, the waiter said '$LINE'"
check "the waiter was told the lockspace is stopped" has_line "$w2" '^error: .*stopped'
t_answer=$(line_time "$w2" '^error: .*stopped')
measure "by the guests' clocks (the host's): the waiter answered $(awk -v a="$t_kill_guest" -v b="$t_answer" 'BEGIN { printf "%.3f", b - a }') s after the kill"
step "the untimed poll-mode future on node 2 answers within ${limit} s"
wait_for_line "$p2" '^(granted|error:)' "$limit"
measure "dlm_controld-kill-to-answer of the untimed poll-mode future: $(elapsed "$t_kill" "$SEEN_AT") s, it said '$LINE'"
check "the poll-mode future was told the lockspace is stopped" has_line "$p2" '^error: .*stopped'
t_answer=$(line_time "$p2" '^error: .*stopped')
t_poll=$(awk -v a="$t_kill_guest" -v b="$t_answer" 'BEGIN { printf "%.3f", b - a }')
measure "by the guests' clocks (the host's): the poll-mode future answered $t_poll s after the kill"
check "... within ${limit} s of the kill (node 2's clock: $t_poll s)" awk -v t="$t_poll" -v l="$limit" 'BEGIN { exit !(t < l) }'
wait_for_line "$n2" '^(granted|timed-out|would-block|deadlock|cancelled|error:)' "$limit"
t_req=$(line_time "$n2" '^requesting EX$')
measure "a new request on node 2 after the kill: '$LINE' $(elapsed "$t_req" "$(line_time "$n2" '^error:')") s after it was made"
check "the new request failed at once: lockspace stopped" has_line "$n2" '^error: .*stopped'
# Where are they? A stuck thread sleeps in dlm_lock_recovery's down_read,
# called from dlm_user_cancel or dlm_user_request.
kernel_stacks 2 dlm-lock
sed 's/^/   node 2: dlm-lock pid, thread, state, kernel functions: /' <<<"$OUT"

step "node 1 removes node 2 and goes on"
release "$WORK/release-1"
wait_for_line "$h1" '^released$' 30
wait_job "$h1" 30
expect "node 1's holder exits 0" 0 "$JOB_RC"
on 1 "$DLM_LOCK" -t --timeout 30 res6
expect "node 1 gets res6 again" 0 "$JOB_RC"
check "... granted EX" out_has '^granted EX$'
on 1 dlm_tool ls
check "node 1's lockspace has node 1 alone" out_has '^members +1 *$'
no_panics
pass
