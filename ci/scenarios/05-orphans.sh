#!/bin/bash
# 05-orphans: persistent locks outlive their process. A process on node 1
# takes a PERSISTENT EX lock and exits without releasing it: the lock
# becomes an orphan, still held (node 2's try is refused). Another process
# on node 1 adopts the orphan (adopting it in another mode is refused) and
# unlocks it: node 2 then gets it. A second orphan is removed by a purge
# on node 1 (dlm_ls_purge of node 1, owner pid 0 = every owner: the kernel
# records the requesting thread's id as owner); a third by a purge sent
# from node 2 for node 1's orphans.
. "$(dirname "$0")/../lib/scenario.sh"
scenario "orphans on 2 nodes: a persistent lock survives its process, is adopted, is purged"
start_cluster 2

step "node 1: a process takes a persistent EX lock on orphan1 and exits"
on 1 "$DLM_LOCK" -t --persistent --orphan orphan1
expect "it exits 0" 0 "$JOB_RC"
check "it left the lock as an orphan" out_has '^orphaned [0-9]+$'
on 2 "$DLM_LOCK" -t --try orphan1
expect "node 2 cannot get orphan1 (try refused)" 1 "$JOB_RC"
check "... would-block" out_has '^would-block$'

step "node 1: another process adopts the orphan and unlocks it"
on 1 "$DLM_LOCK" -t --adopt --mode PR orphan1
expect "adopting it in another mode (PR) is refused" 5 "$JOB_RC"
check "... orphan-mode-mismatch" out_has '^orphan-mode-mismatch$'
on 1 "$DLM_LOCK" -t --adopt --mode EX orphan1
expect "adopting it in EX works, and the unlock too" 0 "$JOB_RC"
check "... adopted EX, released" eval 'out_has "^adopted EX$" && out_has "^released$"'
on 2 "$DLM_LOCK" -t --try orphan1
expect "node 2 now gets orphan1 (try)" 0 "$JOB_RC"
check "... granted EX" out_has '^granted EX$'
on 1 "$DLM_LOCK" -t --adopt orphan1
expect "no orphan is left to adopt" 5 "$JOB_RC"
check "... no-orphan" out_has '^no-orphan$'

step "node 1: a second orphan, purged on node 1"
on 1 "$DLM_LOCK" -t --persistent --orphan orphan2
check "orphan2 left as an orphan" out_has '^orphaned [0-9]+$'
on 2 "$DLM_LOCK" -t --try orphan2
expect "node 2 cannot get orphan2" 1 "$JOB_RC"
on 1 "$DLM_LOCK" -t --purge 1 0
expect "node 1 purges its own orphans" 0 "$JOB_RC"
check "... purged 1 0" out_has '^purged 1 0$'
on 2 "$DLM_LOCK" -t --try orphan2
expect "node 2 now gets orphan2 (try)" 0 "$JOB_RC"

step "node 1: a third orphan, purged from node 2"
on 1 "$DLM_LOCK" -t --persistent --orphan orphan3
check "orphan3 left as an orphan" out_has '^orphaned [0-9]+$'
on 2 "$DLM_LOCK" -t --try orphan3
expect "node 2 cannot get orphan3" 1 "$JOB_RC"
on 2 "$DLM_LOCK" -t --purge 1
expect "node 2 asks node 1 to purge its orphans" 0 "$JOB_RC"
# A purge of another node's orphans is a message to that node: the call
# returns before it is carried out, so wait for the lock.
on 2 "$DLM_LOCK" -t --timeout 20 orphan3
expect "node 2 then gets orphan3" 0 "$JOB_RC"
check "... granted EX" out_has '^granted EX$'
no_panics
pass
