#!/usr/bin/env bash
# VM mode: nginx (master + 1 forked worker) inside a QEMU VM serves a 10 MB
# file to curl on the remote host; the sha256 must match. The VM then learns
# from the remote (a flag served by a small HTTP server there) that it may
# stop, quits nginx and powers off by itself.
# timeout: 400
set -euo pipefail
. "$(dirname "$0")/../../scenarios/lib/testbed.sh"
tb_require curl sha256sum
tb_vm_require
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { echo "nginx is not installed"; exit 77; }
tb_netkernel_up "vn$(($$ % 100000))" --vm name=qv1,ip=10.77.0.21,nsm=tcp,mode=vm
D=$TB_DIR
head -c 10485760 /dev/urandom >"$D/big.bin"
want=$(sha256sum "$D/big.bin" | awk '{ print $1 }')
cat >"$D/nginx.conf" <<'C'
daemon off;
master_process on;
worker_processes 1;
user root;
error_log /dev/stderr warn;
pid /tmp/nginx.pid;
events { worker_connections 64; }
http {
	access_log off;
	default_type application/octet-stream;
	sendfile on;
	client_body_temp_path /tmp/body;
	proxy_temp_path /tmp/proxy;
	fastcgi_temp_path /tmp/fastcgi;
	uwsgi_temp_path /tmp/uwsgi;
	scgi_temp_path /tmp/scgi;
	server { listen 8080; root /srv; }
}
C
mkdir -p "$D/flag"
tb_bg remote "$D/flag.log" python3 -m http.server --bind 10.77.0.2 --directory "$D/flag" 8000 >/dev/null
tb_wait_listen remote 8000 || tb_fail "flag server did not start"

tb_vm_guest_bg qv1 "$D/console.log" "$D/nkvm.out" --file "$D/big.bin:/srv/big.bin" --file "$D/nginx.conf:/nk/run/nginx.conf" -- '
nginx -c /nk/run/nginx.conf &
until curl -sf -o /dev/null http://10.77.0.2:8000/done; do sleep 0.5; done
echo "nginx processes: $(pidof nginx | wc -w)"
kill -QUIT $(cat /tmp/nginx.pid); wait
echo nginx-stopped' >/dev/null
vmpid=$TB_LAST_PID
tb_vm_wait_boot "$D/console.log" 300 || { cat "$D/nkvm.out"; tb_fail "the VM did not boot"; }
# nginx listens on the VM's address in the NSM namespace once it runs
tb_wait_for 120 tb__listening nsm 8080 || { cat "$D/nkvm.out"; tail -n 20 "$D/console.log"; tb_fail "nginx in the VM is not listening"; }
t0=$(date +%s.%N)
tb_exec remote curl -sf -o "$D/got.bin" http://10.77.0.21:8080/big.bin || tb_fail "curl from remote failed"
t1=$(date +%s.%N)
got=$(sha256sum "$D/got.bin" | awk '{ print $1 }')
touch "$D/flag/done"
rc=0
tb_wait_pid "$vmpid" 120 || rc=$?
cat "$D/nkvm.out"
[ "$got" = "$want" ] || tb_fail "sha256 mismatch: got $got, want $want ($(stat -c %s "$D/got.bin") bytes)"
[ $rc -eq 0 ] || tb_fail "the VM exited with status $rc"
grep -q 'nginx processes: 2' "$D/nkvm.out" || tb_fail "expected nginx master + worker in the VM"
echo "10 MB served from the VM in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }') s, sha256 ok"
echo PASS
