#!/bin/bash
# 12-control: the cluster's own view through libdlmcontrol (dlm-lock ls and
# dlm-lock status, over the crate dlm-control), checked against dlm_tool ls
# and dlm_tool status on the same node, on 3 nodes with fencing enabled:
# all members; node 3 crashes and is fenced by the harness's agent; the
# survivors' view shows it failed and fenced; node 3 reboots and rejoins
# the lockspace, and every view has it back. dlm-lock watch on node 1
# (polling every 200 ms) reports each change as it happens.
. "$(dirname "$0")/../lib/scenario.sh"
scenario "dlm-lock ls/status agree with dlm_tool through a crash, a fence and a rejoin"
export DLM_CLUSTER_FENCING=1
start_cluster 3

# until_out NODE SECONDS REGEX CMD...: runs CMD on NODE until its output
# has a line matching REGEX (at most SECONDS).
until_out() {
	local k=$1 limit=$2 re=$3 t
	shift 3
	t=$(now)
	while :; do
		quietly "$k" "$@"
		out_has "$re" && return 0
		awk -v a="$t" -v b="$(now)" -v l="$limit" 'BEGIN { exit !(b - a > l) }' && break
		sleep 1
	done
	echo "$OUT" | sed 's/^/   last output: /'
	fail "node $k: no line /$re/ from $* within $limit s"
}

# json_has TEXT: the output of the last `on` holds TEXT.
json_has() {
	grep -qF -- "$1" <<<"$OUT"
}

step "every node joins lockspace ctl"
for k in 1 2 3; do
	on "$k" dlm_tool join ctl >/dev/null
	expect "node $k joins ctl" 0 "$JOB_RC"
done
until_out 1 60 '^members +1 2 3 *$' dlm_tool ls ctl

step "node 1: dlm-lock ls agrees with dlm_tool ls"
on 1 dlm_tool ls ctl
tool_ls=$OUT
on 1 "$DLM_LOCK" ls ctl
expect "dlm-lock ls exits 0" 0 "$JOB_RC"
for key in name id flags change members; do
	a=$(grep -E "^$key " <<<"$tool_ls" | tr -s ' ' | sed 's/ $//')
	b=$(grep -E "^$key " <<<"$OUT" | tr -s ' ' | sed 's/ $//')
	check "the $key line is dlm_tool's ($a)" test "$a" = "$b"
done
on 1 "$DLM_LOCK" ls --json ctl
check "JSON: members 1 2 3" json_has '"members": [1, 2, 3]'
check "JSON: nothing in progress" json_has '"changing": false'
check "JSON: node 3 joined" json_has '{"nodeid": 3, "state": "joined", "member": true'

step "node 1: dlm-lock status agrees with dlm_tool status"
on 1 dlm_tool status
tool_st=$(grep -v '^daemon now' <<<"$OUT")
on 1 "$DLM_LOCK" status
ours=$(grep -v '^daemon now' <<<"$OUT")
check "dlm-lock status prints dlm_tool status's lines" test "$tool_st" = "$ours"
on 1 "$DLM_LOCK" status --json
check "JSON: node 1, quorate, members 1 2 3" json_has '{"our_nodeid": 1, "quorate": true,'
check "JSON: members 1 2 3" json_has '"members": [1, 2, 3]'

step "node 1 watches (dlm-lock watch, 200 ms polls)"
w=$(spawn 1 "$DLM_LOCK" watch --interval 200 --for 240)
wait_for_line "$w" '^watching$' 30

step "node 3 crashes; the survivors fence it (the harness's agent)"
crash 3
until_out 1 120 '^members +1 2 *$' dlm_tool ls ctl
ok "node 1's lockspace members are 1 2 after $(elapsed "$CRASHED_AT") s"
until_out 1 60 '"nodeid": 3, "state": "fenced"' "$DLM_LOCK" status --json
measure "crash to fenced in dlm-lock status --json on node 1: $(elapsed "$CRASHED_AT") s (polled once a second)"
[ -s "$DIR/fence/log" ] && sed 's/^/   fence log: /' "$DIR/fence/log"
check "the fence log names node 3" grep -q '^fenced 3 ' "$DIR/fence/log"
status_json=$OUT
check "JSON: still quorate (2 of 3)" grep -qF '"quorate": true' <<<"$status_json"
check "JSON: members 1 2" grep -qF '"members": [1, 2]' <<<"$status_json"
on 1 dlm_tool status
fence_line=$(grep -E '^node 3 X ' <<<"$OUT")
check "dlm_tool status: node 3 is not a member (X)" test -n "$fence_line"
# "node 3 X add A rem R fail F fence E at ..."
read -r _ _ _ _ add _ rem _ fail _ fence _ <<<"$fence_line"
check "JSON's times are dlm_tool's (add $add rem $rem fail $fail fence $fence)" \
	grep -qF "\"add_time\": $add, \"rem_time\": $rem, \"fail_monotime\": $fail, \"fail_walltime\": " <<<"$status_json"
check "... and fence_monotime $fence" grep -qF "\"fence_monotime\": $fence," <<<"$status_json"
on 1 dlm_tool ls -n ctl
check "dlm_tool ls -n: node 3 removed, failed 3 (node down)" out_has '^nodeid 3 member 0 failed 3 '
tool_node3=$(grep -E '^nodeid 3 ' <<<"$OUT")
on 1 "$DLM_LOCK" ls -n ctl
check "dlm-lock ls -n: dlm_tool's line ($tool_node3), state failed" out_has "^$tool_node3 state failed\$"
on 1 "$DLM_LOCK" ls --json ctl
check "JSON: members 1 2" json_has '"members": [1, 2]'
check "JSON: node 3 failed (node down)" json_has '{"nodeid": 3, "state": "failed", "member": false, "failed": 3,'

wait_for_line "$w" '^member ctl 3 [a-z-]+ -> failed$' 60
wait_for_line "$w" '^node 3 [a-z-]+ -> fenced$' 60
# The fence takes seconds here (the agent asks the host, which kills the
# node): far more than one 200 ms poll, so the state before it is seen.
check "watch: node 3 needed fencing first (cluster view)" has_line "$w" '^node 3 member -> needs-fencing$'
check "watch: ... then was fenced" has_line "$w" '^node 3 needs-fencing -> fenced$'
check "watch: in ctl, joined -> needs-fencing" has_line "$w" '^member ctl 3 joined -> needs-fencing$'
check "watch: ... -> failed once fenced" has_line "$w" '^member ctl 3 needs-fencing -> failed$'
check "watch: ctl's membership change started" has_line "$w" '^lockspace ctl changing$'
check "watch: ... and ended" has_line "$w" '^lockspace ctl settled$'
no_line "$w" '^quorum no$' "quorum kept (2 of 3)"

step "node 3 reboots and joins ctl again"
t=$(now)
"$CLUSTER" reboot "$DIR" 3 >/dev/null || fail "ci/cluster reboot 3"
ok "node 3 back in the cluster after $(elapsed "$t") s"
on 3 dlm_tool join ctl >/dev/null
expect "node 3 joins ctl" 0 "$JOB_RC"
until_out 1 60 '^members +1 2 3 *$' dlm_tool ls ctl
for k in 1 3; do
	on "$k" "$DLM_LOCK" ls --json ctl
	check "node $k: JSON members 1 2 3" json_has '"members": [1, 2, 3]'
	check "node $k: node 3 joined" json_has '{"nodeid": 3, "state": "joined", "member": true'
	on "$k" "$DLM_LOCK" status --json
	check "node $k: status members 1 2 3" json_has '"members": [1, 2, 3]'
	check "node $k: node 3 a member" json_has '{"nodeid": 3, "state": "member", "member": true'
done
wait_for_line "$w" '^node 3 [a-z-]+ -> member$' 60
wait_for_line "$w" '^member ctl 3 failed -> joined$' 60
ok "watch: node 3 back in the cluster and in ctl"
job_out "$w" | sed 's/^/   [watch] /'
on 3 dlm_tool status
tool_st=$(grep -v '^daemon now' <<<"$OUT")
on 3 "$DLM_LOCK" status
check "node 3: dlm-lock status prints dlm_tool status's lines" test "$tool_st" = "$(grep -v '^daemon now' <<<"$OUT")"
no_panics
pass
