#!/usr/bin/env python3
"""Receiver-side sampler and summary of scenarios/fig-isolation.sh.

  fig_isolation.py sample --ports P1,P2,.. [--interval 0.1] --out CSV
      (runs in the receivers' namespace) every INTERVAL s reads
      bytes_received of every established TCP connection whose local port is
      one of PORTS (`ss -tinHO`) and writes the running total per peer
      address: t_epoch,ADDR=BYTES;ADDR=BYTES... Until SIGTERM.
  fig_isolation.py line --dir TBDIR --out OUT --run RUN
      one progress line for a finished run
  fig_isolation.py summary --dir TBDIR --out OUT --t3 S --t3end S --end S ...
      OUT/data.csv, OUT/summary.json, TBDIR/plot.gp, the closing table
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from figlib import fmt, iperf_mbps, png_terminal, read_res

VMS = {"10.80.0.11": "v1", "10.80.0.12": "v2", "10.80.0.13": "v3"}
RUNS = ["native", "iso_off", "iso_on"]
CLAIM = ("Three VMs with equal weights share one NSM behind a 1 Gbit/s link; VM3 opens 16 "
         "streams. With the CoreEngine's isolation on every VM keeps its 1/3 (Jain >= 0.98, "
         "shares within 5 pp of 1/3), without it VM3 takes most of the link; a 300 Mbit/s "
         "cap on VM1 holds within 5 % (NetKernel: performance isolation in the CoreEngine).")


# ---------------------------------------------------------------- sampler

ADDR_RE = re.compile(r"(\[?[0-9a-fA-F:.]+\]?):(\d+)\s+(\[?[0-9a-fA-F:.]+\]?):(\d+)")
BYTES_RE = re.compile(r"\bbytes_received:(\d+)")


def cmd_sample(a):
    ports = {int(p) for p in a.ports.split(",") if p}
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    last = {}    # (local, peer) -> bytes_received at the last sample
    total = {}   # peer address -> bytes
    f = open(a.out, "w", buffering=1)
    nxt = time.monotonic()
    while not stop:
        ta = time.time()
        try:
            out = subprocess.run(["ss", "-tinHO", "state", "established"], capture_output=True,
                                 text=True, timeout=5).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        # ss reads the counters somewhere in between: a late or slow ss
        # shifts its sample's time, not the bytes it saw
        t = (ta + time.time()) / 2
        seen = {}
        for line in out.splitlines():
            m = ADDR_RE.search(line)
            if not m:
                continue
            lport = int(m.group(2))
            if lport not in ports:
                continue
            b = BYTES_RE.search(line)
            if not b:
                continue
            peer = m.group(3).strip("[]")
            if peer.startswith("::ffff:"):
                peer = peer[7:]
            key = (m.group(1), lport, peer, m.group(4))
            seen[key] = int(b.group(1))
        for key, v in seen.items():
            d = v - last.get(key, 0)
            if d > 0:
                total[key[2]] = total.get(key[2], 0) + d
                last[key] = v
        # a connection missing from one listing must not count from 0 again
        # when it shows up in the next: `last` keeps every key it has seen
        f.write(f"{t:.4f}," + ";".join(f"{k}={v}" for k, v in sorted(total.items())) + "\n")
        nxt += a.interval
        d = nxt - time.monotonic()
        if d > 0:
            time.sleep(d)
        else:
            nxt = time.monotonic()
    f.close()
    return 0


# ---------------------------------------------------------------- analysis


def read_samples(path, t0):
    """[(t_rel, {vm: cumulative bytes})]"""
    rows = []
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                ts, _, rest = line.partition(",")
                tot = {}
                for kv in rest.split(";"):
                    if "=" in kv:
                        k, v = kv.split("=", 1)
                        if k in VMS:
                            tot[VMS[k]] = int(v)
                rows.append((float(ts) - t0, tot))
    except (OSError, ValueError):
        pass
    return rows


def series(rows):
    """per-interval Mbit/s: [(t_end, {vm: mbps})]"""
    out = []
    for (ta, a), (tb, b) in zip(rows, rows[1:]):
        dt = tb - ta
        if dt <= 0:
            continue
        out.append((tb, {v: (b.get(v, 0) - a.get(v, 0)) * 8 / dt / 1e6 for v in VMS.values()}))
    return out


def bytes_at(rows, t, vm):
    """cumulative bytes of vm at time t (linear between samples)"""
    if not rows:
        return None
    if t <= rows[0][0]:
        return rows[0][1].get(vm, 0)
    for (ta, a), (tb, b) in zip(rows, rows[1:]):
        if ta <= t <= tb:
            x, y = a.get(vm, 0), b.get(vm, 0)
            return x + (y - x) * (t - ta) / (tb - ta) if tb > ta else y
    return None  # t after the last sample


def mean_mbps(rows, vm, a, b):
    x, y = bytes_at(rows, a, vm), bytes_at(rows, b, vm)
    if x is None or y is None or b <= a:
        return None
    return (y - x) * 8 / (b - a) / 1e6


def jain(xs):
    xs = [x for x in xs if x is not None]
    if not xs or sum(xs) <= 0:
        return None
    return sum(xs) ** 2 / (len(xs) * sum(x * x for x in xs))


def ce_snap(path):
    """(epoch, {vm: tx_bytes}) from a vms_snap file, or None"""
    try:
        with open(path) as f:
            line = f.read().strip()
        ts, _, js = line.partition(" ")
        vms = json.loads(js)
        return float(ts), {v["name"]: v.get("tx_bytes") for v in vms if isinstance(v, dict)}
    except (OSError, ValueError, TypeError, KeyError):
        return None


def ce_rates(d, run, a_tag, b_tag):
    a, b = ce_snap(os.path.join(d, f"{run}.vms-{a_tag}.json")), ce_snap(os.path.join(d, f"{run}.vms-{b_tag}.json"))
    if not a or not b or b[0] <= a[0]:
        return None
    out = {}
    for vm in VMS.values():
        x, y = a[1].get(vm), b[1].get(vm)
        out[vm] = round((y - x) * 8 / (b[0] - a[0]) / 1e6, 1) if isinstance(x, int) and isinstance(y, int) else None
    return out if any(v is not None for v in out.values()) else None


def rate_bps(s):
    m = re.match(r"^(\d+(?:\.\d+)?)([kmg]?)$", s.lower())
    return float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[m.group(2)] if m else None


def analyse(d, out, run):
    res = read_res(os.path.join(d, run + ".res"))
    if not res:
        return None
    t3, t3end, end = float(res["t3"]), float(res["t3end"]), float(res["end"])
    t0 = float(res.get("t0", 0))
    rows = read_samples(os.path.join(d, run + ".samples.csv"), t0)
    r = {"run": run, "errors": [], "t3_actual_s": float(res["t3_actual"]) if "t3_actual" in res else None}
    if res.get("error"):
        r["errors"].append(res["error"])
    if not rows:
        r["errors"].append("no receiver samples")
    win = (t3 + 1, t3end)
    r["contended_window_s"] = list(win)
    r["solo_window_s"] = [1, t3]
    r["solo_mbps"] = {vm: round(x, 1) if x is not None else None
                      for vm in ("v1", "v2") for x in [mean_mbps(rows, vm, 1, t3)]}
    m = {vm: mean_mbps(rows, vm, *win) for vm in VMS.values()}
    r["contended_mbps"] = {vm: round(x, 1) if x is not None else None for vm, x in m.items()}
    if all(x is not None for x in m.values()) and sum(m.values()) > 0:
        tot = sum(m.values())
        r["aggregate_mbps"] = round(tot, 1)
        r["shares"] = {vm: round(x / tot, 4) for vm, x in m.items()}
        r["max_share_dev_pp"] = round(max(abs(x / tot - 1 / 3) for x in m.values()) * 100, 2)
        r["jain"] = round(jain(list(m.values())), 4)
    else:
        r["aggregate_mbps"] = r["shares"] = r["max_share_dev_pp"] = r["jain"] = None
        r["errors"].append("no contended-period throughput for every VM")
    # Jain of every 100 ms sample in the window, averaged (short-term fairness)
    js = [jain(list(v.values())) for t, v in series(rows) if win[0] <= t <= win[1]]
    js = [x for x in js if x is not None]
    r["jain_100ms_mean"] = round(sum(js) / len(js), 4) if js else None
    r["jain_100ms_min"] = round(min(js), 4) if js else None
    if run == "iso_on" and end > t3end:
        cw = (t3end + 1, end)
        r["cap_window_s"] = list(cw)
        r["cap_phase_mbps"] = {vm: round(x, 1) if x is not None else None
                               for vm in ("v1", "v2") for x in [mean_mbps(rows, vm, *cw)]}
        r["cap_rc"] = int(res["cap_rc"]) if res.get("cap_rc", "").lstrip("-").isdigit() else None
        r["cap_output"] = res.get("cap_output")
        if r["cap_rc"] not in (0, None):
            r["errors"].append(f"nkctl set v1 rate=... failed (exit {r['cap_rc']}): {res.get('cap_output')}")
    for vm in VMS.values():
        x, e = iperf_mbps(os.path.join(out, "logs", f"{run}-{vm}-iperf3.json"))
        r.setdefault("iperf3_client_mbps", {})[vm] = round(x, 1) if x is not None else None
        if x is None:
            r["errors"].append(f"{vm} iperf3: {e}")
    if run != "native":
        r["ce_contended_mbps"] = ce_rates(d, run, "a", "b")
        if run == "iso_on":
            r["ce_cap_phase_mbps"] = ce_rates(d, run, "c", "d")
        r["nsm_spec"] = res.get("nsm_spec")
    cf = res.get("clients_failed")
    if cf and cf != "0":
        r["errors"].append(f"{cf} iperf3 client(s) exited non-zero")
    r["_rows"] = rows
    return r


def cmd_line(a):
    r = analyse(a.dir, a.out, a.run)
    if r is None:
        print(f"   {a.run}: no results")
        return 1
    c = r["contended_mbps"]
    sh = r.get("shares") or {}
    print(f"   contended {r['contended_window_s'][0]:g}-{r['contended_window_s'][1]:g} s: "
          + ", ".join(f"{vm} {fmt(c.get(vm))} Mbit/s ({fmt(sh[vm] * 100 if vm in sh else None)} %)"
                      for vm in VMS.values())
          + f"; Jain {fmt(r['jain'], 3)}")
    if "cap_phase_mbps" in r:
        cp = r["cap_phase_mbps"]
        print(f"   cap phase {r['cap_window_s'][0]:g}-{r['cap_window_s'][1]:g} s: v1 {fmt(cp.get('v1'))} Mbit/s, "
              f"v2 {fmt(cp.get('v2'))} Mbit/s")
    for e in r["errors"]:
        print(f"   PROBLEM: {e}")
    return 0


def cmd_summary(a):
    runs = {}
    for run in RUNS:
        r = analyse(a.dir, a.out, run)
        if r:
            runs[run] = r
    problems, notes = [], []
    for run, r in runs.items():
        for e in r["errors"]:
            problems.append(f"{run}: {e}")
    on, off, nat = runs.get("iso_on", {}), runs.get("iso_off", {}), runs.get("native", {})
    cap = rate_bps(a.cap)
    cap_mbps = cap / 1e6 if cap else None
    v1cap = (on.get("cap_phase_mbps") or {}).get("v1")
    cap_err = round(abs(v1cap - cap_mbps) / cap_mbps * 100, 2) if v1cap is not None and cap_mbps else None
    iso = a.iso_supported == 1
    if not iso:
        problems.append("this nk-coreengine has no iso=/rate=/weight= options: the 'isolation on' run ran "
                        "without isolation, and the cap could not be set")
    acceptance = {
        "jain_on_min": 0.98, "max_share_dev_pp_on_max": 5.0, "cap_error_pct_max": 5.0,
        "jain_on_met": on.get("jain") is not None and on["jain"] >= 0.98 and iso,
        "shares_on_met": on.get("max_share_dev_pp") is not None and on["max_share_dev_pp"] <= 5.0 and iso,
        "off_unfair": off.get("jain") is not None and on.get("jain") is not None and off["jain"] < on["jain"],
        "cap_met": cap_err is not None and cap_err <= 5.0 and iso,
    }
    summary = {
        "experiment": "fig-isolation",
        "claim": CLAIM,
        "guests": "process",
        "link_rate": a.link_rate,
        "nsm_rate": a.nsm_rate,
        "cc": a.cc,
        "weights": {"v1": 1, "v2": 1, "v3": 1},
        "timeline_s": {"v1_v2": [0, a.end], "v3_16_streams": [a.t3, a.t3end], "cap_at": a.t3end,
                       "contended_window": [a.t3 + 1, a.t3end], "cap_window": [a.t3end + 1, a.end]},
        "sampling": "bytes_received of every connection to the iperf3 servers (ss, receiver namespace), "
                    "summed per source address, every 100 ms",
        "isolation_supported": iso,
        "jain_on": on.get("jain"),
        "jain_off": off.get("jain"),
        "jain_native": nat.get("jain"),
        "shares_on": on.get("shares"),
        "shares_off": off.get("shares"),
        "shares_native": nat.get("shares"),
        "max_share_dev_pp_on": on.get("max_share_dev_pp"),
        "max_share_dev_pp_off": off.get("max_share_dev_pp"),
        "aggregate_mbps_on": on.get("aggregate_mbps"),
        "aggregate_mbps_off": off.get("aggregate_mbps"),
        "cap_mbps": cap_mbps,
        "cap_measured_mbps": v1cap,
        "cap_error_pct": cap_err,
        "cap_phase_v2_mbps": (on.get("cap_phase_mbps") or {}).get("v2"),
        "acceptance": acceptance,
        "runs": {k: {kk: vv for kk, vv in v.items() if kk != "_rows"} for k, v in runs.items()},
        "notes": notes,
        "problems": problems,
        "ok": not problems,
        "elapsed_s": a.elapsed,
    }
    with open(os.path.join(a.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")
    with open(os.path.join(a.out, "data.csv"), "w") as f:
        f.write("run,t_s,vm,mbps\n")
        for run in RUNS:
            for t, v in series(runs.get(run, {}).get("_rows", [])):
                for vm in VMS.values():
                    f.write(f"{run},{t:.3f},{vm},{v[vm]:.2f}\n")

    # ---- gnuplot: one panel per run ----
    term = png_terminal()
    panels = [r for r in ("iso_off", "iso_on", "native") if r in runs]
    titles = {"native": "native (no NetKernel): the kernel shares per flow",
              "iso_off": f"NetKernel, one shared NSM, isolation off: Jain {fmt(off.get('jain'), 3)}",
              "iso_on": f"NetKernel, one shared NSM, isolation on (rate {a.nsm_rate}): Jain {fmt(on.get('jain'), 3)}, "
                        f"max share dev {fmt(on.get('max_share_dev_pp'), 1)} pp; v1 capped at {a.cap} from "
                        f"t={a.t3end:g} s: {fmt(v1cap)} Mbit/s"}
    font = "font ',10'" if term == "pngcairo" else ""
    gp = [f"set terminal {term} size 1100,{300 * len(panels) + 80} {font}",
          f"set output '{os.path.join(a.out, 'fig-isolation.png')}'",
          f"set multiplot layout {len(panels)},1 title \"Performance isolation: three VMs on one NSM behind a "
          f"{a.link_rate} link, v3 opens 16 streams at t={a.t3:g} s (per-VM throughput at the receivers, 100 ms)\"",
          "set grid", "set key outside right", "set ylabel 'Mbit/s'", f"set xrange [0:{a.end:g}]",
          "set yrange [0:1100]"]
    colors = {"v1": "#1f77b4", "v2": "#2ca02c", "v3": "#d62728"}
    for i, run in enumerate(panels):
        dat = os.path.join(a.dir, f"plot-{run}.dat")
        with open(dat, "w") as f:
            for t, v in series(runs[run]["_rows"]):
                f.write(f"{t:.3f} {v['v1']:.2f} {v['v2']:.2f} {v['v3']:.2f}\n")
        gp.append(f"set title \"{titles[run]}\"")
        gp.append("unset arrow")
        gp.append("unset label")
        gp.append(f"set arrow 1 from {a.t3:g}, graph 0 to {a.t3:g}, graph 1 nohead dt 3 lc rgb '#555555'")
        gp.append(f"set arrow 2 from {a.t3end:g}, graph 0 to {a.t3end:g}, graph 1 nohead dt 3 lc rgb '#555555'")
        if run == "iso_on" and cap_mbps:
            gp.append(f"set arrow 3 from {a.t3end:g}, {cap_mbps:g} to {a.end:g}, {cap_mbps:g} nohead dt 2 lw 2 lc rgb '#000000'")
            gp.append(f"set label 3 'v1 cap {a.cap}' at {a.t3end:g}, {cap_mbps:g} offset 1,-1")
        gp.append("set xlabel 'time (s)'" if i == len(panels) - 1 else "unset xlabel")
        gp.append(f"plot '{dat}' using 1:2 with lines lw 1.5 lc rgb '{colors['v1']}' title 'v1', "
                  f"'' using 1:3 with lines lw 1.5 lc rgb '{colors['v2']}' title 'v2', "
                  f"'' using 1:4 with lines lw 1.5 lc rgb '{colors['v3']}' title 'v3 (16 streams)'")
    gp.append("unset multiplot")
    with open(os.path.join(a.dir, "plot.gp"), "w") as f:
        f.write("\n".join(gp) + "\n")

    # ---- table ----
    w = f"{a.t3 + 1:g}-{a.t3end:g} s"
    print(f"   contended period {w}     {'v1':>16} {'v2':>16} {'v3 (16 flows)':>16} {'total':>7} {'Jain':>6} {'max dev':>8}")
    for run in ("native", "iso_off", "iso_on"):
        r = runs.get(run)
        if not r:
            continue
        c, sh = r["contended_mbps"], r.get("shares") or {}
        cells = [f"{fmt(c.get(vm), 0)} ({fmt(sh[vm] * 100 if vm in sh else None)}%)" for vm in VMS.values()]
        print(f"   {run:26} {cells[0]:>16} {cells[1]:>16} {cells[2]:>16} {fmt(r.get('aggregate_mbps'), 0):>7} "
              f"{fmt(r.get('jain'), 3):>6} {fmt(r.get('max_share_dev_pp'), 1):>6}pp")
    if on.get("cap_phase_mbps"):
        print(f"   cap {a.cap} on v1 ({a.t3end + 1:g}-{a.end:g} s): v1 {fmt(v1cap)} Mbit/s, error {fmt(cap_err, 2)} %; "
              f"v2 {fmt(on['cap_phase_mbps'].get('v2'))} Mbit/s")
    for run in ("iso_off", "iso_on"):
        ce = runs.get(run, {}).get("ce_contended_mbps")
        if ce:
            print(f"   CoreEngine tx_bytes rates, {run}: " + ", ".join(f"{k} {fmt(v)}" for k, v in ce.items()))
    print(f"   acceptance: Jain on >= 0.98: {'met' if acceptance['jain_on_met'] else 'NOT met'}; "
          f"shares within 5 pp: {'met' if acceptance['shares_on_met'] else 'NOT met'}; "
          f"off less fair: {'yes' if acceptance['off_unfair'] else 'no'}; "
          f"cap within 5 %: {'met' if acceptance['cap_met'] else 'NOT met'}")
    for n in notes:
        print(f"   note: {n}")
    for p in problems:
        print(f"   PROBLEM: {p}")
    print(f"   result: {'OK' if not problems else 'PROBLEMS (%d)' % len(problems)} "
          f"({os.path.join(a.out, 'summary.json')})")
    return 0 if not problems else 1


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sample")
    s.add_argument("--ports", required=True)
    s.add_argument("--interval", type=float, default=0.1)
    s.add_argument("--out", required=True)
    l = sub.add_parser("line")
    l.add_argument("--dir", required=True)
    l.add_argument("--out", required=True)
    l.add_argument("--run", required=True)
    m = sub.add_parser("summary")
    m.add_argument("--dir", required=True)
    m.add_argument("--out", required=True)
    m.add_argument("--t3", type=float, required=True)
    m.add_argument("--t3end", type=float, required=True)
    m.add_argument("--end", type=float, required=True)
    m.add_argument("--nsm-rate", default="900m")
    m.add_argument("--cap", default="300m")
    m.add_argument("--link-rate", default="1gbit")
    m.add_argument("--cc", default="cubic")
    m.add_argument("--iso-supported", type=int, default=1)
    m.add_argument("--elapsed", type=int, default=0)
    a = ap.parse_args()
    if a.cmd == "sample":
        return cmd_sample(a)
    return cmd_line(a) if a.cmd == "line" else cmd_summary(a)


if __name__ == "__main__":
    sys.exit(main())
