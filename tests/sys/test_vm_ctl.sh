#!/usr/bin/env bash
# VM-mode control plane without QEMU: a guest process maps the VM region file
# itself (NK_DEVICE=<file>, as GuestLib maps the PCI BAR inside a VM) and
# claims its channel through the control lines; nk-vmagent runs beside it.
#   - iperf3 -c through a claimed channel; the agent releases it afterwards
#   - exec: the new program image releases the channel its pid held
#   - fork: accept-fork-close and 4 forked workers on one listener
#   - garbage claims (bad fork_of, bad key, pid 0, stale seq) are refused or
#     ignored and the channel becomes claimable again
#   - nkctl vm-down mid-transfer: the remote sees a reset, the VM's sockets
#     and TX chunks come back, a process-mode guest keeps working
# timeout: 240
set -euo pipefail
. "$(dirname "$0")/../../scenarios/lib/testbed.sh"
tb_require iperf3 python3
FT=$TB_BUILD/tests/prog/nk_forktest
tb_netkernel_up "vc$(($$ % 100000))" --vm name=vm2,ip=10.77.0.12,nsm=tcp,mode=vm
D=$TB_DIR
DEV=/dev/shm/nk-$TB_ID-vm-vm2
size=$(stat -c %s "$DEV")
(( (size & (size - 1)) == 0 )) || tb_fail "VM-mode region is $size bytes, not a power of two"
tb_bg guest "$D/agent.log" "$TB_BUILD/bin/nk-vmagent" --device "$DEV" --interval-ms 50 >/dev/null
vmg() { TB_EXEC_TIMEOUT=${T:-60} tb_exec guest env LD_PRELOAD="${NK_PRELOAD_EXTRA:+$NK_PRELOAD_EXTRA:}$TB_BUILD/lib/libnkguest.so" NK_DEVICE="$DEV" "$@"; }
vm_field() { tb_nkctl --json list vms | python3 -c 'import json,sys; print([v for v in json.load(sys.stdin) if v["name"]=="vm2"][0][sys.argv[1]])' "$1"; }

echo "== iperf3 through a claimed channel"
tb_bg remote "$D/srv.log" iperf3 -s -B 10.77.0.2 -p 5201 >/dev/null
tb_wait_listen remote 5201 || tb_fail "iperf3 -s did not start"
vmg iperf3 -c 10.77.0.2 -p 5201 -t 2 >"$D/c.log" || { cat "$D/c.log"; tb_fail "iperf3 -c failed in VM mode"; }
grep -E 'sender|receiver' "$D/c.log"
tb_wait_for 5 sh -c "[ \"\$($TB_BUILD/bin/nkctl --ctl $NK_CTL --json list vms | grep -o '\"name\":\"vm2\"[^}]*' | grep -o '\"procs\":[0-9]*')\" = '\"procs\":0' ]" ||
	tb_fail "the agent did not release the channel of the exited iperf3 (procs $(vm_field procs))"

echo "== exec: the new image releases the channel its pid held"
# python attaches (a socket), then execs iperf3, which attaches again: the
# old channel must go at once (its fds were close-on-exec), not at exit.
tb_bg guest "$D/exec.log" env LD_PRELOAD="${NK_PRELOAD_EXTRA:+$NK_PRELOAD_EXTRA:}$TB_BUILD/lib/libnkguest.so" NK_DEVICE="$DEV" \
	python3 -c 'import os, socket; s = socket.socket(); os.execvp("iperf3", ["iperf3", "-c", "10.77.0.2", "-p", "5201", "-t", "3"])' >/dev/null
epid=$TB_LAST_PID
sleep 1.5
procs=$(vm_field procs)
tb_wait_pid "$epid" 20 || { cat "$D/exec.log"; tb_fail "iperf3 after exec failed"; }
[ "$procs" = 1 ] || tb_fail "after exec the VM holds $procs channels, want 1"

echo "== fork"
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
vmg "$FT" conn 10.77.0.2 7600 || tb_fail "nk_forktest conn failed in VM mode"
tb_bg guest "$D/workers.log" env LD_PRELOAD="${NK_PRELOAD_EXTRA:+$NK_PRELOAD_EXTRA:}$TB_BUILD/lib/libnkguest.so" NK_DEVICE="$DEV" "$FT" workers 7601 4 20 >/dev/null
wpid=$TB_LAST_PID
tb_wait_for 15 grep -q '^listening' "$D/workers.log" || { cat "$D/workers.log"; tb_fail "workers did not start"; }
tb_wait_listen nsm 7601 || tb_fail "no listener in the NSM namespace"
tb_exec remote python3 -c '
import socket
for i in range(20):
    s = socket.create_connection(("10.77.0.12", 7601), timeout=10)
    s.sendall(b"hi\n")
    d = b""
    while not d.endswith(b"\n"):
        c = s.recv(100)
        if not c: break
        d += c
    assert d.startswith(b"worker "), d
    s.close()
print("20 connections answered")' || tb_fail "workers did not answer"
tb_wait_pid "$wpid" 20 || tb_fail "workers failed"

echo "== garbage in the claim lines"
bad0=$(tb_nkctl stats >/dev/null; echo ok)
python3 - "$DEV" <<'PY'
import mmap, os, struct, sys, time
f = open(sys.argv[1], "r+b")
m = mmap.mmap(f.fileno(), 0)
hdr = m[:4096]
nchan, ring = struct.unpack_from("<II", hdr, 60)
chan_off = struct.unpack_from("<Q", hdr, 72)[0]
stride = struct.unpack_from("<I", hdr, 68)[0]
def line(c): return chan_off + c * stride + 256
def state(c): return struct.unpack_from("<II", m, line(c) + 64)   # seq, state
cases = [(30, 999, (1, 2)), (29, 1, (0xdead, 0xbeef)), (28, 0, (0, 0))]
seq0 = {}
for c, fork_of, key in cases:
    seq, st = state(c)
    assert st == 1, "channel %d not free (state %d)" % (c, st)
    seq0[c] = seq
    # a live pid (ours), so that the agent does not release the claim
    # before the CoreEngine judged it; 28: pid 0, released either way
    pid = 0 if c == 28 else os.getpid()
    struct.pack_into("<Q", m, line(c), seq << 32 | pid)
    struct.pack_into("<III", m, line(c) + 16, fork_of, key[0], key[1])
    struct.pack_into("<I", m, line(c) + 8, seq)            # ready
# a stale claim: seq - 1 (never matches)
seq0[27], st = state(27)
struct.pack_into("<Q", m, line(27), (seq0[27] - 1) << 32 | 77)
struct.pack_into("<I", m, line(27) + 8, seq0[27] - 1)
time.sleep(1)
res = {c: state(c) for c in (30, 29, 28, 27)}
print("(seq, state) after garbage:", res)
# 29 and 30 are refused (their claimer, we, still lives); 28 was opened for
# pid 0 and released by the agent, claimable at the next incarnation; 27
# was never touched
for c in (30, 29):
    assert res[c] == (seq0[c], 3), "channel %d: %r" % (c, res[c])
assert res[28] == (seq0[28] + 1, 1), "channel 28: %r" % (res[28],)
assert res[27] == (seq0[27], 1), "a stale claim was acted on"
PY
tb_wait_for 5 python3 - "$DEV" <<'PY' || tb_fail "refused/garbage channels did not become claimable again"
import mmap, struct, sys
f = open(sys.argv[1], "r+b"); m = mmap.mmap(f.fileno(), 0)
chan_off = struct.unpack_from("<Q", m, 72)[0]; stride = struct.unpack_from("<I", m, 68)[0]
for c in (30, 29, 28):
    seq, st = struct.unpack_from("<II", m, chan_off + c * stride + 256 + 64)
    if st != 1: sys.exit(1)
PY
grep -qE 'claim of channel 30 by pid [0-9]+ refused: Invalid argument' "$D/ce.log" || tb_fail "bad fork_of not refused"
grep -qE 'claim of channel 29 by pid [0-9]+ refused' "$D/ce.log" || tb_fail "fork of an idle channel not refused"
kill -0 "$TB_CE_PID" || tb_fail "the CoreEngine died"

echo "== vm-down mid-transfer"
cat >"$D/sink.py" <<'PY'
import socket, sys
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("10.77.0.2", 7700)); l.listen(1)
print("listening", flush=True)
c, _ = l.accept(); n = 0
try:
    while True:
        d = c.recv(65536)
        if not d:
            print("EOF after %d bytes" % n, flush=True); break
        n += len(d)
except ConnectionResetError:
    print("RESET after %d bytes" % n, flush=True)
PY
tb_bg remote "$D/sink.log" python3 "$D/sink.py" >/dev/null
sink=$TB_LAST_PID
tb_wait_for 10 grep -q listening "$D/sink.log" || tb_fail "sink did not start"
tb_bg guest "$D/bulk.log" env LD_PRELOAD="${NK_PRELOAD_EXTRA:+$NK_PRELOAD_EXTRA:}$TB_BUILD/lib/libnkguest.so" NK_DEVICE="$DEV" "$TB_BUILD/tests/prog/nk_stream" send 10.77.0.2 7700 30 >/dev/null
bulk=$TB_LAST_PID
# a process-mode guest keeps its own transfer going meanwhile
tb_bg remote "$D/srv2.log" iperf3 -s -1 -B 10.77.0.2 -p 5202 >/dev/null
tb_wait_listen remote 5202 || tb_fail "iperf3 -s did not start"
tb_guest_bg "$D/proc.log" iperf3 -c 10.77.0.2 -p 5202 -t 4 >/dev/null
proc=$TB_LAST_PID
sleep 1.5
tb_nkctl vm-down vm2 || tb_fail "nkctl vm-down failed"
tb_wait_pid "$sink" 10 || true
cat "$D/sink.log"
grep -q '^RESET' "$D/sink.log" || tb_fail "the remote did not see a reset: $(tail -n 1 "$D/sink.log")"
[ "$(awk '/^RESET/ { print $3 }' "$D/sink.log")" -gt 1000000 ] || tb_fail "the transfer had not started before vm-down"
tb_wait_pid "$bulk" 15 || true # its calls now fail (the channel is gone)
tb_wait_for 10 sh -c "$TB_BUILD/bin/nkctl --ctl $NK_CTL --json list vms | python3 -c 'import json,sys; v=[v for v in json.load(sys.stdin) if v[\"name\"]==\"vm2\"][0]; sys.exit(0 if v[\"sockets\"]==0 and v[\"tx_inflight\"]==0 and v[\"procs\"]==0 else 1)'" ||
	{ tb_nkctl list vms; tb_fail "vm2's sockets/chunks were not reclaimed"; }
tb_wait_pid "$proc" 20 || tb_fail "the process-mode guest's transfer was disturbed"
tail -n 3 "$D/proc.log"
echo "== claims work again after vm-down"
vmg iperf3 -c 10.77.0.2 -p 5201 -t 1 >/dev/null || tb_fail "no claim after vm-down"
echo PASS
