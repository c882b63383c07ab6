#!/bin/bash
# 13-cached-locks: cached locks (dlm::CachedLock, issue 17) across 3 nodes,
# driven by cache-probe (package dlm-chaos, built on the host, run on the
# nodes). Each phase starts its programs together (a gate file) and checks:
#  a/c. exclusion and the value block: a counter in RES's value block,
#       incremented by cached EX writers (several threads sharing one
#       cache, CacheOptions::lvb: read from the cache, set_lvb, published
#       when the cache gives the lock up) on nodes 1 and 2 (node 2's cache
#       unlocks when it gives up) and by plain EX writers on nodes 1 and 3;
#       each writer holds 0.5 ms between its read and its write, so two
#       writers inside at once would lose an increment: the final counter
#       must equal the increments made;
#  d.   mixed PR/EX: cached PR readers beside cached EX writers on one
#       cache, plain PR readers and writers elsewhere: no reader sees the
#       counter go down, and it is exact at the end;
#  b.   a remote waiter: node 1's threads take a cached lock in EX in a
#       loop (minimum hold 10 ms); node 2's plain EX requests,
#       one after another, must each be granted within WAIT_BOUND_MS;
#  e.   fairness: caches on nodes 1 and 2 with no minimum hold (the default:
#       adapting to contention) hand the lock
#       back and forth; node 3's plain new requests must go on being
#       granted (none timed out, each within FAIR_BOUND_MS). A cache that
#       converted up from NL would be served from the kernel's convert
#       queue ahead of node 3's new requests, for ever (seen with that
#       change made by hand to Actor::convert_up: 1 grant in 12 s, two
#       5 s timeouts);
#  end. no lock left: each node releases the lockspace without force.
# PHASES (default "a d b e") runs some of them; WAIT_BOUND_MS (1000) and
# FAIR_BOUND_MS (2000) set the bounds.
. "$(dirname "$0")/../lib/scenario.sh"
scenario "cached locks across 3 nodes: exclusion, value-block counter, mixed PR/EX, remote waiter bound, fairness"
PROBE=$BINS/cache-probe
[ -x "$PROBE" ] || fail "$PROBE is missing: cargo build -p dlm-chaos --bins"
WAIT_BOUND_MS=${WAIT_BOUND_MS:-1000}
FAIR_BOUND_MS=${FAIR_BOUND_MS:-2000}
# PHASES: which phases to run (default all), e.g. PHASES=e.
PHASES=${PHASES:-a d b e}
phase() { [[ " $PHASES " == *" $1 "* ]]; }
start_cluster 3

# field JOB LINEKEY NAME: the word after NAME on the job's line starting
# with LINEKEY (cache-probe prints "key value key value ..." lines).
field() {
	job_out "$1" | awk -v k="$2" -v n="$3" '$1 == k { for (i = 1; i < NF; i++) if ($i == n) { print $(i + 1); exit } }'
}
# val JOB KEY: the word after KEY on the line starting with KEY.
val() {
	field "$1" "$2" "$2"
}
# run_counter RES SECONDS "ROLES on node 1" "... node 2" "... node 3":
# starts the three together, waits, checks each ended well; sets JOBS.
run_counter() {
	local res=$1 secs=$2 k j
	shift 2
	JOBS=()
	for k in 1 2 3; do
		j=$(spawn "$k" "${GATE[@]}" "$WORK/go-$res" "$PROBE" counter "$res" "$secs" $1)
		JOBS+=("$j")
		shift
	done
	release "$WORK/go-$res"
	for j in "${JOBS[@]}"; do
		wait_job "$j" $((secs + 60))
		expect "cache-probe counter $res job $j exits 0" 0 "$JOB_RC"
		expect "job $j: no error" 0 "$(val "$j" errors)"
		echo "   job $j: $(job_out "$j" | tr '\n' ';')"
	done
}
# final RES: the counter as a plain PR lock on node 3 reads it.
final() {
	quietly 3 "$PROBE" read "$1"
	[ "$JOB_RC" = 0 ] || fail "cache-probe read $1 on node 3 exited $JOB_RC: $OUT"
	sed -nE 's/^counter ([0-9]+) valid true$/\1/p' <<<"$OUT"
}

if phase a || phase d; then
step "node 3 keeps NL locks with the value block on ctr and mix (the DLM keeps a value block while a lock exists)"
keep=$(spawn 3 "$DLM_LOCK" -t --lockspace cache13 --mode NL --lvb-read --hold-until-file "$WORK/keeper" ctr)
wait_for_line "$keep" '^granted NL$' 30
keep2=$(spawn 3 "$DLM_LOCK" -t --lockspace cache13 --mode NL --lvb-read --hold-until-file "$WORK/keeper" mix)
wait_for_line "$keep2" '^granted NL$' 30
fi
if phase a; then
step "a/c: a counter in ctr's value block: cached EX writers on nodes 1 and 2, plain EX writers on nodes 1 and 3, 10 s"
run_counter ctr 10 "cw=3 pw=1" "cw=2 give-up=unlock" "pw=2"
total=0
for j in "${JOBS[@]}"; do total=$((total + $(val "$j" increments))); done
got=$(final ctr)
measure "a/c: counter in the value block: $got after $total increments (cached: node 1 $(field "${JOBS[0]}" stats hits) hits / $(field "${JOBS[0]}" stats takes) takes / $(field "${JOBS[0]}" stats give_ups) give-ups, node 2 $(field "${JOBS[1]}" stats hits) / $(field "${JOBS[1]}" stats takes) / $(field "${JOBS[1]}" stats give_ups))"
check "a/c: some increments were made ($total)" test "$total" -gt 50
expect "a/c: the final counter equals the increments made" "$total" "$got"
for j in "${JOBS[0]}" "${JOBS[1]}"; do
	check "a/c: job $j's cache served local hits and gave the lock up" \
		test "$(field "$j" stats hits)" -gt 0 -a "$(field "$j" stats give_ups)" -gt 0
done
fi
if phase d; then
step "d: mixed PR/EX on mix: cached PR readers beside cached EX writers (nodes 1, 2), plain PR readers and an EX writer (node 3), 8 s"
run_counter mix 8 "cw=2 cr=2" "cw=1 cr=2" "pw=1 pr=2"
total=0 regress=0 reads=0
for j in "${JOBS[@]}"; do
	total=$((total + $(val "$j" increments)))
	regress=$((regress + $(field "$j" reads regressions)))
	reads=$((reads + $(val "$j" reads)))
done
got=$(final mix)
dl=0
for j in "${JOBS[@]}"; do dl=$((dl + $(val "$j" deadlocks))); done
measure "d: mixed PR/EX: counter $got after $total increments, $reads reads, $regress regressions, $dl cached takes refused with a conversion deadlock (PR -> EX on two nodes; tried again)"
check "d: readers read ($reads) and writers wrote ($total)" test "$reads" -gt 20 -a "$total" -gt 20
expect "d: no reader saw the counter go down" 0 "$regress"
expect "d: the final counter equals the increments made" "$total" "$got"
for j in "${JOBS[@]}"; do
	m=$(field "$j" reads max)
	check "d: job $j saw at most the final value ($m <= $got)" test "$m" -le "$got"
done
fi
release "$WORK/keeper"
if phase a || phase d; then
wait_job "$keep" 30
expect "the keeper of ctr exits 0" 0 "$JOB_RC"
wait_job "$keep2" 30
expect "the keeper of mix exits 0" 0 "$JOB_RC"
fi

if phase b; then
step "b: node 1 takes the cached lock hot in a loop (2 threads, min hold 10 ms); node 2's plain EX requests, 300 ms apart, 10 s"
h=$(spawn 1 "${GATE[@]}" "$WORK/go-hot" "$PROBE" hammer hot 13 2 10 200)
release "$WORK/go-hot"
wait_for_line "$h" '^hammering$' 30
sleep 1
w=$(spawn 2 "$PROBE" waiter hot 10 300 5000)
wait_job "$w" 60
expect "the waiter on node 2 exits 0" 0 "$JOB_RC"
wait_job "$h" 60
expect "the hammer on node 1 exits 0" 0 "$JOB_RC"
grants=$(val "$w" grants)
timeouts=$(field "$w" grants timeouts)
max=$(field "$w" grants max_ms)
mean=$(field "$w" grants mean_ms)
ops=$(val "$h" ops)
measure "b: remote waiter beside a hot cached loop: $grants grants, worst wait $max ms, mean $mean ms, $timeouts timed out; node 1's loop: $ops local takes ($(field "$h" stats hits) hits, $(field "$h" stats takes) takes, $(field "$h" stats give_ups) give-ups)"
check "b: the waiter was granted in several rounds ($grants)" test "$grants" -ge 10
expect "b: no request of the waiter timed out" 0 "$timeouts"
check "b: every wait was under $WAIT_BOUND_MS ms (worst $max ms)" awk -v m="$max" -v b="$WAIT_BOUND_MS" 'BEGIN { exit !(m < b) }'
check "b: node 1's loop went on taking ($ops)" test "$ops" -gt 100
check "b: node 1's cache gave the lock up for each grant ($(field "$h" stats give_ups))" test "$(field "$h" stats give_ups)" -ge "$grants"

fi
if phase e; then
step "e: caches on nodes 1 and 2 (no minimum hold) hand the lock back and forth; node 3's plain new requests, back to back, 12 s"
# Each local hold is 20 ms: a cache's next take reaches the resource's
# master while the other cache still holds the lock, as it would on a
# faster network than this one.
h1=$(spawn 1 "${GATE[@]}" "$WORK/go-fair" "$PROBE" hammer fair 15 2 0 20000)
h2=$(spawn 2 "${GATE[@]}" "$WORK/go-fair" "$PROBE" hammer fair 15 2 0 20000)
release "$WORK/go-fair"
wait_for_line "$h1" '^hammering$' 30
wait_for_line "$h2" '^hammering$' 30
sleep 1
w=$(spawn 3 "$PROBE" waiter fair 12 0 5000)
wait_job "$w" 60
expect "the waiter on node 3 exits 0" 0 "$JOB_RC"
for j in "$h1" "$h2"; do
	wait_job "$j" 60
	expect "the hammer $j exits 0" 0 "$JOB_RC"
done
grants=$(val "$w" grants)
timeouts=$(field "$w" grants timeouts)
max=$(field "$w" grants max_ms)
mean=$(field "$w" grants mean_ms)
measure "e: fairness: node 3's new requests beside two caches handing off: $grants grants in 12 s, worst wait $max ms, mean $mean ms, $timeouts timed out; node 1: $(val "$h1" ops) takes local ($(field "$h1" stats takes) DLM takes, $(field "$h1" stats give_ups) give-ups), node 2: $(val "$h2" ops) ($(field "$h2" stats takes), $(field "$h2" stats give_ups))"
expect "e: none of node 3's requests timed out (5 s)" 0 "$timeouts"
check "e: node 3 was granted again and again ($grants)" test "$grants" -ge 20
check "e: every wait of node 3 was under $FAIR_BOUND_MS ms (worst $max ms)" awk -v m="$max" -v b="$FAIR_BOUND_MS" 'BEGIN { exit !(m < b) }'
for j in "$h1" "$h2"; do
	check "e: the cache of job $j took the lock more than once ($(field "$j" stats takes))" test "$(field "$j" stats takes)" -gt 1
done
fi

step "no lock left: every program has ended; each node releases cache13 without force (a fresh handle, until it is gone)"
for k in 1 2 3; do
	on "$k" "$PROBE" release
	expect "node $k released cache13 (no lock left there)" 0 "$JOB_RC"
done
no_panics
pass
