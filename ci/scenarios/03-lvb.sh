#!/bin/bash
# 03-lvb: lock value blocks across nodes. Node 1 publishes 32 bytes (binary,
# NUL and high bytes included) under EX; node 2 reads exactly those bytes
# under PR, marked valid. Then a counter in an LVB: lvb-counter increments
# it 100 times under EX on each of 3 nodes at the same time; the final
# value is 300. The DLM frees a resource's LVB when its last lock goes, so
# a keeper lock (on node 3) is held on each resource throughout; the
# counter's keeper first holds EX until all three counters wait for it.
. "$(dirname "$0")/../lib/scenario.sh"
scenario "LVB across 3 nodes: 32 bytes published and read; a 3-node counter reaches 300"
start_cluster 3

# 32 bytes: 00 08 10 ... f8.
value=$(printf '%02x' $(seq 0 8 248))
expect "the test value is 32 bytes" 64 "${#value}"

step "node 3 keeps an NL lock on lvb32 so that its LVB lives between holders"
k1=$(spawn 3 "$DLM_LOCK" -t --mode NL --lvb-read --hold-until-file "$WORK/keeper" lvb32)
wait_for_line "$k1" '^granted NL$' 30

step "node 1 writes the LVB under EX and releases (published by a conversion to NL)"
on 1 "$DLM_LOCK" -t --mode EX --lvb-write "0x$value" lvb32
expect "node 1's writer exits 0" 0 "$JOB_RC"
check "node 1 set $value" out_has "^set-lvb $value\$"

step "node 2 reads it under PR"
on 2 "$DLM_LOCK" -t --mode PR --lvb-read lvb32
expect "node 2's reader exits 0" 0 "$JOB_RC"
check "node 2 read exactly those 32 bytes, valid" out_has "^lvb valid $value\$"

step "counter: lvb-counter --increments 100 on nodes 1, 2 and 3, started together"
# The keeper on node 3 holds EX until all three counters wait for EX (each
# holds its NL lock and waits for its first conversion), then converts to
# NL and keeps the LVB alive: the three start at once.
k2=$(spawn 3 "$DLM_LOCK" -t --lockspace lvb-counter --mode EX --lvb-read \
	--wait-file "$WORK/go" --convert NL --hold-until-file "$WORK/keeper" counter)
wait_for_line "$k2" '^granted EX$' 30
c1=$(spawn 1 "$LVB_COUNTER" --increments 100)
c2=$(spawn 2 "$LVB_COUNTER" --increments 100)
c3=$(spawn 3 "$LVB_COUNTER" --increments 100)
# Waiting for the conversion: the main thread (pid = tid) parked in a
# futex, the AST thread reading the lockspace device.
waiting=
for ((i = 0; i < 60; i++)); do
	waiting=
	for k in 1 2 3; do
		kernel_stacks "$k" lvb-counter
		awk '$1 == $2' <<<"$OUT" | grep -q futex_wait && grep -q device_read <<<"$OUT" &&
			waiting="$waiting $k"
	done
	[ "$waiting" = " 1 2 3" ] && break
done
expect "the counters on nodes 1, 2, 3 all wait for EX behind the keeper" " 1 2 3" "$waiting"
t0=$(now)
release "$WORK/go"
wait_for_line "$k2" '^converted NL$' 30
for c in "$c1" "$c2" "$c3"; do
	wait_job "$c" 180
	expect "lvb-counter job $c exits 0" 0 "$JOB_RC"
	check "lvb-counter job $c saw only valid values" has_line "$c" '^counter [0-9]+ valid$'
done
measure "3 x 100 LVB increments across 3 nodes: $(elapsed "$t0") s"
finals=$(for c in "$c1" "$c2" "$c3"; do job_out "$c" | awk '{ print $2 }'; done | sort -n | xargs)
echo "   values the three counters ended with: $finals"
# Run one after the other, they would end at 100, 200 and 300; the first to
# finish ends above 100 only if another's increments came between its own.
check "the counters' increments interleaved (the first to finish ended at ${finals%% *} > 100)" \
	test "${finals%% *}" -gt 100
expect "the last counter to finish ended at 300" 300 "${finals##* }"

on 1 "$LVB_COUNTER" --read
expect "lvb-counter --read exits 0" 0 "$JOB_RC"
check "the counter reads 300, valid" out_has '^counter 300 valid$'

release "$WORK/keeper"
for k in "$k1" "$k2"; do
	wait_job "$k" 30
	expect "keeper $k exits 0" 0 "$JOB_RC"
done
no_panics
pass
