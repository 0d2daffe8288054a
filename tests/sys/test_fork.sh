#!/usr/bin/env bash
# fork() keeps NetKernel sockets usable in parent and child:
#   - a connection written and read by the child after the parent closed its
#     copy right after fork() (the accept-fork-close server pattern);
#   - a listener accepted from by 4 forked workers after the parent closed it,
#     20 connections from the remote host, each answered by a worker.
# timeout: 120
set -euo pipefail
. "$(dirname "$0")/../../scenarios/lib/testbed.sh"
tb_require python3
FT=$TB_BUILD/tests/prog/nk_forktest
[ -x "$FT" ] || { echo "FAIL: $FT is not built" >&2; exit 1; }
tb_netkernel_up "fk$(($$ % 100000))"
D=$TB_DIR

cat >"$D/echo.py" <<'PY'
import socketserver
class H(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            self.wfile.write(line)
socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer(("10.77.0.2", 7600), H).serve_forever()
PY
tb_bg remote "$D/echo.log" python3 "$D/echo.py" >/dev/null
tb_wait_listen remote 7600 || tb_fail "echo server did not start"

echo "== child uses a connection the parent closed"
TB_GUEST_TIMEOUT=60 tb_guest "$FT" conn 10.77.0.2 7600 || tb_fail "nk_forktest conn failed"

echo "== 4 forked workers share one listener"
tb_guest_bg "$D/workers.log" "$FT" workers 7601 4 20 >/dev/null
wpid=$TB_LAST_PID
tb_wait_for 15 grep -q '^listening' "$D/workers.log" || { cat "$D/workers.log"; tb_fail "workers did not start"; }
tb_wait_listen nsm 7601 || tb_fail "no listener in the NSM namespace"
cat >"$D/client.py" <<'PY'
import socket, sys
pids = set()
for i in range(20):
    s = socket.create_connection(("10.77.0.11", 7601), timeout=10)
    s.sendall(b"hi\n")
    data = b""
    while not data.endswith(b"\n"):
        chunk = s.recv(100)
        if not chunk:
            break
        data += chunk
    s.close()
    if not data.startswith(b"worker "):
        print("FAIL: connection %d got %r" % (i, data)); sys.exit(1)
    pids.add(int(data.split()[1]))
print("ok: 20 connections answered by %d distinct worker(s)" % len(pids))
PY
tb_exec remote python3 "$D/client.py" || { cat "$D/workers.log"; tb_fail "remote client failed"; }
rc=0
tb_wait_pid "$wpid" 20 || rc=$?
cat "$D/workers.log"
[ $rc -eq 0 ] || tb_fail "workers exited with status $rc"
echo PASS
