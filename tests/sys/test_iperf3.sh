#!/usr/bin/env bash
# iperf3 through NetKernel, both directions, with the NSM's congestion control
# and the VM's source address checked in the NSM namespace while data flows.
#
#   guest -> remote: iperf3 -c 10.77.0.2 -t 5 -J in the guest, iperf3 -s in remote
#   remote -> guest: iperf3 -s -1 -B 10.77.0.11 in the guest, iperf3 -c from remote
#   native baseline: iperf3 -c from the nsm namespace itself (printed only)
#
# NK_CC picks the congestion control (default bbr, so that the check proves the
# NSM applied it rather than the kernel default cubic; reno if bbr is absent).
# timeout: 300
set -euo pipefail
. "$(dirname "$0")/../../scenarios/lib/testbed.sh"
tb_require iperf3 python3 ss

CC=${NK_CC:-bbr}
if ! grep -qw "$CC" /proc/sys/net/ipv4/tcp_available_congestion_control; then
	echo "congestion control $CC is not available here; using reno instead"
	CC=reno
fi
export NK_CC=$CC
DUR=5
tb_netkernel_up "ip$(($$ % 100000))"
D=$TB_DIR

# bits_per_second of end.sum_received from an iperf3 -J file (fails on error)
bps() {
	python3 - "$1" <<'EOF'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except Exception as e:
    print("unparsable iperf3 JSON: %s" % e, file=sys.stderr); sys.exit(1)
if d.get("error"):
    print("iperf3 error: %s" % d["error"], file=sys.stderr); sys.exit(1)
print("%.0f" % d["end"]["sum_received"]["bits_per_second"])
EOF
}

# Why an iperf3 run failed: the "error" of each -J file given (or its last line).
why() {
	local f
	for f in "$@"; do
		[ -s "$f" ] || { echo "  $(basename "$f"): empty"; continue; }
		python3 -c 'import json,sys
t = open(sys.argv[1]).read()
i = t.find("{")
pre = " ".join(l.strip() for l in t[:max(i, 0)].splitlines() if l.strip())
try:
    err = json.loads(t[i:]).get("error") or "no error reported"
except Exception:
    err = "unparsable output: " + " | ".join(t.strip().splitlines()[-3:])
print("  %s: %s%s" % (sys.argv[2], err, (" [" + pre + "]") if pre else ""))' "$f" "$(basename "$f")"
	done
}

# local_host values of the connected streams in an iperf3 -J file
local_hosts() {
	python3 -c 'import json,sys; print(" ".join(sorted({c.get("local_host","?") for c in json.load(open(sys.argv[1]))["start"].get("connected",[])})))' "$1"
}

# check_ss FILE LOCAL_PORT_OR_ANY PEER_PORT_OR_ANY: some TCP connection in the
# `ss -tin` dump has local address 10.77.0.11, matches the ports, and uses $CC.
check_ss() {
	python3 - "$1" "$2" "$3" "$CC" <<'EOF'
import sys
path, lport, pport, cc = sys.argv[1:]
lines = open(path).read().splitlines()
conns, cur = [], None
for ln in lines:
    if not ln.strip():
        continue
    if not ln[0].isspace():
        f = ln.split()
        # State Recv-Q Send-Q Local:Port Peer:Port [Process]
        if len(f) >= 5 and ":" in f[3]:
            cur = {"local": f[3], "peer": f[4], "info": ""}
            conns.append(cur)
        else:
            cur = None
    elif cur is not None:
        cur["info"] += " " + ln.strip()
def ok(c):
    la, lp = c["local"].rsplit(":", 1)
    pa, pp = c["peer"].rsplit(":", 1)
    la = la.strip("[]")
    return ((la == "10.77.0.11" or la.endswith(":10.77.0.11")) and (lport == "any" or lp == lport)
            and (pport == "any" or pp == pport))
match = [c for c in conns if ok(c)]
if not match:
    print("no connection from 10.77.0.11 (local port %s, peer port %s) in the NSM namespace" % (lport, pport))
    sys.exit(1)
bad = [c for c in match if cc not in c["info"].split()]
for c in match:
    toks = c["info"].split()
    seen = [t for t in toks if t in ("cubic", "bbr", "reno", "bbr2", "dctcp", "vegas", "htcp")]
    print("  %s -> %s cc=%s" % (c["local"], c["peer"], ",".join(seen) or "?"))
if bad:
    print("connection(s) not using %s" % cc)
    sys.exit(1)
EOF
}

echo "== iperf3 server in remote"
tb_bg remote "$D/iperf3-remote.log" iperf3 -s -B 10.77.0.2 -p 5201 >/dev/null
tb_wait_listen remote 5201 || tb_fail "iperf3 -s did not start in remote"

echo "== guest -> remote (cc=$CC)"
tb_guest_bg "$D/g2r.out" iperf3 -c 10.77.0.2 -p 5201 -t $DUR -J >/dev/null
client=$TB_LAST_PID
sleep 2
tb_exec nsm ss -tin >"$D/ss-g2r.txt" || true
check_ss "$D/ss-g2r.txt" any 5201 || {
	cat "$D/ss-g2r.txt"
	tb_wait_pid "$client" $((DUR + 10)) || true
	why "$D/g2r.out"
	tb_fail "guest -> remote: the NSM's connection does not show source 10.77.0.11 with cc $CC"
}
rc=0
tb_wait_pid "$client" $((DUR + 30)) || rc=$?
[ $rc -eq 0 ] || { why "$D/g2r.out"; tb_fail "guest iperf3 -c exited with status $rc"; }
g2r=$(bps "$D/g2r.out") || tb_fail "guest -> remote: no result"
hosts=$(local_hosts "$D/g2r.out")
[ "$hosts" = 10.77.0.11 ] || tb_fail "guest iperf3 reports local address '$hosts', want 10.77.0.11"
python3 -c "import sys; sys.exit(0 if float('$g2r') > 0 else 1)" || tb_fail "guest -> remote: 0 bit/s"
grep -q "Accepted connection from 10.77.0.11" "$D/iperf3-remote.log" ||
	tb_fail "remote iperf3 did not see a connection from 10.77.0.11"

echo "== remote -> guest (guest runs iperf3 -s -1 -B 10.77.0.11)"
tb_guest_bg "$D/r2g-server.out" iperf3 -s -1 -B 10.77.0.11 -p 5202 -J >/dev/null
server=$TB_LAST_PID
# The guest's listener is a real socket in the NSM namespace, on the VM address.
tb_wait_listen nsm 5202 15 || { why "$D/r2g-server.out"; tb_fail "guest iperf3 -s is not listening (no listener on :5202 in the NSM namespace)"; }
tb_bg remote "$D/r2g.out" iperf3 -c 10.77.0.11 -p 5202 -t $DUR -J >/dev/null
rclient=$TB_LAST_PID
sleep 2
tb_exec nsm ss -tin >"$D/ss-r2g.txt" || true
check_ss "$D/ss-r2g.txt" 5202 any || {
	cat "$D/ss-r2g.txt"
	tb_wait_pid "$rclient" $((DUR + 10)) || true
	tb_wait_pid "$server" 5 || true
	why "$D/r2g.out" "$D/r2g-server.out"
	tb_fail "remote -> guest: the NSM's accepted connection does not show 10.77.0.11:5202 with cc $CC"
}
rc=0
tb_wait_pid "$rclient" $((DUR + 30)) || rc=$?
[ $rc -eq 0 ] || { why "$D/r2g.out" "$D/r2g-server.out"; tb_fail "remote iperf3 -c exited with status $rc"; }
r2g=$(bps "$D/r2g.out") || tb_fail "remote -> guest: no result"
python3 -c "import sys; sys.exit(0 if float('$r2g') > 0 else 1)" || tb_fail "remote -> guest: 0 bit/s"
rc=0
tb_wait_pid "$server" 15 || rc=$?
[ $rc -eq 0 ] || { why "$D/r2g-server.out"; tb_fail "guest iperf3 -s -1 exited with status $rc"; }

echo "== native baseline: nsm namespace -> remote"
native=0
if tb_exec nsm iperf3 -c 10.77.0.2 -p 5201 -t $DUR -J >"$D/native.out"; then
	native=$(bps "$D/native.out" || echo 0)
fi

mbit() { awk -v b="$1" 'BEGIN { printf "%.1f Mbit/s", b / 1e6 }'; }
echo "guest -> remote:  $(mbit "$g2r") (NetKernel, cc=$CC)"
echo "remote -> guest:  $(mbit "$r2g") (NetKernel, cc=$CC)"
echo "native nsm -> remote: $(mbit "$native")"
echo "PASS"
