#!/usr/bin/env bash
# The fig-switch scenario, shortened: runs of 4 s switched at t=2 s (native
# TCP, native MPTCP, NetKernel warm switch, NetKernel cold switch). Checks the
# outputs and the integrity of the switched stream, not the throughput ratios:
# bytes_sent == bytes_received with equal checksums, app_restarts == 0, every
# summary.json field present and numeric (including both switch gaps), and
# throughput > 0 in both phases of the NetKernel run.
# timeout: 240
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
for p in mptcpize python3 gnuplot ss; do
	if ! command -v "$p" >/dev/null 2>&1; then
		echo "$p is not installed"
		exit 77
	fi
done
OUT=$(mktemp -d /tmp/nk-figswitch.XXXXXX)
trap 'rm -rf "$OUT"' EXIT

rc=0
GUESTS=${NK_FIG_GUESTS:-process} # test_vm_fig_switch.sh: vm
"$ROOT/scenarios/fig-switch.sh" --guests "$GUESTS" --phase 2 --out "$OUT" || rc=$?
echo "== fig-switch exited $rc"
[ -s "$OUT/summary.json" ] || { echo "FAIL: no summary.json"; exit 1; }

python3 - "$OUT" "$GUESTS" <<'EOF'
import json, os, sys
out = sys.argv[1]
s = json.load(open(os.path.join(out, "summary.json")))
fails = []
def check(cond, msg):
    if not cond:
        fails.append(msg)
check(s.get("guests") == sys.argv[2], f"guests is {s.get('guests')!r}, want {sys.argv[2]}")
def isnum(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)
for k in ("native_tcp_gbps", "native_mptcp_gbps", "nk_tcp_phase_gbps", "nk_mptcp_phase_gbps",
          "switch_gap_warm_ms", "switch_gap_cold_ms", "bytes_sent", "bytes_received", "app_restarts",
          "paper_tcp_gbps", "paper_mptcp_gbps"):
    check(k in s, f"summary.json has no {k}")
    check(k not in s or isnum(s[k]), f"{k} is not a number: {s.get(k)!r}")
check(isinstance(s.get("claim"), str) and s["claim"], "no claim text")
bs, br = s.get("bytes_sent"), s.get("bytes_received")
check(isnum(bs) and bs > 0 and bs == br, f"bytes_sent {bs} != bytes_received {br}")
nk = s.get("runs", {}).get("netkernel", {})
check(nk.get("checksum_sent") is not None and nk.get("checksum_sent") == nk.get("checksum_received"),
      f"checksums differ: {nk.get('checksum_sent')} vs {nk.get('checksum_received')}")
check(nk.get("stream") == "ok", f"the receiver's verdict is {nk.get('stream')!r}")
check(s.get("app_restarts") == 0, f"app_restarts = {s.get('app_restarts')}")
for k in ("nk_tcp_phase_gbps", "nk_mptcp_phase_gbps"):
    check(isnum(s.get(k)) and s[k] > 0, f"{k} = {s.get(k)}")
check(s.get("switch_ok_warm") is True, "the warm switch failed")
check(s.get("switch_ok_cold") is True, "the cold switch failed")
cases = set()
with open(os.path.join(out, "data.csv")) as f:
    check(next(f).strip() == "case,t_s,mbps", "data.csv header")
    for line in f:
        cases.add(line.split(",")[0])
for c in ("native_tcp", "native_mptcp", "netkernel"):
    check(c in cases, f"data.csv has no {c} rows")
png = os.path.join(out, "fig-switch.png")
check(os.path.exists(png) and os.path.getsize(png) > 1000, "no fig-switch.png")
for p in s.get("problems", []):
    print("scenario problem:", p)
for m in fails:
    print("FAIL:", m)
sys.exit(1 if fails else 0)
EOF
echo PASS
