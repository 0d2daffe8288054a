#!/usr/bin/env bash
# curl in a NetKernel guest downloads a 100 MB random file from nginx running
# natively in remote; the SHA-256 of the copy must match the original.
# timeout: 300
set -euo pipefail
. "$(dirname "$0")/../../scenarios/lib/testbed.sh"
tb_require nginx curl sha256sum

tb_netkernel_up "cn$(($$ % 100000))"
W=$TB_DIR/nginx
mkdir -p "$W/www" "$W/tmp"
head -c 100M /dev/urandom >"$W/www/big"
want=$(sha256sum "$W/www/big" | cut -d' ' -f1)

cat >"$W/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 1;
user root;
pid $W/nginx.pid;
error_log $W/error.log info;
events { worker_connections 64; }
http {
	access_log $W/access.log;
	client_body_temp_path $W/tmp/body;
	proxy_temp_path $W/tmp/proxy;
	fastcgi_temp_path $W/tmp/fastcgi;
	uwsgi_temp_path $W/tmp/uwsgi;
	scgi_temp_path $W/tmp/scgi;
	default_type application/octet-stream;
	sendfile on;
	server {
		listen 10.77.0.2:8080;
		root $W/www;
		location / { }
	}
}
EOF

echo "== nginx in remote"
tb_bg remote "$TB_DIR/nginx.log" nginx -e "$W/error.log" -p "$W" -c "$W/nginx.conf" >/dev/null
tb_wait_listen remote 8080 || { cat "$W/error.log" 2>/dev/null; tb_fail "nginx did not start"; }

# NK_GUEST_SPINS: this download also runs GuestLib's spin-before-sleep path,
# which is off by default
echo "== guest: curl http://10.77.0.2:8080/big (NK_GUEST_SPINS=32)"
t0=$(date +%s.%N)
rc=0
NK_GUEST_SPINS=32 TB_GUEST_TIMEOUT=180 tb_plain_guest curl -sS -o "$W/got" http://10.77.0.2:8080/big || rc=$?
t1=$(date +%s.%N)
[ $rc -eq 0 ] || tb_fail "curl in the guest exited with status $rc"
[ -f "$W/got" ] || tb_fail "curl wrote no file"
size=$(stat -c %s "$W/got")
got=$(sha256sum "$W/got" | cut -d' ' -f1)
echo "downloaded $size bytes in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }') s"
echo "sha256 original $want"
echo "sha256 download $got"
[ "$size" -eq $((100 * 1024 * 1024)) ] || tb_fail "downloaded $size bytes, want 104857600"
[ "$got" = "$want" ] || tb_fail "SHA-256 mismatch"
grep -q '^10\.77\.0\.11 .*"GET /big' "$W/access.log" || tb_fail "nginx did not log a GET /big from 10.77.0.11"
echo "PASS"
