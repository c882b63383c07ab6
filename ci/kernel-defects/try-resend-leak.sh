#!/bin/bash
# A defect of the kernel's DLM, shown with the plain command-line tool (no
# crate code in the path but dlm-lock's one request): a lock record the
# kernel never frees, which makes every later non-forced release of the
# lockspace on that node fail with EBUSY. Not part of ci/test; run it on
# purpose:
#
#   ci/multinode -v ci/kernel-defects/try-resend-leak.sh
#
# The sequence: node 1 masters a resource (it holds NL on it), node 2
# holds EX on it, node 1 crashes. Node 2 makes a try (NOQUEUE) request on
# the resource: it goes to the dead master and waits. The recovery makes
# node 2 the new master and resends the request on node 2 itself; there it
# is refused (EAGAIN: node 2's own EX is in the way) and dlm-lock reports
# would-block, but the request's lock record (lkb) is never freed. Nothing
# shows it (an EX request on the resource is granted once node 2's EX is
# released), except that the lockspace stays busy: once node 3 has left,
# node 2, the only member, holding no lock, cannot release it without
# force. A resend to a remote new master goes through the request's reply
# instead and frees it.
#
# Found by the chaos suite (the end-of-run "release refused" of
# RELIABILITY.md): in every failing run, the refusing node had become the
# new master of a dead node's resources while one of its tries was in
# flight to it, and that try ended would-block. Seen on Linux 6.1.176
# (Debian 12's user-mode Linux). In the fs/dlm/lock.c read for this,
# dlm_recover_waiters_post resends with _request_lock and ignores its
# result; a local refusal only queues the EAGAIN completion, and nothing
# drops the lock's creation reference (dlm_user_request's and
# receive_request_reply's refusals do). Inferred from the code and the
# kernel's debug log, not traced in 6.1.176 itself.
#
# The script passes when it has shown the defect (node 2's non-forced
# release refused while it is the only member and holds nothing) and
# fails otherwise: a kernel that frees the lock makes it fail, and the
# crate's docs ("When the cluster fails") should then be updated. Then it
# shows that the chaos suite's end of run tells the defect from a lock
# left, on a hand-built run directory: chaos-worker prove-free finds
# nothing on node 2 and chaos-check counts the refusal as the known
# defect; with an NL orphan left on node 2, or an EX held on node 3, both
# are a violation.
. "$(dirname "$0")/../lib/scenario.sh"
scenario "kernel defect: a try resent by the recovery to the new, local master and refused there leaks its lock record"
export DLM_CLUSTER_FENCING=1
export DLM_UML_LOGLEVEL=4
start_cluster 3
L="--lockspace chaos"
CW=$BINS/chaos-worker
mkdir -p "$WORK/cw"
chmod 777 "$WORK/cw"
echo 3 >"$WORK/cw/nodes"
step "node 1 masters res (NL), node 2 holds res in EX, node 3 is a member"
h1=$(spawn 1 "$DLM_LOCK" $L --mode NL --hold-until-file "$WORK/never" res)
wait_for_line "$h1" '^granted NL$' 30
h2=$(spawn 2 "$DLM_LOCK" $L --mode EX --hold-until-file "$WORK/rel2" res)
wait_for_line "$h2" '^granted EX$' 30
h3=$(spawn 3 "$DLM_LOCK" $L --mode EX --hold-until-file "$WORK/rel3" member3)
wait_for_line "$h3" '^granted EX$' 30
crash 1
step "node 2: a try in EX on res, sent to the dead master"
t=$(spawn 2 "$DLM_LOCK" $L --try res EX)
wait_job "$t" 120
ok "the try ended with status $JOB_RC: $(job_out "$t" | tr '\n' ' ')"
step "every lock released; node 3 leaves the lockspace"
release "$WORK/rel2"
release "$WORK/rel3"
wait_job "$h2" 60
wait_job "$h3" 60
on 2 "$DLM_LOCK" $L --try res EX || true
expect "node 2: nothing holds res (a try in EX is granted)" 0 "$JOB_RC"
# As at the end of a chaos run: every node purges its orphans before any
# release (node 1 crashed: the recovery removed its locks).
on 2 "$CW" purge "$WORK/cw" 2 || true
on 3 "$CW" purge "$WORK/cw" 3 || true
echo "ok node 1 crashed: the recovery removed its locks" >"$WORK/cw/final/purge-n1"
on 3 "$CW" release "$WORK/cw" 3 || true
expect "node 3 released the lockspace" 0 "$JOB_RC"
sleep 3
step "node 2, the only member, holding nothing, releases without force"
on 2 "$CW" release "$WORK/cw" 2 || true
expect "node 2's release refused" 1 "$JOB_RC"
check "refused as busy (EBUSY)" grep -q 'EBUSY' "$WORK/cw/final/release-n2"
sed 's/^/   release-n2: /' "$WORK/cw/final/release-n2"

# The chaos suite's end of run (chaos-worker prove-free, chaos-check)
# on this hand-built run directory: the names it probes are a 3-node
# run's (r0-r3, o1-0..o3-2) and res, as the harness's hogs are.
step "the chaos suite's proof: nothing left on node 2, the known kernel defect"
mkdir -p "$WORK/cw/release" "$WORK/cw/rec"
: >"$WORK/cw/release/res"
: >"$WORK/cw/events"
echo "ok node 1 crashed" >"$WORK/cw/final/release-n1"
on 2 "$CW" prove-free "$WORK/cw" 2 workers-ended || true
expect "prove-free: no lock left (exit 0)" 0 "$JOB_RC"
check "the verdict is the known defect, with its evidence" \
	grep -q '^known kernel defect: .*\[refused=EBUSY names=14 free=14 orphans=0 purge=ok(3/3) workers=ended\]' "$WORK/cw/final/release-n2"
chaos_check() { # WANT: chaos-check's exit status; its report in OUT
	local rc=0
	OUT=$("$BINS/chaos-check" "$WORK/cw" 2>&1) || rc=$?
	grep -E '^(known kernel defect|  KNOWN DEFECT|violations|VIOLATION)' <<<"$OUT" | sed 's/^/   /'
	expect "chaos-check exits $1" "$1" "$rc"
}
chaos_check 0
check "chaos-check counts it as the known defect" out_has '^  KNOWN DEFECT: release-n2: known kernel defect'
check "and not as a violation" out_has '^violations: 0$'

step "a lock left is still a violation: an NL orphan on node 2 (which no EX try sees)"
on 2 "$DLM_LOCK" $L --persistent --orphan o2-0 NL || true
on 2 "$CW" prove-free "$WORK/cw" 2 workers-ended || true
expect "prove-free: a lock left (exit 1)" 1 "$JOB_RC"
check "every name free to the EX try, yet the orphan adopted (and orphaned again)" \
	grep -q '^FAILED .*free=14 orphans=1 .*orphans: o2-0 NL adopted (orphaned again)' "$WORK/cw/final/release-n2"
chaos_check 1
check "chaos-check: a violation" out_has '^VIOLATION: no lock left: release-n2: FAILED'
on 2 "$DLM_LOCK" $L --purge 0 || true

step "a lock left is still a violation: EX held on r1 by a process on node 3"
h4=$(spawn 3 "$DLM_LOCK" $L --mode EX --hold-until-file "$WORK/rel4" r1)
wait_for_line "$h4" '^granted EX$' 30
on 2 "$CW" prove-free "$WORK/cw" 2 workers-ended || true
expect "prove-free: a lock left (exit 1)" 1 "$JOB_RC"
check "r1 found held" grep -q '^FAILED .*free=13 orphans=0 .*held: r1: wouldblock' "$WORK/cw/final/release-n2"
chaos_check 1
check "chaos-check: a violation" out_has '^VIOLATION: no lock left: release-n2: FAILED .*held: r1'
release "$WORK/rel4"
wait_job "$h4" 60
pass
