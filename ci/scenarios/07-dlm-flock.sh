#!/bin/bash
# 07-dlm-flock: dlm-flock serialises critical sections across nodes. One
# shell loop per node runs 50 critical sections under `dlm-flock -x`, each
# appending 3 lines "node N iter I part P" to one shared file (on the
# host's file system, which both guests see through hostfs), with pauses
# between the parts. The file must hold all 100 sections, each one's 3
# lines contiguous and in order, and the nodes' sections must interleave.
# (Appends from two guests without the lock do lose and tear lines.)
. "$(dirname "$0")/../lib/scenario.sh"
scenario "dlm-flock on 2 nodes: 2 x 50 critical sections appending to one shared file"
start_cluster 2

shared=$WORK/shared.txt
: >"$shared"
# The critical section: 3 appends (>>, O_APPEND), 20 ms pauses between them
# (read -t on the tick FIFO: no fork).
cat >"$WORK/section.sh" <<'SECTION'
f=$1 n=$2 i=$3
exec 9<>"$TICK"
echo "node $n iter $i part 1" >>"$f"
read -r -t 0.02 -u 9 _
echo "node $n iter $i part 2" >>"$f"
read -r -t 0.02 -u 9 _
echo "node $n iter $i part 3" >>"$f"
SECTION
loop='for i in $(seq 1 50); do
	"$DLM_FLOCK" -x --lockspace flock shared-file bash "$SECTION" "$SHARED" "$NODE" "$i" || { echo "dlm-flock failed: $?"; exit 1; }
done
echo "node $NODE done"'
export TICK DLM_FLOCK SHARED=$shared SECTION=$WORK/section.sh
export DLM_VM_ENV="TICK DLM_FLOCK SHARED SECTION NODE"

step "both loops start at once (a gate), 50 sections each"
l1=$(NODE=1 spawn 1 "${GATE[@]}" "$WORK/go" bash -c "$loop")
l2=$(NODE=2 spawn 2 "${GATE[@]}" "$WORK/go" bash -c "$loop")
for l in "$l1" "$l2"; do
	until [ -e "$(jobdir "$l")/started" ]; do sleep 0.05; done
done
t0=$(now)
release "$WORK/go"
wait_job "$l1" 240
expect "node 1's loop exits 0" 0 "$JOB_RC"
wait_job "$l2" 240
expect "node 2's loop exits 0" 0 "$JOB_RC"
measure "2 x 50 dlm-flock critical sections: $(elapsed "$t0") s"

step "the shared file"
expect "300 lines" 300 "$(wc -l <"$shared")"
bad=$(grep -cvE '^node [12] iter ([1-9]|[1-4][0-9]|50) part [123]$' "$shared")
expect "no torn or foreign line" 0 "$bad"
# Every section's 3 parts contiguous and in order, each (node, iter) once.
report=$(awk '
	{ key = $2 " " $4; part = $6 }
	NR % 3 == 1 { if (part != 1) { print "line " NR ": part " part " starts a section"; bad++ } cur = key }
	NR % 3 != 1 { if (key != cur || part != (NR - 1) % 3 + 1) { print "line " NR ": \"" $0 "\" inside the section of node/iter " cur; bad++ } }
	NR % 3 == 0 { seen[key]++ }
	END {
		for (n = 1; n <= 2; n++) for (i = 1; i <= 50; i++) if (seen[n " " i] != 1) { print "section node " n " iter " i " seen " seen[n " " i] + 0 " times"; bad++ }
		print "bad " bad + 0
	}' "$shared")
if ! grep -qx 'bad 0' <<<"$report"; then
	head -n 20 <<<"$report"
	fail "the sections are not whole"
fi
ok "all 100 sections present, each one's 3 lines contiguous and in order"
switches=$(awk 'NR % 3 == 1 { if (NR > 1 && $2 != last) s++; last = $2 } END { print s + 0 }' "$shared")
echo "   the file changes hands between the nodes $switches times"
check "the nodes' sections interleave (the lock went back and forth)" test "$switches" -ge 2
no_panics
pass
