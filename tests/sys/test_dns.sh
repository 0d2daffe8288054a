#!/usr/bin/env bash
# Name resolution in a guest through a DNS server reachable only via the NSM:
# dnsmasq in the remote namespace answers web.nk.test (A) and v6.nk.test
# (AAAA only); the guest namespace gets /etc/netns/<ns>/resolv.conf (nkrun
# bind-mounts it, as ip netns exec does) with that server and `search nk.test`.
# Checks, each with an unmodified program as the guest:
#   - getent ahosts (glibc getaddrinfo) resolves web.nk.test and the short
#     name "web" through the search list; getent hosts (gethostbyname2);
#   - an unknown name fails (getent exit 2), an AAAA-only name gives no IPv4;
#   - python3 getaddrinfo + a TCP connection by name to the remote host;
#   - curl by name downloads a file whose sha256 matches.
# timeout: 120
set -euo pipefail
. "$(dirname "$0")/../../scenarios/lib/testbed.sh"
tb_require python3 curl getent
DNSMASQ=$(command -v dnsmasq || echo /usr/sbin/dnsmasq)
[ -x "$DNSMASQ" ] || { echo "dnsmasq is not installed"; exit 77; }
H=$(dirname "$0")/../compat/helpers.py
tb_netkernel_up "dn$(($$ % 100000))"
D=$TB_DIR
G=$(tb_ns guest)
mkdir -p "/etc/netns/$G"
# /etc/netns/<ns> is ours too: removed on every way out, before tb's cleanup.
dns_exit() {
	local rc=$?
	rm -rf "/etc/netns/$G"
	tb_cleanup "$rc"
	exit "$rc"
}
trap dns_exit EXIT
trap 'rm -rf "/etc/netns/$G"; tb__on_signal 130' INT
trap 'rm -rf "/etc/netns/$G"; tb__on_signal 143' TERM
printf 'nameserver 10.77.0.2\nsearch nk.test\noptions timeout:2 attempts:2\n' >"/etc/netns/$G/resolv.conf"
tb_bg remote "$D/dnsmasq.log" "$DNSMASQ" --no-daemon --no-resolv --no-hosts --bind-interfaces \
	--listen-address=10.77.0.2 --port=53 --user=root --pid-file= \
	--address=/web.nk.test/10.77.0.2 --address=/v6.nk.test/2001:db8::5 --log-queries >/dev/null
udp_up() { [ -n "$(ip netns exec "$(tb_ns remote)" ss -Hlun "sport = :$1")" ]; }
tb_wait_for 10 udp_up 53 || tb_fail "dnsmasq did not start"
mkdir -p "$D/www"
head -c 3M /dev/urandom >"$D/www/f"
tb_bg remote "$D/httpd.log" python3 "$H" httpd 10.77.0.2 8000 "$D/www" >/dev/null
tb_wait_listen remote 8000 || tb_fail "httpd did not start"

out=$(TB_GUEST_TIMEOUT=20 tb_guest getent ahosts web.nk.test) || tb_fail "getent ahosts web.nk.test failed: $out"
echo "$out" | head -3
grep -q '^10\.77\.0\.2 ' <<<"$out" || tb_fail "web.nk.test did not resolve to 10.77.0.2"
out=$(TB_GUEST_TIMEOUT=20 tb_guest getent ahostsv4 web) || tb_fail "short name through the search list failed: $out"
grep -q '^10\.77\.0\.2 ' <<<"$out" || tb_fail "web (search nk.test) did not resolve"
echo "ok: search list"
out=$(TB_GUEST_TIMEOUT=20 tb_guest getent hosts web.nk.test) || tb_fail "gethostbyname path failed: $out"
grep -q '^10\.77\.0\.2 ' <<<"$out" || tb_fail "getent hosts: $out"
echo "ok: gethostbyname2: $out"
rc=0
TB_GUEST_TIMEOUT=30 tb_guest getent ahosts nosuch.nk.test >/dev/null 2>&1 || rc=$?
[ $rc -eq 2 ] || tb_fail "unknown name: getent exit $rc, want 2 (not found)"
echo "ok: unknown name not found"
rc=0
TB_GUEST_TIMEOUT=30 tb_guest getent ahostsv4 v6.nk.test >/dev/null 2>&1 || rc=$?
[ $rc -eq 2 ] || tb_fail "AAAA-only name under AF_INET: getent exit $rc, want 2"
out=$(TB_GUEST_TIMEOUT=20 tb_guest getent ahostsv6 v6.nk.test) || tb_fail "AAAA lookup failed"
grep -q '^2001:db8::5 ' <<<"$out" || tb_fail "AAAA answer: $out"
echo "ok: AAAA"
out=$(TB_GUEST_TIMEOUT=30 tb_guest python3 -c '
import socket
ai = socket.getaddrinfo("web.nk.test", 8000, socket.AF_INET, socket.SOCK_STREAM)
s = socket.create_connection(("web.nk.test", 8000), timeout=10)
s.sendall(b"GET /f HTTP/1.0\r\n\r\n")
print(ai[0][4][0], s.recv(12).decode())') || tb_fail "python3 by name: $out"
[[ $out == "10.77.0.2 HTTP/1."* ]] || tb_fail "python3 by name: $out"
echo "ok: python3 getaddrinfo + connect by name"
out=$(TB_GUEST_TIMEOUT=30 tb_plain_guest curl -sS -o "$D/got" -w '%{http_code} %{size_download}' http://web.nk.test:8000/f 2>&1) || tb_fail "curl by name: $out"
[ "$out" = "200 3145728" ] || tb_fail "curl by name: $out"
cmp -s "$D/www/f" "$D/got" || tb_fail "curl by name: content differs"
echo "ok: curl by name, 3 MiB identical"
grep -c 'query\[' "$D/dnsmasq.log" | sed 's/^/dnsmasq answered queries: /'
echo PASS
