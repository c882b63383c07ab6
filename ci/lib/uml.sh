# Host side of the DLM test cluster, sourced by ci/vm and ci/cluster.
#
# A node is one user-mode Linux kernel (linux.uml) whose root file system is
# the host's own (hostfs) and whose init is ci/lib/guest-init. Each run gets
# its own run directory and UML umids, so runs can go on side by side.

ci_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# uml_new_run: make a run directory and write env.sh, the environment passed
# into the guests: PATH, HOME, CARGO_HOME, RUSTUP_HOME, RUST_BACKTRACE and
# every variable named in DLM_VM_ENV (space or comma separated).
uml_new_run() {
	UML_RUN=$(mktemp -d "${TMPDIR:-/tmp}/dlm-cluster.XXXXXX")
	UML_TAG=dlm$(basename "$UML_RUN" | cut -d. -f2)
	chmod 755 "$UML_RUN"
	uml_env_exports >"$UML_RUN/env.sh"
}

# uml_env_exports [unset]: print shell commands exporting PATH, HOME,
# CARGO_HOME, RUSTUP_HOME, RUST_BACKTRACE and every variable named in
# DLM_VM_ENV with their current values; with "unset", variables that are not
# set here are unset there.
uml_env_exports() {
	local v names
	names="PATH HOME CARGO_HOME RUSTUP_HOME RUST_BACKTRACE $(echo "${DLM_VM_ENV:-}" | tr , " ")"
	for v in $names; do
		if [ -n "${!v+x}" ]; then
			printf 'export %s=%q\n' "$v" "${!v}"
		elif [ "${1:-}" = unset ]; then
			printf 'unset %s\n' "$v"
		fi
	done
}

# uml_corosync_conf N: the corosync configuration of an N-node cluster.
# One node talks over loopback; several over the private switch, node K at
# 10.77.0.K.
uml_corosync_conf() {
	local n=$1 k addr
	{
		cat <<EOF
totem {
	version: 2
	cluster_name: dlmtest
	transport: udpu
	crypto_cipher: none
	crypto_hash: none
	token: 3000
}
logging {
	to_stderr: yes
	to_logfile: no
	to_syslog: no
	timestamp: hires
}
quorum {
	provider: corosync_votequorum
EOF
		[ "$n" -eq 2 ] && printf '\ttwo_node: 1\n'
		printf '}\nnodelist {\n'
		for k in $(seq 1 "$n"); do
			if [ "$n" -eq 1 ]; then addr=127.0.0.1; else addr=10.77.0.$k; fi
			printf '\tnode {\n\t\tring0_addr: %s\n\t\tnodeid: %d\n\t\tname: node%d\n\t}\n' "$addr" "$k" "$k"
		done
		printf '}\n'
	} >"$UML_RUN/corosync.conf"
}

# uml_boot NODE MODE [extra kernel parameters...]: start node NODE in the
# background. The guest's tty1 is the host's stdout (or fd UML_OUT_FD), tty2
# its stderr (or fd UML_ERR_FD); the kernel's console (tty0) goes to stdout
# too (through a descriptor of its own, 3: UML closes a console's
# descriptor, which must not be tty1's), with messages of level KERN_ERR and worse (DLM_UML_LOGLEVEL, default
# 4, is the kernel's loglevel=): a kernel panic and the DLM assertion
# before it are in the node's log. Sets UML_PID_<NODE>.
uml_boot() {
	local node=$1 mode=$2
	shift 2
	mkdir -p "$UML_RUN/node$node"
	uml_xstate_shim
	# setsid: the kernel and its helper processes form one process group
	# that can be killed at once (a crash, or the clean-up after a failure).
	LD_PRELOAD="$UML_RUN/uml-xstate.so" setsid linux.uml mem="${DLM_UML_MEM:-512M}" rootfstype=hostfs rootflags=/ rw \
		init="$ci_dir/lib/guest-init" quiet loglevel=${DLM_UML_LOGLEVEL:-4} \
		umid="$UML_TAG-n$node" uml_dir="$UML_RUN/uml" \
		con=null con0=null,fd:3 con1=null,fd:1 con2=null,fd:2 ssl=null \
		dlmrun="$UML_RUN" dlmnode="$node" dlmmode="$mode" \
		GLIBC_TUNABLES=glibc.cpu.hwcaps=-AVX512F,-AVX512VL,-AVX512BW,-AVX512DQ,-AVX512CD "$@" \
		</dev/null >&"${UML_OUT_FD:-1}" 2>&"${UML_ERR_FD:-2}" 3>&1 &
	eval "UML_PID_$node=$!"
}

# uml_xstate_shim: build ci/lib/uml-xstate.c (see there) into the run
# directory, once per run: linux.uml runs with it preloaded. UML 6.1 saves
# a guest thread's extended registers only up to AVX2 (832 bytes), so the
# guest's glibc is kept off AVX-512 code (GLIBC_TUNABLES on the kernel's
# command line reaches init's environment): its memcpy would otherwise use
# registers that a guest context switch does not save.
uml_xstate_shim() {
	[ -e "$UML_RUN/uml-xstate.so" ] && return 0
	gcc -O2 -shared -fPIC -o "$UML_RUN/uml-xstate.so.tmp" "$ci_dir/lib/uml-xstate.c" -ldl &&
		mv "$UML_RUN/uml-xstate.so.tmp" "$UML_RUN/uml-xstate.so"
}

# uml_wait_ready NODE SECONDS: wait until the node's DLM is ready; on failure
# print the node's logs and return 1.
uml_wait_ready() {
	local node=$1 limit=$2 pidvar="UML_PID_$1" start=$SECONDS
	while [ ! -e "$UML_RUN/node$node/ready" ]; do
		if [ -e "$UML_RUN/node$node/rc" ] || ! kill -0 "${!pidvar}" 2>/dev/null ||
			[ $((SECONDS - start)) -ge "$limit" ]; then
			echo "ci: node $node's DLM did not come up within ${limit}s" >&2
			uml_print_logs "$node" >&2
			return 1
		fi
		sleep 0.1
	done
}

uml_print_logs() {
	local nd=$UML_RUN/node$1 f
	for f in init.log console corosync.log dlm_controld.log; do
		[ -s "$nd/$f" ] || continue
		echo "----- node $1: $f -----"
		tail -n 60 "$nd/$f"
	done
}

# uml_kill NODE: kill the node's kernel and every helper process at once.
uml_kill() {
	local pidvar="UML_PID_$1"
	[ -n "${!pidvar:-}" ] || return 0
	kill -KILL -- "-${!pidvar}" 2>/dev/null
	wait "${!pidvar}" 2>/dev/null
	eval "UML_PID_$1="
}
