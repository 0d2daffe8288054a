#!/usr/bin/env bash
# reproduce.sh - run one experiment of NetKernel-C end to end.
#
#   ./reproduce.sh list                 the experiments
#   ./reproduce.sh fig-NAME [ARGS...]   set up, run, write results/fig-NAME/, tear down
#   ./reproduce.sh --help
#
# Needs root. Installs what is missing (Debian packages, apt-get), builds with
# `make -j2` (incremental), then runs scenarios/fig-NAME.sh ARGS...
# NK_NO_INSTALL=1 skips the installation step, NK_NO_MAKE=1 the build.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$ROOT" || exit 1

# name|arguments|description  (only experiments that exist)
EXPERIMENTS=(
	"fig-switch|[--guests process|vm] [--phase S]|live TCP -> MPTCP switching of a running stream over two 1 Gbit/s paths (HotNets'17 Fig. 2)"
	"fig-perf|[--quick] [--only LIST] [--runs N]|application benchmarks, NetKernel vs native alternating: iperf3, sockperf, micro-RPC, nginx+wrk, redis, CPU cost (results/bench/)"
	"fig-mux|[--quick] [--vms \"1 2 4 8\"] [--reps K]|N VMs with the same load on one shared NSM vs one NSM per VM: throughput and the NSMs' CPU (cores saved)"
	"fig-isolation|[--quick] [--nsm-rate R] [--cap R]|three VMs share one NSM, one opens 16 streams: per-VM throughput with the CoreEngine's isolation off and on (Jain), then a rate cap"
)
# the paper's other figures: not written yet
PLANNED="shared-memory NSM, userspace (DPDK) NSM, ns-3 scale"

usage() {
	echo "usage: ./reproduce.sh fig-NAME [ARGS...] | list | --help"
	echo
	echo "experiments:"
	list
	echo
	echo "Results go to results/fig-NAME/ (data.csv, summary.json, fig-NAME.png). Needs root."
	echo "Environment: NK_NO_INSTALL=1 (do not apt-get install), NK_NO_MAKE=1 (do not run make),"
	echo "NK_KEEP=1 (keep the testbed's temporary directory)."
}

list() {
	local e name args desc
	for e in "${EXPERIMENTS[@]}"; do
		IFS='|' read -r name args desc <<<"$e"
		printf '  %-44s %s\n' "$name $args" "$desc"
	done
	echo "  not yet implemented: $PLANNED"
}

# command package: what the experiments and the build need (fig-mux and
# fig-isolation: iperf3, python3, gnuplot, ss, tc)
NEEDS=(
	"make build-essential"
	"gcc build-essential"
	"ip iproute2"
	"tc iproute2"
	"ss iproute2"
	"iperf3 iperf3"
	"python3 python3"
	"gnuplot gnuplot-nox"
	"mptcpize mptcpize"
	"timeout coreutils"
)

install_missing() {
	local n cmd pkg missing=()
	for n in "${NEEDS[@]}"; do
		read -r cmd pkg <<<"$n"
		command -v "$cmd" >/dev/null 2>&1 && continue
		[[ " ${missing[*]-} " == *" $pkg "* ]] || missing+=("$pkg")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	if [ "${NK_NO_INSTALL:-0}" = 1 ] || ! command -v apt-get >/dev/null 2>&1; then
		echo "reproduce.sh: missing packages: ${missing[*]} (install them; NK_NO_INSTALL=1 or no apt-get)" >&2
		return 1
	fi
	echo "== installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	if ! apt-get install -y --no-install-recommends "${missing[@]}" >/tmp/reproduce-apt.log 2>&1; then
		apt-get update >>/tmp/reproduce-apt.log 2>&1
		if ! apt-get install -y --no-install-recommends "${missing[@]}" >>/tmp/reproduce-apt.log 2>&1; then
			echo "reproduce.sh: apt-get install ${missing[*]} failed; see /tmp/reproduce-apt.log" >&2
			return 1
		fi
	fi
	# a package can be installed but its program still missing (dpkg -s tells)
	for n in "${NEEDS[@]}"; do
		read -r cmd pkg <<<"$n"
		if ! command -v "$cmd" >/dev/null 2>&1; then
			echo "reproduce.sh: $cmd still missing after installing $pkg ($(dpkg -s "$pkg" 2>/dev/null | grep -m1 '^Status' || echo 'not installed'))" >&2
			return 1
		fi
	done
}

build() {
	[ "${NK_NO_MAKE:-0}" = 1 ] && return 0
	echo "== make -j2"
	if ! make -j2 >/tmp/reproduce-make.log 2>&1; then
		tail -n 20 /tmp/reproduce-make.log >&2
		echo "reproduce.sh: make failed (full log: /tmp/reproduce-make.log); NK_NO_MAKE=1 runs the binaries already in build/" >&2
		return 1
	fi
}

case ${1:-} in
"")
	usage >&2
	exit 2
	;;
-h | --help | help)
	usage
	exit 0
	;;
list)
	list
	exit 0
	;;
esac

name=$1
shift
found=
for e in "${EXPERIMENTS[@]}"; do
	[ "${e%%|*}" = "$name" ] && found=1
done
if [ -z "$found" ]; then
	if [[ $name == fig-* ]]; then
		echo "reproduce.sh: no experiment $name (available: $(for e in "${EXPERIMENTS[@]}"; do printf '%s ' "${e%%|*}"; done | sed 's/ $//'); the others are not yet implemented)" >&2
	else
		echo "reproduce.sh: unknown command '$name' (try ./reproduce.sh list)" >&2
	fi
	exit 2
fi
if [ "$(id -u)" != 0 ]; then
	echo "reproduce.sh: must run as root (network namespaces, veth pairs, tc); try: sudo ./reproduce.sh $name $*" >&2
	exit 1
fi
# Options are checked by the scenario before anything is installed or built.
for a in "$@"; do
	case $a in
	-h | --help) exec "$ROOT/scenarios/$name.sh" --help ;;
	esac
done
# --guests vm|process is every experiment's option: VM mode needs QEMU, a
# static busybox and a Debian kernel to build the guest image from.
prev=
for a in "$@"; do
	if { [ "$prev" = --guests ] && [ "$a" = vm ]; } || [ "$a" = --guests=vm ]; then
		NEEDS+=("qemu-system-x86_64 qemu-system-x86" "cpio cpio" "busybox busybox-static" "xz xz-utils")
		if ! ls /boot/vmlinuz-*-amd64 >/dev/null 2>&1 && [ "${NK_NO_INSTALL:-0}" != 1 ]; then
			echo "== installing linux-image-amd64 (the VM guests' kernel)"
			DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends linux-image-amd64 >/tmp/reproduce-apt.log 2>&1 ||
				{ echo "reproduce.sh: apt-get install linux-image-amd64 failed; see /tmp/reproduce-apt.log" >&2; exit 1; }
		fi
	fi
	prev=$a
done
install_missing || exit 1
build || exit 1
exec "$ROOT/scenarios/$name.sh" "$@"
