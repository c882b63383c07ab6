#!/bin/bash
# 01-exclusion: an EX lock on node 1 excludes node 2 until node 1 unlocks.
# Node 2's try (NOQUEUE) is refused with would-block; node 2's waiting
# request is granted only after node 1 unlocks. The order is proved by
# events, seen by the host in the nodes' live output: node 1 is told
# (blocking notification) that node 2's request waits; node 2 has no grant
# while node 1 still holds; when node 2's grant appears, node 1's
# "unlocking" (written before its unlock is sent) is already there.
. "$(dirname "$0")/../lib/scenario.sh"
scenario "exclusion across 2 nodes: try refused, waiter granted only after the unlock"
start_cluster 2

step "node 1 takes EX on res1 and holds it, listening for blocking notifications"
h1=$(spawn 1 "$DLM_LOCK" -t --notify --hold-until-file "$WORK/release-1" res1)
wait_for_line "$h1" '^granted EX$' 30

step "node 2 tries EX without waiting"
on 2 "$DLM_LOCK" -t --try res1
expect "node 2's try exits 1" 1 "$JOB_RC"
check "node 2's try says would-block" out_has '^would-block$'

step "node 2 asks for EX and waits"
w2=$(spawn 2 "$DLM_LOCK" -t res1)
wait_for_line "$w2" '^requesting EX$' 30
# The blocking notification on node 1 is the DLM's own word that node 2's
# request is queued behind node 1's lock.
wait_for_line "$h1" '^blocking$' 30
no_line "$w2" '^granted' "node 2 is not granted while node 1 holds EX"
check "node 1 still holds EX (its job runs on)" eval '! job_done "$h1"'

step "node 1 unlocks"
release "$WORK/release-1"
wait_for_line "$w2" '^granted EX$' 30
# Event lines reach the shared file system when they are written (hostfs
# writes through to the host), and node 1 writes "unlocking" before it
# sends the unlock: if node 2 had been granted first, its grant could be
# read here while node 1's file still lacked that line.
check "node 1 had begun to unlock when node 2's grant was read" has_line "$h1" '^unlocking$'
wait_for_line "$h1" '^released$' 30

wait_job "$h1" 30
expect "node 1's holder exits 0" 0 "$JOB_RC"
wait_job "$w2" 30
expect "node 2's waiter exits 0" 0 "$JOB_RC"
check "node 2's waiter released" has_line "$w2" '^released$'
no_panics
pass
