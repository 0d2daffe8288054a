# shellcheck shell=bash
# scenarios/lib/twohost.sh - the two-path, two-host testbed of fig-switch.
# Source it from a bash script (after or instead of testbed.sh; it sources it):
#
#   . "$ROOT/scenarios/lib/twohost.sh"
#   tb2_up "fs$(( $$ % 100000 ))"        # network + one CoreEngine per host
#   tb2_guest_bg vr "$TB_DIR/r.log" nk_stream recv 5500
#   tb2_guest vs nk_stream send 10.78.1.12 5500 10
#   tb2_nkctl snd switch vs mptcp
#
# Topology (every link shaped with tbf to $NK_LINK_RATE, default 1gbit, on both
# ends):
#
#     snd (nk-ID-snd)                                  rcv (nk-ID-rcv)
#     to-rcv  10.78.1.1/24  ---- link 1 ----  10.78.1.2/24  to-snd
#             10.78.1.11 = VM vs                10.78.1.12 = VM vr
#     to-rcv2 10.78.2.1/24  ---- link 2 ----  10.78.2.2/24  to-snd2
#
#     sndg, rcvg (nk-ID-sndg, nk-ID-rcvg): guest namespaces, only lo.
#
# MPTCP (both hosts): limits subflow 2 add_addr_accepted 2. snd has the
# endpoint 10.78.2.1 dev to-rcv2 `subflow`, so a connection 10.78.1.11 ->
# 10.78.1.12 (the VM addresses, on link 1) opens a second subflow
# 10.78.2.1 -> 10.78.1.12 over link 2. Source routing: snd `from 10.78.2.1`
# uses table 102 (10.78.1.0/24 via 10.78.2.2 dev to-rcv2); rcv `from
# 10.78.2.2` uses table 102 (10.78.1.0/24 via 10.78.2.1 dev to-snd2); the
# replies of the second subflow (to 10.78.2.1) leave rcv on link 2 by its
# connected route. rp_filter is off in both hosts; their default congestion
# control is set to $NK_CC (default cubic) where the kernel allows it (only
# for a cc in the root namespace's tcp_allowed_congestion_control; otherwise
# native programs set it per socket: nk_stream -C). rcv announces nothing
# (TB2_SIGNAL=1 adds the endpoint 10.78.2.2 dev to-snd2 `signal`).
#
# CoreEngines (root namespace, instances ID-s and ID-r):
#   sender:   --nsm name=tcp,netns=nk-ID-snd,stack=kernel,cc=cubic
#             --nsm name=mptcp,netns=nk-ID-snd,stack=mptcp
#             --vm name=vs,ip=10.78.1.11,nsm=tcp   [--nk-peers 10.78.0.0/16]
#   receiver: --nsm name=mptcp,netns=nk-ID-rcv,stack=mptcp
#             --vm name=vr,ip=10.78.1.12,nsm=mptcp [--nk-peers 10.78.0.0/16]
#   control sockets $TB_DIR/ce-snd.sock, $TB_DIR/ce-rcv.sock, exported as
#   NK_CTL_SND, NK_CTL_RCV; logs $TB_DIR/ce-snd.log, ce-rcv.log.
#
# Functions:
#   tb2_up ID            tb2_net_up ID, then tb2_ce_up; tb_fail on error
#   tb2_net_up ID        namespaces, links, addresses, MPTCP, routing (no CE)
#   tb2_ce_up            start both CoreEngines (again after tb2_ce_down);
#                        returns 1 with a message on stderr if one fails
#   tb2_ce_down          SIGTERM both CoreEngines (they stop their NSMs), wait
#   tb2_host VM          prints the host of a VM (vs -> snd, vr -> rcv)
#   tb2_ctl VM|HOST      prints the control socket of vs/snd or vr/rcv
#   tb2_guest VM CMD...  nkrun --vm VM --ctl CTL --netns nk-ID-sndg|rcvg -- CMD
#                        (foreground, bounded by TB_GUEST_TIMEOUT, default 300 s)
#   tb2_guest_bg VM LOG CMD...   the same in the background (like tb_bg)
#   tb2_nkctl VM|HOST ARGS...    nkctl --ctl CTL ARGS... (bounded, 20 s)
#   tb2_stream_tools WHO sets STREAM and NKCTL (built binaries) or fails
#   tb2_vm_bg VM CONSOLE OUT [nkvm options] -- CMD...
#                        TB2_GUESTS=vm: run CMD in a QEMU VM that is VM vs/vr
#                        (the CoreEngines then declare vs and vr mode=vm)
#   tb2_subflows HOST    number of established TCP subflows of MPTCP sockets
#                        in HOST (ss -tniH state established, tcp-ulp-mptcp)
#
# Environment: TB2_GUESTS (process, default, or vm: guests are QEMU VMs);
# NK_LINK_RATE (default 1gbit); TB2_TBF_BURST (default 256k) and
# TB2_TBF_LATENCY (default 20ms) for the tbf qdiscs; TB2_MPTCP_CSUM (default 1:
# net.mptcp.checksum_enabled in both hosts, see the incident of 2026-11-22); NK_CC (sender's TCP NSM,
# default cubic); TB2_NK_PEERS (default 10.78.0.0/16; empty: never pass
# --nk-peers) and TB2_NK_PEERS_MODE (auto: pass --nk-peers only if
# `nk-coreengine --help` mentions it; on; off). Sets TB2_NK_PEERS_USED=0/1.

# shellcheck source=scenarios/lib/testbed.sh
. "$(dirname "${BASH_SOURCE[0]}")/testbed.sh"

TB2_VS_IP=10.78.1.11
TB2_VR_IP=10.78.1.12
TB2_SND_CE_PID=
TB2_RCV_CE_PID=
TB2_NK_PEERS_USED=0

# ---- network ---------------------------------------------------------------

tb2_net_up() {
	local id=${1:?tb2_net_up ID}
	if [ -z "$TB_ID" ]; then
		tb_init "$id" || return 1
	fi
	local rate=${NK_LINK_RATE:-1gbit}
	local h
	for h in snd rcv sndg rcvg; do
		tb_add_host "$h" || return 1
	done
	for h in sndg rcvg; do
		local links
		links=$(ip -n "$(tb_ns "$h")" -o link show | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }' | tr '\n' ' ')
		[ "$links" = "lo " ] || tb_fail "guest namespace $h must have only lo, has: $links"
	done
	# tbf: 256 KiB of burst holds four 64 KiB GSO packets; 20 ms of queue
	# (2.5 MB at 1 Gbit/s) and one cubic flow saw no drops. Measured with
	# nk_stream, 10 s: TCP 0.93-0.96 Gbit/s, MPTCP (2 subflows) 1.68-1.88
	# (the low end with other load on the 2 cores). A 64 KiB burst cost TCP
	# about 20 %.
	TB_TBF_BURST=${TB2_TBF_BURST:-256k} TB_TBF_LATENCY=${TB2_TBF_LATENCY:-20ms} \
		tb_link_dev snd to-rcv rcv to-snd 10.78.1.1/24 10.78.1.2/24 "$rate" || return 1
	TB_TBF_BURST=${TB2_TBF_BURST:-256k} TB_TBF_LATENCY=${TB2_TBF_LATENCY:-20ms} \
		tb_link_dev snd to-rcv2 rcv to-snd2 10.78.2.1/24 10.78.2.2/24 "$rate" || return 1
	tb_add_addr snd "$TB2_VS_IP/24" to-rcv || return 1
	tb_add_addr rcv "$TB2_VR_IP/24" to-snd || return 1

	local s r
	s=$(tb_ns snd)
	r=$(tb_ns rcv)
	for h in "$s" "$r"; do
		ip netns exec "$h" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
		# Best effort: a namespace may only default to a congestion control
		# listed in the root namespace's tcp_allowed_congestion_control, so
		# native programs should also ask for it per socket (nk_stream -C).
		ip netns exec "$h" sysctl -qw net.ipv4.tcp_congestion_control="${NK_CC:-cubic}" 2>/dev/null ||
			tb_log "$h: default congestion control stays $(ip netns exec "$h" sysctl -n net.ipv4.tcp_congestion_control)" \
				"(${NK_CC:-cubic} is not in tcp_allowed_congestion_control): set it per socket"
		ip netns exec "$h" sysctl -qw net.mptcp.enabled=1 ||
			tb_fail "cannot enable MPTCP in $h (kernel without CONFIG_MPTCP?)"
		ip -n "$h" mptcp limits set subflow 2 add_addr_accepted 2 ||
			tb_fail "ip mptcp limits failed in $h (iproute2 too old?)"
		# DSS checksums: without them this kernel (6.18) corrupted about
		# one switched stream in 130 (docs/incidents/2026-11-22-cold-switch-
		# corrupt.md); with them none in 400 runs, at no measurable cost.
		ip netns exec "$h" sysctl -qw net.mptcp.checksum_enabled="${TB2_MPTCP_CSUM:-1}" ||
			tb_log "$h: cannot set net.mptcp.checksum_enabled=${TB2_MPTCP_CSUM:-1}"
	done
	ip netns exec "$s" sysctl -qw net.ipv4.conf.to-rcv.rp_filter=0 net.ipv4.conf.to-rcv2.rp_filter=0
	ip netns exec "$r" sysctl -qw net.ipv4.conf.to-snd.rp_filter=0 net.ipv4.conf.to-snd2.rp_filter=0

	# snd: the second subflow leaves from 10.78.2.1 over link 2.
	ip -n "$s" route add 10.78.2.0/24 dev to-rcv2 src 10.78.2.1 table 102
	ip -n "$s" route add 10.78.1.0/24 via 10.78.2.2 dev to-rcv2 src 10.78.2.1 table 102
	ip -n "$s" rule add from 10.78.2.1 table 102 priority 100
	ip -n "$s" mptcp endpoint add 10.78.2.1 dev to-rcv2 subflow
	# rcv: anything from its link-2 address goes back over link 2.
	ip -n "$r" route add 10.78.2.0/24 dev to-snd2 src 10.78.2.2 table 102
	ip -n "$r" route add 10.78.1.0/24 via 10.78.2.1 dev to-snd2 src 10.78.2.2 table 102
	ip -n "$r" rule add from 10.78.2.2 table 102 priority 100
	if [ "${TB2_SIGNAL:-0}" = 1 ]; then
		ip -n "$r" mptcp endpoint add 10.78.2.2 dev to-snd2 signal
	fi
}

# ---- CoreEngines -----------------------------------------------------------

tb2__peers_args() {
	local ce=$TB_BUILD/bin/nk-coreengine peers=${TB2_NK_PEERS-10.78.0.0/16}
	TB2_NK_PEERS_USED=0
	[ -n "$peers" ] || return 0
	case ${TB2_NK_PEERS_MODE:-auto} in
	on) TB2_NK_PEERS_USED=1 ;;
	off) ;;
	*)
		if "$ce" --help 2>&1 | grep -q -- '--nk-peers'; then
			TB2_NK_PEERS_USED=1
		else
			tb_log "nk-coreengine does not know --nk-peers yet: started without it" \
				"(connections to the other host are not NetKernel sessions)"
		fi
		;;
	esac
}

# tb2__ce_start ROLE ARGS...: start one CoreEngine, wait for its socket.
tb2__ce_start() {
	local role=$1
	shift
	tb_ce_bg "$TB_DIR/ce-$role.log" "$TB_DIR/ce-$role.sock" --instance "$TB_ID-${role:0:1}" "$@" || return 1
	if [ "$role" = snd ]; then TB2_SND_CE_PID=$TB_LAST_PID; else TB2_RCV_CE_PID=$TB_LAST_PID; fi
}

tb2_ce_up() {
	local b missing=()
	for b in bin/nk-coreengine bin/nk-nsm bin/nkrun bin/nkctl lib/libnkguest.so; do
		[ -e "$TB_BUILD/$b" ] || missing+=("$TB_BUILD/$b")
	done
	if [ ${#missing[@]} -gt 0 ]; then
		echo "tb2: NetKernel is not built: missing ${missing[*]} (run make)" >&2
		return 1
	fi
	tb2__peers_args
	local peers=()
	[ "$TB2_NK_PEERS_USED" = 1 ] && peers=(--nk-peers "${TB2_NK_PEERS-10.78.0.0/16}")
	tb_track_file "/dev/shm/nk-$TB_ID-s-*"
	tb_track_file "/dev/shm/nk-$TB_ID-r-*"
	export NK_CTL_SND=$TB_DIR/ce-snd.sock NK_CTL_RCV=$TB_DIR/ce-rcv.sock
	local mode=
	[ "${TB2_GUESTS:-process}" = vm ] && mode=,mode=vm
	tb2__ce_start snd \
		--nsm "name=tcp,netns=$(tb_ns snd),stack=kernel,cc=${NK_CC:-cubic}" \
		--nsm "name=mptcp,netns=$(tb_ns snd),stack=mptcp" \
		--vm "name=vs,ip=$TB2_VS_IP,nsm=tcp$mode" "${peers[@]+"${peers[@]}"}" || return 1
	tb2__ce_start rcv \
		--nsm "name=mptcp,netns=$(tb_ns rcv),stack=mptcp" \
		--vm "name=vr,ip=$TB2_VR_IP,nsm=mptcp$mode" "${peers[@]+"${peers[@]}"}" || return 1
	export TB2_SND_CE_PID TB2_RCV_CE_PID TB2_NK_PEERS_USED
}

# Stop both CoreEngines (each stops the NSMs it started); bounded.
tb2_ce_down() {
	tb_ce_stop "$TB2_SND_CE_PID" "$TB_DIR/ce-snd.sock" snd
	tb_ce_stop "$TB2_RCV_CE_PID" "$TB_DIR/ce-rcv.sock" rcv
	TB2_SND_CE_PID=''
	TB2_RCV_CE_PID=''
}

tb2_up() {
	tb2_net_up "$@" || tb_fail "tb2_up: network setup failed"
	tb2_ce_up || tb_fail "tb2_up: the CoreEngines did not start"
}

# ---- helpers ---------------------------------------------------------------

tb2_host() {
	case ${1:?tb2_host VM} in
	vs | snd) echo snd ;;
	vr | rcv) echo rcv ;;
	*) echo "tb2: unknown VM or host '$1' (vs, vr, snd, rcv)" >&2; return 1 ;;
	esac
}

tb2_ctl() {
	local h
	h=$(tb2_host "$1") || return 1
	echo "$TB_DIR/ce-$h.sock"
}

tb2_guest() {
	local vm=${1:?tb2_guest VM CMD...} h
	shift
	h=$(tb2_host "$vm") || return 1
	tb__fg "${TB_GUEST_TIMEOUT:-300}" "$TB_BUILD/bin/nkrun" --vm "$vm" --ctl "$TB_DIR/ce-$h.sock" \
		--netns "$(tb_ns "${h}g")" ${TB_GUEST_LIB:+--lib "$TB_GUEST_LIB"} -- "$@"
}

tb2_guest_bg() {
	local vm=${1:?tb2_guest_bg VM LOGFILE CMD...} log=${2:?} h
	shift 2
	h=$(tb2_host "$vm") || return 1
	tb_bg root "$log" "$TB_BUILD/bin/nkrun" --vm "$vm" --ctl "$TB_DIR/ce-$h.sock" \
		--netns "$(tb_ns "${h}g")" ${TB_GUEST_LIB:+--lib "$TB_GUEST_LIB"} -- "$@"
}

# VM mode (TB2_GUESTS=vm): VM vs or vr as a QEMU VM (scenarios/vm/nkvm.sh) in
# the background; CONSOLE is its serial console (live), OUT nkvm's output.
tb2_vm_bg() {
	local vm=${1:?tb2_vm_bg VM CONSOLE OUT [nkvm options] -- CMD...} con=${2:?} out=${3:?} h
	shift 3
	h=$(tb2_host "$vm") || return 1
	tb_vm_bg "$TB_DIR/ce-$h.sock" "$TB_ID-${h:0:1}" "$vm" "$con" "$out" "$@"
}

# tb2_stream_tools WHO: set STREAM (nk_stream) and NKCTL from the build; if
# one is missing, say so in WHO's name and return 1.
tb2_stream_tools() {
	# shellcheck disable=SC2034 # used by the sourcing script
	STREAM=$TB_BUILD/tests/prog/nk_stream
	NKCTL=$TB_BUILD/bin/nkctl
	local p
	for p in "$STREAM" "$NKCTL"; do
		[ -x "$p" ] || { echo "${1:?tb2_stream_tools WHO}: $p is not built (run make)" >&2; return 1; }
	done
}

tb2_nkctl() {
	local h
	h=$(tb2_host "${1:?tb2_nkctl VM|HOST ARGS...}") || return 1
	shift
	tb__fg 20 "$TB_BUILD/bin/nkctl" --ctl "$TB_DIR/ce-$h.sock" "$@"
}

tb2_subflows() {
	ip netns exec "$(tb_ns "${1:?tb2_subflows HOST}")" ss -tniH state established 2>/dev/null |
		grep -c 'tcp-ulp-mptcp' || true
}
