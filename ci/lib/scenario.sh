# ci/lib/scenario.sh: the small harness the multi-node scenarios
# (ci/scenarios/NN-name.sh) are written with, over ci/cluster. Source it:
#
#   . "$(dirname "$0")/../lib/scenario.sh"
#   scenario "what this scenario proves"
#   start_cluster 2                      # boots; sets DIR; stopped on exit
#   j=$(spawn 1 "$DLM_LOCK" -t --hold-until-file "$WORK/h1" res)
#   wait_for_line "$j" '^granted EX$' 20 # by events, never by sleeps
#   on 2 "$DLM_LOCK" -t --try res; expect "try on node 2" 1 $?
#   release "$WORK/h1"; wait_job "$j" 20; expect "node 1 ends" 0 "$JOB_RC"
#   pass
#
# Every check prints "ok: ..." or "FAIL: ..."; the first failure dumps the
# output of every job and the tail of the nodes' logs to stderr and exits 1
# (the cluster is stopped by the EXIT trap). `pass` prints PASS, exits 0.
#
# Job output: the scenarios run `dlm-lock -t` (--timestamps), so event
# lines look like "1712345678.123456 granted EX". wait_for_line, has_line
# and count_lines match REGEX against the line with that time stamp removed;
# line_time gives the stamp. A guest's clock is set from the host's at
# boot, but guests can differ by milliseconds: compare stamps of one node,
# or across nodes only at the scale of seconds. To check an order across
# nodes use the host's view: a line is on the host's file system as soon
# as the program writes it (hostfs writes through), so reading B's line and
# then not finding A's line shows that B's was written first; the
# scenarios check that this does not happen where A must come first.
#
# Variables: ROOT (the repository), DLM_LOCK, DLM_FLOCK (the tools of
# tools/, package dlm-tools), LVB_COUNTER (an example), all built by
# ci/multinode, CLUSTER (ci/cluster), DIR (the
# cluster's run directory), WORK (a scratch directory on the shared file
# system, removed on exit), JOB_RC (set by wait_job and on), OUT (set
# by on and quietly), TICK and GATE (below).
#
# Lines "measure: ..." (see `measure`) are collected by ci/multinode.

set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CLUSTER=$ROOT/ci/cluster
# The tools (package dlm-tools: cargo build -p dlm-tools) and the
# lvb-counter example (cargo build --examples), as ci/multinode builds them.
BINS=$ROOT/target/debug
EXAMPLES=$BINS/examples
DLM_LOCK=$BINS/dlm-lock
DLM_FLOCK=$BINS/dlm-flock
LVB_COUNTER=$EXAMPLES/lvb-counter
# Whatever happens to this script, the cluster's supervisor tears it down
# once this process has gone.
export DLM_CLUSTER_OWNER=$$
DIR=
JOB_RC=
SCENARIO=$(basename "$0" .sh)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/dlm-scenario.XXXXXX")
chmod 777 "$WORK"
_t_start=$(date +%s.%N)

for _b in "$DLM_LOCK" "$DLM_FLOCK" "$LVB_COUNTER"; do
	[ -x "$_b" ] || {
		echo "$SCENARIO: $_b is missing: run cargo build -p dlm-tools && cargo build --examples" >&2
		exit 2
	}
done

# A FIFO nobody writes to: `read -t SECS -u FD` on it (opened read-write)
# is a sleep without a fork, in the guests too (hostfs shows it to each
# guest as a FIFO of its own).
TICK=$WORK/.tick
mkfifo "$TICK"
# GATE: a command prefix that waits for a file before running the command,
# to start jobs on several nodes at the same moment:
#   spawn 1 "${GATE[@]}" "$WORK/go" CMD ARGS...; ...; release "$WORK/go"
cat >"$WORK/.gate.sh" <<'GATE'
# .gate.sh TICK FILE CMD [ARGS...]: wait (polling every 20 ms, no fork)
# until FILE exists, then exec CMD.
tick=$1 go=$2
shift 2
exec 9<>"$tick"
until [ -e "$go" ]; do read -r -t 0.02 -u 9 _; done
exec 9<&-
exec "$@"
GATE
GATE=(bash "$WORK/.gate.sh" "$TICK")

_cleanup() {
	local rc=$?
	if [ -n "$DIR" ]; then
		"$CLUSTER" stop "$DIR" >/dev/null 2>&1 || true
		DIR=
	fi
	rm -rf "$WORK"
	exit "$rc"
}
trap _cleanup EXIT
trap 'exit 130' INT TERM

now() { date +%s.%N; }

# elapsed FROM [TO]: seconds from FROM to TO (default now), 1 decimal.
elapsed() {
	awk -v a="$1" -v b="${2:-$(now)}" 'BEGIN { printf "%.1f", b - a }'
}

scenario() {
	echo "== $SCENARIO: $*"
}

# step TEXT: say what comes next.
step() {
	echo "-- $*"
}

ok() {
	echo "ok: $*"
}

# measure TEXT: a measurement, reported by ci/multinode.
measure() {
	echo "measure: $*"
}

# dump: every job's command, output and status, and the tail of each node's
# logs, on stderr.
dump() {
	local d k f
	[ -n "$DIR" ] && [ -d "$DIR" ] || return 0
	{
		for d in "$DIR"/node*/jobs/*/; do
			[ -d "$d" ] || continue
			k=${d#"$DIR"/node}
			k=${k%%/*}
			echo "----- job $k-$(basename "$d"): $(tail -n 1 "$d/cmd.sh" 2>/dev/null | sed "s|$EXAMPLES/||g; s|$BINS/||g") -> rc $(cat "$d/rc" 2>/dev/null || echo running)"
			sed 's/^/  out: /' "$d/stdout" 2>/dev/null
			sed 's/^/  err: /' "$d/stderr" 2>/dev/null
		done
		for k in $(seq 1 "$(cat "$DIR/nodes" 2>/dev/null || echo 0)"); do
			for f in init.log dlm_controld.log crashed; do
				[ -s "$DIR/node$k/$f" ] || continue
				echo "----- node $k: $f (last 25 lines) -----"
				tail -n 25 "$DIR/node$k/$f"
			done
		done
	} >&2
}

fail() {
	echo "FAIL: $*"
	dump
	echo "FAIL ($SCENARIO, after $(elapsed "$_t_start") s)"
	exit 1
}

# check TEXT COMMAND...: ok if COMMAND succeeds, else fail.
check() {
	local what=$1
	shift
	if "$@"; then ok "$what"; else fail "$what"; fi
}

# expect TEXT WANT GOT: ok if the two strings are equal.
expect() {
	if [ "$2" = "$3" ]; then
		ok "$1"
	else
		fail "$1: expected '$2', got '$3'"
	fi
}

# start_cluster N: boot N nodes; sets DIR. ci/cluster start is retried
# once: a boot can fail for reasons outside the test (see ci/multinode).
start_cluster() {
	local n=$1 t try err
	t=$(now)
	err=$WORK/start.err
	for try in 1 2; do
		if DIR=$("$CLUSTER" start "$n" 2>"$err"); then
			break
		fi
		DIR=
		echo "note: ci/cluster start $n failed (attempt $try): $(grep -m1 'ci/cluster' "$err")" >&2
		[ "$try" = 2 ] && {
			cat "$err" >&2
			fail "boot a $n-node cluster"
		}
	done
	ok "$n-node cluster booted in $(elapsed "$t") s"
}

# on NODE CMD [ARGS...]: run CMD on NODE and wait for it; its output is
# shown indented and kept in OUT (stdout, time stamps removed); returns (and
# sets JOB_RC to) its exit status.
on() {
	local k=$1
	shift
	JOB_RC=0
	"$CLUSTER" run "$DIR" "$k" "$@" >"$WORK/.on.out" 2>"$WORK/.on.err" || JOB_RC=$?
	sed "s/^/   [node $k] /" "$WORK/.on.out"
	sed "s/^/   [node $k stderr] /" "$WORK/.on.err" >&2
	OUT=$(sed -E 's/^[0-9]+\.[0-9]+ //' "$WORK/.on.out")
	return "$JOB_RC"
}

# quietly NODE CMD [ARGS...]: as on, without showing the output.
quietly() {
	local k=$1
	shift
	JOB_RC=0
	"$CLUSTER" run "$DIR" "$k" "$@" >"$WORK/.on.out" 2>"$WORK/.on.err" || JOB_RC=$?
	OUT=$(sed -E 's/^[0-9]+\.[0-9]+ //' "$WORK/.on.out")
	return "$JOB_RC"
}

# kernel_stacks NODE PROGRAM: sets OUT to one line per thread of every
# PROGRAM process on NODE: "PID TID STATE FUNCTIONS", FUNCTIONS being the
# dlm_*, device_* and futex_* functions on the thread's kernel stack (where
# it sleeps).
kernel_stacks() {
	quietly "$1" sh -c 'for p in $(pgrep -x "$1"); do
		for t in /proc/$p/task/*; do
			read -r st <"$t/stat" || continue
			st=${st##*) }
			echo "$p ${t##*/} ${st%% *} $(grep -oE "(dlm|device|futex)_[a-z_]+" "$t/stack" | tr "\n" " ")"
		done
	done; true' sh "$2"
}

# out_has REGEX: the output of the last `on` has a line matching REGEX.
out_has() {
	grep -qE -- "$1" <<<"$OUT"
}

# spawn NODE CMD [ARGS...]: start CMD on NODE in the background; prints the
# job id (use j=$(spawn ...)).
spawn() {
	local k=$1 job
	shift
	job=$("$CLUSTER" spawn "$DIR" "$k" "$@") || fail "spawn on node $k: $*"
	echo "$job"
}

jobdir() {
	echo "$DIR/node${1%%-*}/jobs/${1#*-}"
}

# job_out JOB: the job's stdout so far.
job_out() {
	cat "$(jobdir "$1")/stdout" 2>/dev/null
}

# job_done JOB: true once the job has ended (or its node is gone).
job_done() {
	[ -s "$(jobdir "$1")/rc" ]
}

# _find JOB REGEX: sets _line (time stamp removed) and _stamp to the first
# line of the job's stdout matching REGEX; false if none.
_find() {
	local file line
	file=$(jobdir "$1")/stdout
	_line= _stamp=
	[ -e "$file" ] || return 1
	while IFS= read -r line || [ -n "$line" ]; do
		if [[ $line =~ ^([0-9]+\.[0-9]+)\ (.*)$ ]]; then
			_stamp=${BASH_REMATCH[1]}
			line=${BASH_REMATCH[2]}
		else
			_stamp=
		fi
		if [[ $line =~ $2 ]]; then
			_line=$line
			return 0
		fi
	done <"$file"
	return 1
}

# has_line JOB REGEX: the job has printed a line matching REGEX.
has_line() {
	_find "$1" "$2"
}

# count_lines JOB REGEX: how many of the job's lines match REGEX.
count_lines() {
	local n=0 line
	while IFS= read -r line || [ -n "$line" ]; do
		[[ $line =~ ^[0-9]+\.[0-9]+\ (.*)$ ]] && line=${BASH_REMATCH[1]}
		[[ $line =~ $2 ]] && n=$((n + 1))
	done <"$(jobdir "$1")/stdout"
	echo "$n"
}

# line_time JOB REGEX: the time stamp of the first line matching REGEX.
line_time() {
	_find "$1" "$2" || fail "job $1 has no line matching /$2/"
	[ -n "$_stamp" ] || fail "job $1: line '$_line' has no time stamp"
	echo "$_stamp"
}

# wait_for_line JOB REGEX TIMEOUT: wait (polling the job's live stdout every
# 50 ms) until the job prints a line matching REGEX; fail if TIMEOUT seconds
# pass, or the job ends, without one. Sets SEEN_AT (host time it was seen)
# and LINE.
wait_for_line() {
	local job=$1 re=$2 limit=$3 deadline ended
	deadline=$(($(date +%s%3N) + $(awk -v b="$limit" 'BEGIN { printf "%.0f", b * 1000 }')))
	while :; do
		ended=
		job_done "$job" && ended=1
		if _find "$job" "$re"; then
			SEEN_AT=$(now)
			LINE=$_line
			ok "job $job (node ${job%%-*}): '$LINE'"
			return 0
		fi
		[ -n "$ended" ] && fail "job $job ended (rc $(cat "$(jobdir "$job")/rc")) without a line matching /$re/"
		[ "$(date +%s%3N)" -ge "$deadline" ] && fail "job $job: no line matching /$re/ within ${limit}s"
		sleep 0.05
	done
}

# no_line JOB REGEX WHAT: check the job has printed no line matching REGEX.
no_line() {
	if _find "$1" "$2"; then
		fail "$3: job $1 printed '$_line'"
	fi
	ok "$3"
}

# wait_job JOB [TIMEOUT]: wait for the job to end (default 60 s); sets
# JOB_RC (124: still running after TIMEOUT; 125: its node went down). The
# job's output is not copied.
wait_job() {
	JOB_RC=0
	"$CLUSTER" wait "$DIR" "$1" "${2:-60}" >/dev/null 2>&1 || JOB_RC=$?
	return 0
}

# release PATH: create the file a --hold-until-file job waits for.
release() {
	: >"$1"
}

# crash NODE: kill NODE's kernel at once; sets CRASHED_AT (host time just
# before the kill).
crash() {
	CRASHED_AT=$(now)
	"$CLUSTER" crash "$DIR" "$1" || fail "ci/cluster crash $1"
	ok "node $1 crashed (kill took $(elapsed "$CRASHED_AT") s)"
}

# no_panics: no job of the cluster wrote "panicked" on stderr.
no_panics() {
	local f bad=
	for f in "$DIR"/node*/jobs/*/stderr; do
		[ -e "$f" ] || continue
		grep -q panicked "$f" && bad="$bad $f"
	done
	[ -z "$bad" ] || fail "a program panicked:$bad"
	ok "no program panicked"
}

pass() {
	echo "PASS ($SCENARIO, $(elapsed "$_t_start") s)"
	exit 0
}

# earlier A B: true if time A is before time B (or equal).
earlier() {
	awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }'
}

# hex TEXT: TEXT's bytes as a lock value block in hex (64 digits, the
# rest zeros), as dlm-lock prints it.
hex() {
	local h
	h=$(printf '%s' "$1" | od -An -tx1 -v | tr -d ' \n')
	while [ ${#h} -lt 64 ]; do h=${h}00; done
	echo "$h"
}
