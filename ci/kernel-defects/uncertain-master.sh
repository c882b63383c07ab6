#!/bin/bash
# A defect of the kernel's DLM, shown with the plain command-line tool (no
# crate code in the path but dlm-lock's one request): it PANICS THE NODE.
# Not part of ci/test; run it on purpose:
#
#   ci/multinode -v ci/kernel-defects/uncertain-master.sh
#
# The sequence: node 3 (a member of the lockspace) crashes; before the
# survivors notice, node 1 makes new requests. For a name whose directory
# node is node 3, the request waits for a master lookup that node 3 will
# never answer; it is cancelled (dlm-lock --timeout 1: timed-out). The
# recovery answers the cancel (ECANCEL) and leaves the name's resource in
# the kernel's unused list with no master known (res_nodeid -1). The next
# request on that name from node 1 takes the resource back from that list
# as "master uncertain", uses res_nodeid -1 as the master, and
# fs/dlm/lock.c:is_remote() fails DLM_ASSERT(r->res_nodeid >= 0): "Kernel
# panic - not syncing: DLM: Record message above and reboot."
#
# Seen on Linux 6.1.176 (Debian 12's user-mode Linux), every run. The code
# involved (find_rsb_dir's "master uncertain" path and set_master) is the
# same in the later kernels read for this; they were not run.
#
# The script passes when it has shown the defect (node 1 went down on a
# second request, with the assertion on its console) and fails otherwise:
# a kernel that no longer panics here makes it fail, and the crate's docs
# ("When the cluster fails") should then be updated.
. "$(dirname "$0")/../lib/scenario.sh"
scenario "kernel defect: a request on a name whose master lookup was cancelled during a recovery panics the node"
export DLM_CLUSTER_FENCING=1
export DLM_UML_LOGLEVEL=4
start_cluster 3
step "nodes 1 and 3 join the lockspace"
h3=$(spawn 3 "$DLM_LOCK" --mode EX --hold-until-file "$WORK/never" member3)
wait_for_line "$h3" '^granted EX$' 30
h1=$(spawn 1 "$DLM_LOCK" --mode EX --hold-until-file "$WORK/never" member1)
wait_for_line "$h1" '^granted EX$' 30
crash 3
step "node 1: 40 new requests at once, each given up after 1 s"
declare -a j
for i in $(seq 0 39); do
	j[i]=$(spawn 1 "$DLM_LOCK" --timeout 1 "rep$i" EX)
done
cancelled=()
for i in $(seq 0 39); do
	wait_job "${j[i]}" 60
	[ "$JOB_RC" = 3 ] && cancelled+=("rep$i")
done
ok "${#cancelled[@]} of 40 timed out (their lookup went to node 3): ${cancelled[*]}"
[ ${#cancelled[@]} -gt 0 ] || fail "no request waited for node 3: nothing to show"
step "node 1: a request on the first of them again"
on 1 "$DLM_LOCK" --try "${cancelled[0]}" EX || true
expect "node 1 went down (125)" 125 "$JOB_RC"
check "node 1's console has the assertion" grep -q 'assertion:  "r->res_nodeid >= 0"' "$DIR/node1/uml.log"
grep -A1 'Assertion failed' "$DIR/node1/uml.log" | sed 's/^/   console: /'
grep -m1 '^rsb: ' "$DIR/node1/uml.log" | sed 's/^/   console: /'
pass
