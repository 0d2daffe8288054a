#!/usr/bin/env bash
# Guest processes killed with SIGKILL in the middle of transfers, 200 times:
# their sockets must be closed in the NSM and their chunks reclaimed, so the
# NSM's open fds (/proc/NSMPID/fd) and the pool usage of the VM (nkctl stats:
# rx_used, tx_inflight, sockets) do not grow, the remote peer sees every
# connection closed, and the CoreEngine and the NSM stay up.
# timeout: 300
set -euo pipefail
. "$(dirname "$0")/../../scenarios/lib/testbed.sh"
tb_require python3

BULK=$TB_BUILD/tests/prog/nk_bulk
[ -x "$BULK" ] || { echo "FAIL: $BULK is not built" >&2; exit 1; }
CYCLES=${NK_KILL_CYCLES:-200}
SLACK_FDS=2
tb_netkernel_up "gk$(($$ % 100000))"
D=$TB_DIR

alive() { [ -d "/proc/$1" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }
nfds() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }
stat_vm1() { tb_stat "$1" vm1 || echo "?"; }
remote_conns() { tb_exec remote ss -Htn state established "( sport = :7500 )" | wc -l; }

echo "== warm-up: one complete transfer (starts the NSM)"
tb_bg remote "$D/warm-recv.log" "$BULK" -q recv 7501 >/dev/null
wpid=$TB_LAST_PID
tb_wait_listen remote 7501 || tb_fail "receiver did not start"
TB_GUEST_TIMEOUT=60 tb_guest "$BULK" -q send 10.77.0.2 7501 8M 1 || tb_fail "warm-up transfer failed"
tb_wait_pid "$wpid" 20 || tb_fail "warm-up receiver failed"

tb_bg remote "$D/sink.log" "$BULK" sink 7500 >/dev/null
tb_wait_listen remote 7500 || tb_fail "sink did not start"

nsm=$(tb_nsm_pid)
[ -n "$nsm" ] || tb_fail "no nk-nsm process in $(tb_ns nsm)"
sleep 0.5
base_fds=$(nfds "$nsm")
stats=$(tb_nkctl stats) || tb_fail "nkctl stats failed"
echo "nkctl stats: $stats"
base_rx=$(TB_STATS_TEXT=$stats tb_stat rx_used vm1) || tb_fail "nkctl stats has no rx_used"
base_tx=$(TB_STATS_TEXT=$stats tb_stat tx_inflight vm1) || tb_fail "nkctl stats has no tx_inflight"
base_socks=$(TB_STATS_TEXT=$stats tb_stat sockets vm1 || echo "?")
echo "baseline: NSM $nsm fds=$base_fds, vm1 rx_used=$base_rx tx_inflight=$base_tx sockets=$base_socks"

echo "== $CYCLES cycles: start a guest sender, SIGKILL it mid-transfer"
t0=$(date +%s)
for ((i = 1; i <= CYCLES; i++)); do
	tb_guest_bg "$D/kill.log" "$BULK" -q send 10.77.0.2 7500 100G "$i" >/dev/null
	p=$TB_LAST_PID
	sleep "$(printf '0.%03d' $((20 + RANDOM % 130)))"
	kill -KILL "$p" 2>/dev/null || true
	# nkrun execs the program, but be sure nothing of ours survives in the guest
	for q in $(ip netns pids "$(tb_ns guest)" 2>/dev/null); do kill -KILL "$q" 2>/dev/null || true; done
	wait "$p" 2>/dev/null || true
	if ((i % 50 == 0)); then
		alive "$nsm" || tb_fail "the NSM (pid $nsm) died after $i kills"
		alive "$TB_CE_PID" || tb_fail "the CoreEngine died after $i kills"
		echo "  $i kills: NSM fds=$(nfds "$nsm") vm1 tx_inflight=$(stat_vm1 tx_inflight) rx_used=$(stat_vm1 rx_used) sockets=$(stat_vm1 sockets) ($(($(date +%s) - t0)) s)"
	fi
done

echo "== settle (up to 10 s)"
settled() {
	[ "$(nfds "$nsm")" -le $((base_fds + SLACK_FDS)) ] || return 1
	[ "$(stat_vm1 tx_inflight)" = "$base_tx" ] || return 1
	[ "$(stat_vm1 rx_used)" = "$base_rx" ] || return 1
	[ "$(remote_conns)" -eq 0 ] || return 1
}
tb_wait_for 10 settled || true

end_fds=$(nfds "$nsm")
end_tx=$(stat_vm1 tx_inflight)
end_rx=$(stat_vm1 rx_used)
end_socks=$(stat_vm1 sockets)
conns=$(remote_conns)
moved=$(grep -cE 'closed after [1-9][0-9]* bytes' "$D/sink.log" || true)
echo "after $CYCLES kills: NSM fds=$end_fds (baseline $base_fds), vm1 rx_used=$end_rx ($base_rx)" \
	"tx_inflight=$end_tx ($base_tx) sockets=$end_socks ($base_socks); remote still has $conns connection(s);" \
	"$moved connections had moved data when killed"
alive "$TB_CE_PID" || tb_fail "the CoreEngine died"
alive "$nsm" || tb_fail "the NSM (pid $nsm) died"
[ "$end_fds" -le $((base_fds + SLACK_FDS)) ] || { ls -l "/proc/$nsm/fd"; tb_fail "NSM fds grew from $base_fds to $end_fds"; }
[ "$end_tx" = "$base_tx" ] || tb_fail "tx_inflight is $end_tx, was $base_tx: TX chunks not reclaimed"
[ "$end_rx" = "$base_rx" ] || tb_fail "rx_used is $end_rx, was $base_rx: RX chunks not reclaimed"
if [ "$base_socks" != "?" ] && [ "$end_socks" != "?" ]; then
	[ "$end_socks" -le "$base_socks" ] || tb_fail "vm1 holds $end_socks sockets, was $base_socks"
fi
[ "$conns" -eq 0 ] || tb_fail "$conns connection(s) to the sink are still established: sockets not closed in the NSM"
[ "$moved" -gt 0 ] || tb_fail "no killed sender had moved any data: the kills did not hit transfers"
echo "PASS"
