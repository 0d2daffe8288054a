#!/usr/bin/env bash
# tests/compat/run.sh - GuestLib compatibility matrix (`make compat`).
#
#   tests/compat/run.sh [PATTERN]
#
# Runs real, unmodified programs as NetKernel guests (through nkrun, on the
# standard testbed of scenarios/lib/testbed.sh: guest ns with only lo, NSM ns,
# remote ns) and judges each row on the program's own output: exit status,
# request counts, byte counts, checksums. Rows whose "program case" does not
# contain PATTERN are not run and not listed.
#
# Writes results/compat/summary.json: [{program, case, passed, reason?,
# detail? (what the program reported), seconds}], only rows run in this invocation; a missing program is
# passed=false, reason "not installed". Prints PASS/FAIL per row and
# `N passed, N failed`; exits 0 (this is a report; `make test` is the gate).
# Peers and checkers live in helpers.py; table.py renders the summary as a
# markdown table.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/../../scenarios/lib/testbed.sh"
OUT=$TB_ROOT/results/compat
PATTERN=${1:-}
PY=/usr/bin/python3
[ -x $PY ] || PY=$(command -v python3)
H=$HERE/helpers.py
mkdir -p "$OUT"
ROWS=$OUT/rows.jsonl
: >"$ROWS"
export TB_EXEC_TIMEOUT=90 TB_GUEST_TIMEOUT=90

tb_netkernel_up "cp$(($$ % 100000))" || { echo "testbed did not come up"; exit 1; }
D=$TB_DIR
npass=0 nfail=0

# Everything a row started in the guest and remote namespaces is ours; the
# NSM namespace is left alone (the NSM lives there).
row_cleanup() {
	local ns p
	rm -rf "/etc/netns/$(tb_ns guest)" # dns_curl's resolver configuration
	for ns in guest remote; do
		tb__kill_ns_pids "$(tb_ns "$ns")"
	done
	# nkrun-launched guests run in the guest ns, but tb_bg remembers them;
	# reap whatever has exited so no zombie lingers.
	for p in $(jobs -p); do
		[ "$p" = "$TB_CE_PID" ] && continue
		kill -0 "$p" 2>/dev/null || wait "$p" 2>/dev/null
	done
	return 0
}

# why MSG: set the failure reason of the current row (first one wins).
why() { [ -s "$D/reason" ] || echo "$*" >"$D/reason"; return 1; }

# row PROGRAM CASE FUNCTION [REQUIRED_PROGRAMS...]
row() {
	local prog=$1 case=$2 fn=$3 t0 t1 ok=0 reason="" p
	shift 3
	if [ -n "$PATTERN" ] && [[ "$prog $case" != *"$PATTERN"* ]]; then return 0; fi
	: >"$D/reason"
	t0=$(date +%s.%N)
	for p in "$prog" "$@"; do
		command -v "$p" >/dev/null 2>&1 && continue
		[ -x "$TB_BUILD/tests/prog/$p" ] && continue # our own test programs
		if [ "$p" = "$prog" ]; then why "not installed"; else why "not installed ($p, needed by this row)"; fi
		break
	done
	if [ ! -s "$D/reason" ]; then
		if "$fn" && [ ! -s "$D/reason" ]; then ok=1; fi
	fi
	row_cleanup
	t1=$(date +%s.%N)
	[ $ok = 1 ] || { reason=$(head -c 300 "$D/reason" | tr '\n"\\' '  /' | sed 's/ *$//'); [ -n "$reason" ] || reason="failed (no reason recorded)"; }
	local detail
	detail=$(head -c 200 "$D/note" 2>/dev/null | tr '\n' ' ' | sed 's/ *$//')
	$PY - "$ROWS" "$prog" "$case" "$ok" "$reason" "$t0" "$t1" "$detail" <<'EOF'
import json, sys
path, prog, case, ok, reason, t0, t1, detail = sys.argv[1:]
r = {"program": prog, "case": case, "passed": ok == "1"}
if ok != "1":
    r["reason"] = reason
elif detail:
    r["detail"] = detail
r["seconds"] = round(float(t1) - float(t0), 1)
open(path, "a").write(json.dumps(r) + "\n")
EOF
	if [ $ok = 1 ]; then
		npass=$((npass + 1)); printf 'PASS  %-8s %-34s %s\n' "$prog" "$case" "$(cat "$D/note" 2>/dev/null)"
	else
		nfail=$((nfail + 1)); printf 'FAIL  %-8s %-34s %s\n' "$prog" "$case" "$reason"
	fi
	rm -f "$D/note"
}
note() { echo "$*" >"$D/note"; }

# last N lines of a log, one line
tailof() { tail -n "${2:-2}" "$1" 2>/dev/null | tr '\n' ' ' | cut -c1-200; }

# ------------------------------------------------------------------ iperf3
IPERF_UP=0
iperf_remote() {
	[ $IPERF_UP = 1 ] && tb__listening remote 5201 && return 0
	tb_bg remote "$D/iperf3-srv.log" iperf3 -s -B 10.77.0.2 -p 5201 >/dev/null
	tb_wait_listen remote 5201 || why "iperf3 -s did not start in remote"
	IPERF_UP=1
}
# iperf_guest_client KIND ARGS...: guest iperf3 -c remote, judged by its -J
iperf_guest_client() {
	local kind=$1 rc=0 res
	shift
	IPERF_UP=0
	iperf_remote || return 1
	tb_guest iperf3 -c 10.77.0.2 -p 5201 -t 3 -J "$@" >"$D/ip.json" 2>"$D/ip.err" || rc=$?
	res=$($PY "$H" iperf "$D/ip.json" "$kind") || { why "${res#FAIL }; exit $rc $(tailof "$D/ip.err" 1)"; return 1; }
	[ $rc -eq 0 ] || { why "iperf3 exited $rc"; return 1; }
	note "${res#OK }"
}
iperf_tcp_client() { iperf_guest_client tcp; }
iperf_rev() { iperf_guest_client tcp -R; }
iperf_par4() { iperf_guest_client par4 -P 4; }
iperf_bidir() { iperf_guest_client bidir --bidir; }
# -w 2M: both ends' socket buffers (iperf3 passes it to the server), so that
# a receiver descheduled for a few ms on this 2-core box does not drop.
iperf_udp() { iperf_guest_client udp -u -b 200M -w 2M; }
iperf_udp_rev() { iperf_guest_client udp -u -b 50M -R; }
iperf_udp_server() {
	local spid rc=0 res
	tb_guest_bg "$D/ipus.json" iperf3 -s -1 -B 10.77.0.11 -p 5203 -J >/dev/null
	spid=$TB_LAST_PID
	tb_wait_listen nsm 5203 15 || { why "guest iperf3 -s not listening: $(tailof "$D/ipus.json")"; return 1; }
	tb_exec remote iperf3 -c 10.77.0.11 -p 5203 -u -b 50M -t 3 -J >"$D/ipuc.json" 2>&1 || rc=$?
	# Known gap: iperf3's UDP server learns its client from recvfrom() on an
	# unconnected socket and connect()s to it; GuestLib cannot name the
	# sender (rx ring entries carry no address), so that connect fails.
	res=$($PY "$H" iperf "$D/ipuc.json" udp) || { why "guest: $($PY "$H" iperf "$D/ipus.json" udp | sed 's/^FAIL //'); remote client (exit $rc): ${res#FAIL } [GuestLib gap: recvfrom on an unconnected UDP socket cannot name the sender; the ABI's rx entries carry no address]"; return 1; }
	tb_wait_pid "$spid" 15 || { why "guest iperf3 -s -1 exited $?"; return 1; }
	note "${res#OK }"
}
# IPS_ANY=1: no -B, iperf3's default listener (AF_INET6 [::], dual stack).
iperf_tcp_server() {
	local spid rc=0 res port=${IPS_PORT:-5202} bind=(-B 10.77.0.11)
	[ "${IPS_ANY:-0}" = 1 ] && bind=()
	tb_guest_bg "$D/ips.json" iperf3 -s -1 "${bind[@]+"${bind[@]}"}" -p "$port" -J >/dev/null
	spid=$TB_LAST_PID
	tb_wait_listen nsm "$port" 15 || { why "guest iperf3 -s not listening: $(tailof "$D/ips.json")"; return 1; }
	tb_exec remote iperf3 -c 10.77.0.11 -p "$port" -t 3 -J >"$D/ipc.json" 2>&1 || rc=$?
	res=$($PY "$H" iperf "$D/ipc.json" tcp) || { why "remote client: ${res#FAIL }"; return 1; }
	tb_wait_pid "$spid" 15 || { why "guest iperf3 -s -1 exited $?"; return 1; }
	$PY "$H" iperf "$D/ips.json" server >/dev/null || { why "guest server: $($PY "$H" iperf "$D/ips.json" server)"; return 1; }
	note "${res#OK }"
}

iperf_tcp_server_any() { IPS_ANY=1 IPS_PORT=5204 iperf_tcp_server; }

udp_listening() { [ -n "$(ip netns exec "$(tb_ns remote)" ss -Hlun "sport = :$1")" ]; }

# UDP semantics regression check (tests/prog/nk_dgram) against a remote echo.
udp_semantics() {
	local rc=0
	tb_bg remote "$D/uecho.log" $PY "$H" udp-echo 10.77.0.2 5300 >/dev/null
	tb_wait_for 10 udp_listening 5300 || { why "UDP echo server did not start"; return 1; }
	tb_guest "$TB_BUILD/tests/prog/nk_dgram" 10.77.0.2 5300 >"$D/dgram.out" 2>&1 || rc=$?
	[ $rc -eq 0 ] || { why "exit $rc: $(grep -m2 'FAIL' "$D/dgram.out" | tr '\n' ' ')"; return 1; }
	note "$(grep -c '^ok' "$D/dgram.out") checks"
}

# POSIX semantics (tests/prog/nk_posix, also tests/sys/test_posix.sh)
posix_semantics() {
	local rc=0
	tb_bg remote "$D/uecho2.log" $PY "$H" udp-echo 10.77.0.2 5301 >/dev/null
	tb_wait_for 10 udp_listening 5301 || { why "UDP echo server did not start"; return 1; }
	tb_guest "$TB_BUILD/tests/prog/nk_posix" 10.77.0.11 10.77.0.2 5301 >"$D/posix.out" 2>&1 || rc=$?
	[ $rc -eq 0 ] || { why "exit $rc: $(grep -m3 '^FAIL' "$D/posix.out" | tr '\n' ' ')"; return 1; }
	note "$(grep -c '^ok' "$D/posix.out") checks"
}

# ------------------------------------------------------------------ DNS
# getaddrinfo through a DNS server reachable only via the NSM: dnsmasq in the
# remote namespace, the guest namespace's resolv.conf from /etc/netns (nkrun
# bind-mounts it, as ip netns exec does); curl downloads by name.
dns_curl() {
	local g rc=0 out
	g=$(tb_ns guest)
	HTTPD_UP=0; httpd_remote || return 1
	mkdir -p "/etc/netns/$g"
	printf 'nameserver 10.77.0.2\nsearch nk.test\noptions timeout:2\n' >"/etc/netns/$g/resolv.conf"
	tb_bg remote "$D/dnsmasq.log" /usr/sbin/dnsmasq --no-daemon --no-resolv --no-hosts \
		--bind-interfaces --listen-address=10.77.0.2 --user=root --pid-file= \
		--address=/web.nk.test/10.77.0.2 >/dev/null
	tb_wait_for 10 udp_listening 53 || { rm -rf "/etc/netns/$g"; why "dnsmasq did not start"; return 1; }
	out=$(tb_plain_guest curl -sS -o "$D/gotn" -w '%{http_code} %{size_download}' http://web:8000/big 2>&1) || rc=$?
	rm -rf "/etc/netns/$g"
	[ $rc -eq 0 ] && [ "$out" = "200 20971520" ] || { why "curl http://web:8000/ (search nk.test): exit $rc '$out'"; return 1; }
	cmp -s "$D/www/big" "$D/gotn" || { why "content differs"; return 1; }
	note "web -> web.nk.test -> 10.77.0.2 via dnsmasq, 20 MiB identical"
}

# ------------------------------------------------------------------ curl
HTTPD_UP=0
httpd_remote() {
	[ $HTTPD_UP = 1 ] && return 0
	mkdir -p "$D/www"
	head -c 20M /dev/urandom >"$D/www/big"
	head -c 1000 /dev/urandom >"$D/www/small"
	tb_bg remote "$D/httpd.log" $PY "$H" httpd 10.77.0.2 8000 "$D/www" >/dev/null
	tb_wait_listen remote 8000 || { why "python httpd did not start in remote"; return 1; }
	HTTPD_UP=1
}
curl_download() {
	HTTPD_UP=0; httpd_remote || return 1
	local rc=0 out want got
	out=$(tb_plain_guest curl -sS -o "$D/got" -w '%{http_code} %{size_download}' http://10.77.0.2:8000/big 2>&1) || rc=$?
	[ $rc -eq 0 ] || { why "curl exited $rc: $out"; return 1; }
	[ "$out" = "200 20971520" ] || { why "curl reported '$out', want '200 20971520'"; return 1; }
	want=$(sha256sum <"$D/www/big" | cut -c1-64); got=$(sha256sum <"$D/got" | cut -c1-64)
	[ "$want" = "$got" ] || { why "sha256 mismatch"; return 1; }
	note "20 MiB, sha256 ${got:0:16}.."
}
curl_upload() {
	HTTPD_UP=0; httpd_remote || return 1
	local rc=0 out want
	head -c 8M /dev/urandom >"$D/upload"
	want=$(sha256sum <"$D/upload" | cut -c1-64)
	out=$(tb_plain_guest curl -sS -T "$D/upload" -w '%{http_code}' http://10.77.0.2:8000/up/u1 2>&1) || rc=$?
	[ $rc -eq 0 ] || { why "curl -T exited $rc: $out"; return 1; }
	[ "$out" = "$want 8388608
201" ] || { why "server answered '$(echo $out)', want '$want 8388608 201'"; return 1; }
	[ "$(sha256sum <"$D/www/up/u1" | cut -c1-64)" = "$want" ] || { why "stored file differs"; return 1; }
	note "8 MiB PUT, server sha256 matches"
}
curl_50() {
	HTTPD_UP=0; httpd_remote || return 1
	local rc=0 n
	# 50 curl processes, one connection each; each prints code and size.
	tb_plain_guest bash -c 'for i in $(seq 50); do curl -sS -w "%{http_code} %{size_download} %{num_connects}\n" -o /dev/null http://10.77.0.2:8000/small || echo "curl exit $?"; done' >"$D/c50.out" 2>&1 || rc=$?
	n=$(grep -c '^200 1000 1$' "$D/c50.out")
	[ "$n" = 50 ] || { why "$n/50 transfers ok (exit $rc): $(grep -v '^200 1000 1$' "$D/c50.out" | sort | uniq -c | head -3 | tr '\n' ' ')"; return 1; }
	note "50/50 connections, 200 + 1000 bytes each"
}

# ------------------------------------------------------------------ python3
py_httpserver() {
	local rc=0 out
	mkdir -p "$D/gwww"; head -c 5M /dev/urandom >"$D/gwww/f"
	tb_guest_bg "$D/gpy.log" $PY -m http.server 8100 --bind 10.77.0.11 --directory "$D/gwww" >/dev/null
	tb_wait_listen nsm 8100 15 || { why "guest http.server not listening: $(tailof "$D/gpy.log")"; return 1; }
	out=$(tb_exec remote curl -sS -o "$D/gpy.got" -w '%{http_code} %{size_download}' http://10.77.0.11:8100/f 2>&1) || rc=$?
	[ $rc -eq 0 ] && [ "$out" = "200 5242880" ] || { why "remote curl: exit $rc '$out'"; return 1; }
	cmp -s "$D/gwww/f" "$D/gpy.got" || { why "content differs"; return 1; }
	note "5 MiB served, content identical"
}
py_echo() { # py_echo SERVER_HOST CLIENT_HOST
	local addr port=8200 rc=0 out
	if [ "$1" = guest ]; then
		addr=10.77.0.11
		tb_guest_bg "$D/echo.log" $PY "$H" echo-server $addr $port >/dev/null
		tb_wait_listen nsm $port 15 || { why "guest echo server not listening: $(tailof "$D/echo.log")"; return 1; }
		out=$(tb_exec remote $PY "$H" echo-client $addr $port 200 2>&1) || rc=$?
	else
		addr=10.77.0.2 port=8201
		tb_bg remote "$D/echo.log" $PY "$H" echo-server $addr $port >/dev/null
		tb_wait_listen remote $port || { why "remote echo server not listening"; return 1; }
		out=$(tb_guest $PY "$H" echo-client $addr $port 200 2>&1) || rc=$?
	fi
	[ $rc -eq 0 ] && [[ $out == OK* ]] || { why "client exit $rc: $(echo "$out" | tail -n 2 | tr '\n' ' ' | cut -c1-200)"; return 1; }
	note "${out#OK }"
}
py_echo_gs() { py_echo guest remote; }
py_echo_gc() { py_echo remote guest; }

# ------------------------------------------------------------------ nginx / wrk
nginx_conf() { # nginx_conf DIR LISTEN WORKERS [HTTP_DIRECTIVES]
	local w=$1
	mkdir -p "$w/www" "$w/tmp"
	[ -f "$w/www/4k" ] || head -c 4096 /dev/urandom >"$w/www/4k"
	cat >"$w/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes $3;
user root;
pid $w/nginx.pid;
error_log $w/error.log warn;
events { worker_connections 1024; }
http {
	access_log off;
	client_body_temp_path $w/tmp/body;
	proxy_temp_path $w/tmp/proxy;
	fastcgi_temp_path $w/tmp/fastcgi;
	uwsgi_temp_path $w/tmp/uwsgi;
	scgi_temp_path $w/tmp/scgi;
	default_type application/octet-stream;
	${4:-}
	server { listen $2; root $w/www; location / { } }
}
EOF
}
# wrk_judge FILE: requests > 0, no socket errors, no non-2xx
wrk_judge() {
	local f=$1 req
	req=$(awk '/requests in/ { print $1 }' "$f")
	[ -n "$req" ] && [ "$req" -gt 0 ] || { why "wrk: no requests: $(tailof "$f" 3)"; return 1; }
	grep -q 'Socket errors' "$f" && { why "wrk: $(grep 'Socket errors' "$f" | sed 's/^ *//') ($req requests)"; return 1; }
	grep -q 'Non-2xx' "$f" && { why "wrk: $(grep 'Non-2xx' "$f" | sed 's/^ *//')"; return 1; }
	note "$req requests, 0 socket errors, $(awk '/Requests\/sec/ { print $2 }' "$f") req/s"
}
NGINX_G=0
NGINX_LISTEN=10.77.0.11:8080
NGINX_HTTP=
nginx_guest_up() {
	[ $NGINX_G = 1 ] && return 0
	nginx_conf "$D/ng" "$NGINX_LISTEN" 4 "$NGINX_HTTP"
	tb_guest_bg "$D/ng.log" nginx -e "$D/ng/error.log" -p "$D/ng" -c "$D/ng/nginx.conf" >/dev/null
	tb_wait_listen nsm 8080 15 || { why "guest nginx not listening: $(tailof "$D/ng/error.log" 2)"; return 1; }
	sleep 0.5
	local w
	w=$(pgrep -c -P "$TB_LAST_PID" nginx || true)
	[ "$w" = 4 ] || { why "guest nginx has $w worker processes, want 4: $(tailof "$D/ng/error.log" 2)"; return 1; }
	NGINX_G=1
}
nginx_wrk() { # nginx_wrk [HEADER...]
	NGINX_G=0; nginx_guest_up || return 1
	tb_exec remote wrk -t 2 -c 32 -d 3 "$@" http://10.77.0.11:8080/4k >"$D/wrk.out" 2>&1 || { why "wrk exited $?: $(tailof "$D/wrk.out")"; return 1; }
	wrk_judge "$D/wrk.out" || { [ -s "$D/ng/error.log" ] && echo "$(cat "$D/reason"); nginx: $(tailof "$D/ng/error.log" 1)" >"$D/reason"; return 1; }
	kill -0 "$TB_LAST_PID" 2>/dev/null || { why "guest nginx died: $(tailof "$D/ng/error.log" 2)"; return 1; }
}
nginx_ka() { nginx_wrk; }
nginx_close() { nginx_wrk -H 'Connection: close'; }
nginx_any() { NGINX_LISTEN=0.0.0.0:8080 nginx_wrk -H 'Connection: close'; }
# nginx's [::] listener is IPv6-only unless ipv6only=off; Debian's default
# site pairs "listen 80" with "listen [::]:80": both must bind.
nginx_v6any() { NGINX_LISTEN='[::]:8080 ipv6only=off' nginx_wrk -H 'Connection: close'; }
nginx_v4v6() { NGINX_LISTEN='8080; listen [::]:8080' nginx_wrk -H 'Connection: close'; }
nginx_reuseport() { NGINX_LISTEN="10.77.0.11:8080 reuseport" nginx_wrk -H 'Connection: close'; }
# sendfile on: nginx sends file bodies with sendfile(2) from a regular file
# to the NetKernel socket (GuestLib's sendfile interposer).
nginx_sendfile() {
	local rc=0 out want
	NGINX_G=0 NGINX_HTTP="sendfile on; tcp_nopush on;" nginx_guest_up || return 1
	head -c 20M /dev/urandom >"$D/ng/www/big"
	want=$(sha256sum <"$D/ng/www/big" | cut -c1-64)
	out=$(tb_exec remote curl -sS -o "$D/ng.got" -w '%{http_code} %{size_download}' http://10.77.0.11:8080/big 2>&1) || rc=$?
	[ $rc -eq 0 ] && [ "$out" = "200 20971520" ] || { why "remote curl: exit $rc '$out' $(tailof "$D/ng/error.log" 1)"; return 1; }
	[ "$(sha256sum <"$D/ng.got" | cut -c1-64)" = "$want" ] || { why "sha256 mismatch"; return 1; }
	note "20 MiB via sendfile, sha256 ${want:0:16}.."
}
wrk_guest() {
	nginx_conf "$D/nr" 10.77.0.2:8081 2
	tb_bg remote "$D/nr.log" nginx -e "$D/nr/error.log" -p "$D/nr" -c "$D/nr/nginx.conf" >/dev/null
	tb_wait_listen remote 8081 || { why "remote nginx did not start"; return 1; }
	tb_guest wrk -t 2 -c 32 -d 3 http://10.77.0.2:8081/4k >"$D/wrkg.out" 2>&1 || { why "guest wrk exited $?: $(tailof "$D/wrkg.out")"; return 1; }
	wrk_judge "$D/wrkg.out"
}

# ------------------------------------------------------------------ socat
socat_relay() {
	local rc=0 out
	tb_bg remote "$D/up.log" $PY "$H" echo-server 10.77.0.2 9001 >/dev/null
	tb_wait_listen remote 9001 || { why "remote echo server did not start"; return 1; }
	tb_guest_bg "$D/socat.log" socat TCP-LISTEN:9000,bind=10.77.0.11,reuseaddr,fork TCP:10.77.0.2:9001 >/dev/null
	tb_wait_listen nsm 9000 15 || { why "guest socat not listening: $(tailof "$D/socat.log")"; return 1; }
	out=$(tb_exec remote $PY "$H" relay-check 10.77.0.11 9000 16 2>&1) || rc=$?
	[ $rc -eq 0 ] && [[ $out == OK* ]] || { why "through relay: exit $rc $(echo "$out" | tail -n 1 | cut -c1-150); socat: $(tailof "$D/socat.log" 1)"; return 1; }
	note "${out#OK }"
}

# ------------------------------------------------------------------ redis / memcached / sockperf
# --protected-mode no: Redis 7 without a password refuses every non-loopback
# client (natively too), and our clients are on the remote host.
redis_bench() {
	tb_guest_bg "$D/redis.log" redis-server --bind 10.77.0.11 --port 6379 --save '' --appendonly no --protected-mode no >/dev/null
	tb_wait_listen nsm 6379 15 || { why "guest redis not listening: $(tailof "$D/redis.log")"; return 1; }
	tb_exec remote redis-benchmark -h 10.77.0.11 -p 6379 -n 20000 -c 20 -t set,get -q >"$D/rb.out" 2>&1 || { why "redis-benchmark exited $?: $(tailof "$D/rb.out")"; return 1; }
	[ "$(tr '\r' '\n' <"$D/rb.out" | grep -c 'requests per second')" -ge 2 ] || { why "redis-benchmark: $(tailof "$D/rb.out")"; return 1; }
	note "$(tr '\r' '\n' <"$D/rb.out" | grep 'requests per second' | sed 's/ *requests per second.*//' | tr '\n' ' ')"
}
redis_guest_bench() {
	tb_bg remote "$D/redisr.log" redis-server --bind 10.77.0.2 --port 6380 --save '' --appendonly no --protected-mode no >/dev/null
	tb_wait_listen remote 6380 || { why "remote redis did not start"; return 1; }
	tb_guest redis-benchmark -h 10.77.0.2 -p 6380 -n 20000 -c 20 -t set,get -q >"$D/rbg.out" 2>&1 || { why "guest redis-benchmark exited $?: $(tailof "$D/rbg.out")"; return 1; }
	[ "$(tr '\r' '\n' <"$D/rbg.out" | grep -c 'requests per second')" -ge 2 ] || { why "redis-benchmark: $(tailof "$D/rbg.out")"; return 1; }
	note "$(tr '\r' '\n' <"$D/rbg.out" | grep 'requests per second' | sed 's/ *requests per second.*//' | tr '\n' ' ')"
}
memcached_row() {
	local out
	tb_guest_bg "$D/mc.log" memcached -u root -l 10.77.0.11 -p 11211 -U 0 -t 4 >/dev/null
	tb_wait_listen nsm 11211 15 || { why "guest memcached not listening: $(tailof "$D/mc.log")"; return 1; }
	# 4 client threads, 8 connections each over time, 50 keys per
	# connection: set random values, get them back, compare.
	out=$(tb_exec remote $PY -c 'import random, socket, sys, threading
bad = []; done = [0]
def worker(t):
    rnd = random.Random(t)
    for c in range(8):
        s = socket.create_connection(("10.77.0.11", 11211), timeout=10)
        f = s.makefile("rb")
        for k in range(50):
            key = "k%d_%d_%d" % (t, c, k)
            val = rnd.randbytes(rnd.randint(1, 3000))
            s.sendall(b"set %s 0 0 %d\r\n%s\r\n" % (key.encode(), len(val), val))
            if f.readline() != b"STORED\r\n": bad.append(key); continue
            s.sendall(b"get %s\r\n" % key.encode())
            hdr = f.readline().split()
            got = f.read(int(hdr[3]) + 2)[:-2] if len(hdr) == 4 else None
            if f.readline() != b"END\r\n" or got != val: bad.append(key); continue
            done[0] += 1
        s.close()
ts = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
[t.start() for t in ts]; [t.join() for t in ts]
print("OK %d" % done[0] if not bad else "FAIL %d bad, first %s" % (len(bad), bad[0]))' 2>&1)
	[ "$out" = "OK 1600" ] || { why "memcached client: $(echo "$out" | tail -n 1)"; return 1; }
	note "-t 4: 1600 set/get verified over 32 connections from 4 threads"
}
# Each row starts its own servers (row_cleanup kills the remote's processes).
sockperf_remote() {
	tb_bg remote "$D/sp.log" sockperf server --tcp -i 10.77.0.2 -p 11111 >/dev/null
	tb_bg remote "$D/spu.log" sockperf server -i 10.77.0.2 -p 11112 >/dev/null
	tb_wait_listen remote 11111 || { why "sockperf server did not start"; return 1; }
	sleep 0.3
}
sockperf_pp() { # sockperf_pp [--tcp]
	local port=11112 n
	[ "${1:-}" = --tcp ] && port=11111
	sockperf_remote || return 1
	tb_guest sockperf ping-pong "$@" -i 10.77.0.2 -p $port -t 3 >"$D/spc.out" 2>&1 || { why "sockperf exited $?: $(tailof "$D/spc.out")"; return 1; }
	n=$(grep -o 'ReceivedMessages=[0-9]*' "$D/spc.out" | head -1 | cut -d= -f2)
	[ "${n:-0}" -gt 0 ] || { why "sockperf received no replies: $(tailof "$D/spc.out")"; return 1; }
	note "$n replies, $(grep -o 'avg-latency=[0-9.]*' "$D/spc.out" | head -1) usec"
}
sockperf_tp() { # sockperf_tp [--tcp]
	local port=11112 r
	[ "${1:-}" = --tcp ] && port=11111
	sockperf_remote || return 1
	tb_guest sockperf throughput "$@" -i 10.77.0.2 -p $port -t 3 -m 1400 >"$D/spt.out" 2>&1 || { why "sockperf exited $?: $(tailof "$D/spt.out")"; return 1; }
	r=$(sed -n 's/.*Message Rate is \([0-9]*\).*/\1/p' "$D/spt.out" | head -1)
	[ "${r:-0}" -gt 0 ] || { why "sockperf throughput: $(tailof "$D/spt.out")"; return 1; }
	note "$r msg/s of 1400 B, $(sed -n 's/.*BandWidth is \([0-9.]*\) MBps.*/\1/p' "$D/spt.out" | head -1) MB/s"
}
sockperf_row() { sockperf_pp --tcp; }
sockperf_udp() { sockperf_pp; }
sockperf_tcp_tp() { sockperf_tp --tcp; }
sockperf_udp_tp() { sockperf_tp; }

row iperf3 "TCP client (guest -> remote)" iperf_tcp_client
row iperf3 "TCP server (remote -> guest)" iperf_tcp_server
row iperf3 "TCP client -R" iperf_rev
row iperf3 "TCP client -P 4" iperf_par4
row iperf3 "TCP client --bidir" iperf_bidir
row iperf3 "TCP server, default listen [::] (dual stack)" iperf_tcp_server_any
row iperf3 "UDP client -u -b 200M -w 2M" iperf_udp
row iperf3 "UDP client -u -R (guest receives)" iperf_udp_rev
row iperf3 "UDP server -u (remote -> guest)" iperf_udp_server
row nk_dgram "UDP semantics (boundaries, source, errnos)" udp_semantics
row nk_posix "POSIX semantics (io, events, errors, fds, signals, udp, v6, loopback, exec)" posix_semantics
row curl "by name: getaddrinfo via dnsmasq in remote" dns_curl dnsmasq
row curl "download 20 MiB + sha256" curl_download sha256sum
row curl "upload -T 8 MiB (PUT)" curl_upload sha256sum
row curl "50 sequential connections" curl_50
row python3 "http.server in guest" py_httpserver curl
row python3 "asyncio echo, guest server" py_echo_gs
row python3 "asyncio echo, guest client" py_echo_gc
row nginx "4 workers + remote wrk keep-alive" nginx_ka wrk
row nginx "4 workers + remote wrk Connection: close" nginx_close wrk
row nginx "listen 0.0.0.0:8080 + wrk close" nginx_any wrk
row nginx "listen [::]:8080 ipv6only=off + wrk close" nginx_v6any wrk
row nginx "listen 8080 + listen [::]:8080 (Debian default)" nginx_v4v6 wrk
row nginx "listen reuseport + wrk close" nginx_reuseport wrk
row nginx "sendfile on, 20 MiB + sha256" nginx_sendfile curl
row wrk "guest wrk -> remote nginx" wrk_guest nginx
row socat "TCP relay in guest, 16 MiB echoed" socat_relay
row redis-server "redis-benchmark set/get from remote" redis_bench redis-benchmark
row redis-benchmark "guest benchmark -> remote redis" redis_guest_bench redis-server
row memcached "-t 4, 1600 set/get verified from remote" memcached_row
row sockperf "TCP ping-pong guest -> remote" sockperf_row
row sockperf "UDP ping-pong guest -> remote" sockperf_udp
row sockperf "TCP throughput guest -> remote" sockperf_tcp_tp
row sockperf "UDP throughput guest -> remote" sockperf_udp_tp

$PY - "$ROWS" "$OUT/summary.json" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
json.dump(rows, open(sys.argv[2], "w"), indent=1)
EOF
rm -f "$ROWS"
echo "$npass passed, $nfail failed"
echo "summary: $OUT/summary.json"
exit 0
