#!/usr/bin/env python3
"""Parsing and summary of scenarios/fig-mux.sh.

  fig_mux.py line --dir TBDIR --out OUT --case CASE
      one progress line for a finished run
  fig_mux.py summary --dir TBDIR --out OUT --vms "1 2 4 8" --reps K ...
      OUT/data.csv, OUT/summary.json, TBDIR/plot.gp, the closing table

Inputs per run CASE (= CFG-nN-rR, CFG separate|shared|native):
  TBDIR/CASE.res                 key=value lines of the scenario; cpu_NAME=
                                 "PID TICKS0 PID1 TICKS1" for the CoreEngine
                                 (ce) and each NSM (nsm:NAME) over the window
                                 cpu_t0 .. cpu_t1 (epoch seconds); native
                                 runs: each iperf3 client's stime only
                                 (stack:iperf3-I)
  OUT/logs/CASE-vI-iperf3.json   iperf3 client --json (receiver's rate)
  OUT/logs/CASE-vI-rr.log        rr_echo.py client (a JSON line)
"""
import argparse
import glob
import json
import os
import re
import sys
from figlib import fmt, iperf_mbps, png_terminal, read_res

CLAIM = ("One NSM serving N VMs delivers the aggregate throughput of N separate NSMs "
         "(one per VM) with fewer cores: multiplexing NSMs saves CPU "
         "(NetKernel; acceptance here: at N = 8, shared >= 90 % of the throughput, "
         "<= 50 % of the NSM CPU time).")
TICK = os.sysconf("SC_CLK_TCK")


def rr_result(path):
    try:
        with open(path, errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None, "no output"
    for line in reversed(lines):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line), None
            except ValueError:
                break
    return None, (lines[-1][-200:] if lines else "empty output")


def parse_case(d, out, case):
    res = read_res(os.path.join(d, case + ".res"))
    if not res:
        return None
    r = {"case": case, "cfg": res.get("cfg"), "n": int(res.get("n", 0)),
         "point": res.get("point", "main"),
         "spin_us": int(res["spin_us"]) if res.get("spin_us", "").isdigit() else None,
         "spin_hold": res.get("hold") == "on",
         "rep": int(re.search(r"-r(\d+)$", case).group(1)) if re.search(r"-r(\d+)$", case) else 1,
         "errors": []}
    if res.get("error"):
        r["errors"].append(res["error"])
    n = r["n"]
    tput, rr_rate, lat, p99 = [], [], [], []
    for i in range(1, n + 1):
        m, e = iperf_mbps(os.path.join(out, "logs", f"{case}-v{i}-iperf3.json"))
        if m is None:
            r["errors"].append(f"v{i} iperf3: {e}")
        else:
            tput.append(m)
        x, e = rr_result(os.path.join(out, "logs", f"{case}-v{i}-rr.log"))
        if x is None:
            r["errors"].append(f"v{i} rr: {e}")
        else:
            rr_rate.append(x.get("rate") or 0)
            if x.get("lat_avg_us") is not None:
                lat.append(x["lat_avg_us"])
            if x.get("lat_p99_us") is not None:
                p99.append(x["lat_p99_us"])
    r["per_vm_mbps"] = [round(x, 1) for x in tput]
    r["agg_mbps"] = round(sum(tput), 1) if len(tput) == n else None
    r["rr_per_s"] = round(sum(rr_rate), 1) if len(rr_rate) == n else None
    r["rr_lat_avg_us"] = round(sum(lat) / len(lat), 1) if lat else None
    r["rr_lat_p99_us"] = round(max(p99), 1) if p99 else None
    try:
        win = float(res["cpu_t1"]) - float(res["cpu_t0"])
    except (KeyError, ValueError):
        win = None
    r["window_s"] = round(win, 3) if win else None
    nsm_ticks, ce_ticks, stack_ticks, procs = 0, None, None, {}
    for k, v in res.items():
        if not k.startswith("cpu_") or k in ("cpu_t0", "cpu_t1"):
            continue
        name = k[4:]
        p = v.split()
        if len(p) != 4 or p[0] != p[2]:
            r["errors"].append(f"{name}: pid changed or vanished during the window ({v})")
            continue
        t = int(p[3]) - int(p[1])
        procs[name] = {"pid": int(p[0]), "cpu_s": round(t / TICK, 2)}
        if name == "ce":
            ce_ticks = t
        elif name.startswith("nsm:"):
            nsm_ticks += t
        elif name.startswith("stack:"):
            stack_ticks = (stack_ticks or 0) + t
    r["procs"] = procs
    nsms = [k for k in procs if k.startswith("nsm:")]
    r["nsms"] = len(nsms)
    if r["cfg"] != "native" and win:
        want = 1 if r["cfg"] == "shared" else n
        if len(nsms) != want:
            r["errors"].append(f"{len(nsms)} NSM(s) measured, expected {want}")
        r["nsm_cpu_s"] = round(nsm_ticks / TICK, 2)
        r["nsm_cores"] = round(nsm_ticks / TICK / win, 3)
        r["ce_cores"] = round(ce_ticks / TICK / win, 3) if ce_ticks is not None else None
    else:
        r["nsm_cpu_s"] = r["nsm_cores"] = r["ce_cores"] = None
    r["stack_cores"] = round(stack_ticks / TICK / win, 3) if stack_ticks is not None and win else None
    # the machine over the window: /proc/stat "cpu" lines (user nice system
    # idle iowait irq softirq steal ...): busy and steal in % of all CPUs
    try:
        a0 = [int(x) for x in res["host_stat0"].split()[1:]]
        a1 = [int(x) for x in res["host_stat1"].split()[1:]]
        d = [y - x for x, y in zip(a0, a1)]
        tot = sum(d[:8])
        r["host_busy_pct"] = round(100 * (tot - d[3] - d[4]) / tot, 1) if tot > 0 else None
        r["host_steal_pct"] = round(100 * d[7] / tot, 1) if tot > 0 and len(d) > 7 else None
    except (KeyError, ValueError, IndexError):
        r["host_busy_pct"] = r["host_steal_pct"] = None
    cf = res.get("clients_failed")
    r["clients_failed"] = int(cf) if cf and cf.isdigit() else None
    if r["clients_failed"]:
        r["errors"].append(f"{r['clients_failed']} client(s) exited non-zero")
    # CoreEngine's view, if the lead's counters exist
    try:
        with open(os.path.join(d, case + ".vms.json")) as f:
            vms = json.load(f)
        r["vm_nsm"] = {v["name"]: v.get("nsm") for v in vms if isinstance(v, dict)}
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return r


def cmd_line(a):
    r = parse_case(a.dir, a.out, a.case)
    if r is None:
        print(f"   {a.case}: no results")
        return 1
    with open(os.path.join(a.dir, a.case + ".json"), "w") as f:
        json.dump(r, f)
    cpu = "" if r["cfg"] == "native" else (
        f", NSM CPU {fmt(r['nsm_cores'], 3)} cores ({r['nsms']} NSM(s)), CoreEngine {fmt(r['ce_cores'], 3)}")
    print(f"   aggregate {fmt(r['agg_mbps'])} Mbit/s (per VM {r['per_vm_mbps']}), "
          f"r/r {fmt(r['rr_per_s'], 0)}/s avg {fmt(r['rr_lat_avg_us'], 0)} us{cpu}; "
          f"machine busy {fmt(r['host_busy_pct'], 0)} %, steal {fmt(r['host_steal_pct'], 0)} %")
    for e in r["errors"]:
        print(f"   PROBLEM: {e}")
    return 0


def mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def cmd_summary(a):
    vms = [int(x) for x in a.vms.split()]
    runs = []
    for p in sorted(glob.glob(os.path.join(a.dir, "*.res"))):
        c = os.path.basename(p)[:-4]
        r = parse_case(a.dir, a.out, c)
        if r:
            runs.append(r)
    problems = []
    for r in runs:
        for e in r["errors"]:
            problems.append(f"{r['case']}: {e}")

    def agg(cfg, n, key, point):
        return mean([r.get(key) for r in runs if r["cfg"] == cfg and r["n"] == n and r["point"] == point])

    def make_row(n, point):
        row = {"n": n}
        for cfg in ("separate", "shared"):
            for key in ("agg_mbps", "nsm_cores", "nsm_cpu_s", "ce_cores", "rr_per_s", "rr_lat_avg_us",
                        "host_busy_pct", "host_steal_pct"):
                v = agg(cfg, n, key, point)
                row[f"{cfg}_{key}"] = round(v, 3) if v is not None else None
        s, h = row["separate_nsm_cores"], row["shared_nsm_cores"]
        row["cores_saved"] = round(s - h, 3) if s is not None and h is not None else None
        st, ht = row["separate_agg_mbps"], row["shared_agg_mbps"]
        row["throughput_ratio"] = round(ht / st, 3) if st and ht is not None else None
        row["cpu_ratio"] = round(h / s, 3) if s and h is not None else None
        return row

    table = [make_row(n, "main") for n in vms]
    poll = None
    if a.poll_spin_us != "off" and any(r["point"] == "poll" for r in runs):
        poll = make_row(max(vms), "poll")
        poll["spin_us"] = int(a.poll_spin_us)
        poll["spin_hold"] = all(r["spin_hold"] for r in runs if r["point"] == "poll")
    native = [r for r in runs if r["cfg"] == "native"]
    nat = native[0] if native else None
    at8 = next((row for row in table if row["n"] == 8), None)
    tr8 = at8["throughput_ratio"] if at8 else None
    cr8 = at8["cpu_ratio"] if at8 else None
    # The kernel TCP work of the bulk load, measured natively (the iperf3
    # clients' system time: their sendmsg transmits, and veth runs the receiver's
    # softirq in the sender's context). An NSM, shared or not, does at least
    # this work for its VMs (it writes 16 KiB chunks where iperf3 writes
    # 128 KiB), so stack_cores / separate NSM cores estimates the floor under
    # cpu_ratio. An estimate only: stime is tick-sampled and the split
    # between utime and stime moved a lot between runs (0.25 and 0.49).
    floor8 = None
    if nat and at8 and nat.get("stack_cores") and at8.get("separate_nsm_cores"):
        floor8 = round(nat["stack_cores"] / at8["separate_nsm_cores"], 3)
    acceptance = {
        "throughput_ratio_8_min": 0.9, "cpu_ratio_8_max": 0.5,
        "throughput_met": tr8 is not None and tr8 >= 0.9,
        "cpu_met": cr8 is not None and cr8 <= 0.5,
        "cpu_met_poll": bool(poll and poll["n"] == 8 and poll["cpu_ratio"] is not None
                             and poll["cpu_ratio"] <= 0.5),
    }
    if at8 is None:
        problems.append("N = 8 was not run: throughput_ratio_8 and cpu_ratio_8 are null")
    offered = None
    m = re.match(r"^(\d+)([KMGkmg]?)$", a.rate)
    if m:
        offered = int(m.group(1)) * {"": 1e-6, "k": 1e-3, "m": 1, "g": 1e3}[m.group(2).lower()]
    summary = {
        "experiment": "fig-mux",
        "claim": CLAIM,
        "guests": "process",
        "vms": vms,
        "reps": a.reps,
        "secs_per_run": a.secs,
        "cpu_window_s": [a.warm, a.secs - 1],
        "cpu_source": "utime+stime of /proc/PID/stat for the NSM pids of `nkctl --json list nsms`, "
                      "and of the CoreEngine, over the window; cores = CPU s / window s",
        "load_per_vm": {"iperf3_rate": a.rate, "rr_requests_per_s": a.rr_rate, "rr_size_bytes": 64},
        "offered_mbps_per_vm": offered,
        "link_rate": a.link_rate,
        "cc": a.cc,
        "nsm_spin_us": a.nsm_spin_us,
        "nsm_flags": f"nk-nsm --spin-us {a.nsm_spin_us} for every NSM of both configurations",
        "throughput_ratio_8": tr8,
        "cpu_ratio_8": cr8,
        "cores_saved_8": at8["cores_saved"] if at8 else None,
        "cpu_ratio_8_poll": poll["cpu_ratio"] if poll and poll["n"] == 8 else None,
        "throughput_ratio_8_poll": poll["throughput_ratio"] if poll and poll["n"] == 8 else None,
        "cpu_floor_ratio_8": floor8,
        "cpu_floor_source": "native iperf3 clients' system time at N = 8 (the kernel TCP work of the bulk load) "
                            "divided by the separate NSMs' CPU at N = 8: an estimate (noisy) of the floor under cpu_ratio_8",
        "acceptance": acceptance,
        "table": table,
        "poll_point": poll,
        "native": ({"n": nat["n"], "agg_mbps": nat["agg_mbps"], "rr_per_s": nat["rr_per_s"],
                    "rr_lat_avg_us": nat["rr_lat_avg_us"], "stack_cores": nat["stack_cores"]}
                   if nat else None),
        "runs": runs,
        "problems": problems,
        "ok": not problems,
        "elapsed_s": a.elapsed,
    }
    with open(os.path.join(a.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")
    with open(os.path.join(a.out, "data.csv"), "w") as f:
        f.write("case,cfg,n,rep,spin_us,agg_mbps,rr_per_s,rr_lat_avg_us,rr_lat_p99_us,nsms,nsm_cpu_s,nsm_cores,"
                "ce_cores,window_s,host_busy_pct,host_steal_pct\n")
        for r in runs:
            f.write(",".join("" if r.get(k) is None else str(r.get(k)) for k in (
                "case", "cfg", "n", "rep", "spin_us", "agg_mbps", "rr_per_s", "rr_lat_avg_us", "rr_lat_p99_us",
                "nsms", "nsm_cpu_s", "nsm_cores", "ce_cores", "window_s", "host_busy_pct",
                "host_steal_pct")) + "\n")

    # ---- gnuplot ----
    term = png_terminal()
    dat = os.path.join(a.dir, "plot.dat")
    with open(dat, "w") as f:
        f.write("# n sep_cores shared_cores sep_mbps shared_mbps\n")
        for row in table:
            f.write(" ".join("NaN" if row[k] is None else str(row[k]) for k in (
                "n", "separate_nsm_cores", "shared_nsm_cores", "separate_agg_mbps", "shared_agg_mbps")) + "\n")
    allrows = table + ([poll] if poll else [])
    ymax_c = max([row[k] or 0 for row in allrows for k in ("separate_nsm_cores", "shared_nsm_cores")] + [0.1])
    ymax_t = max([row[k] or 0 for row in allrows for k in ("separate_agg_mbps", "shared_agg_mbps")] + [100])
    pdat = os.path.join(a.dir, "plot-poll.dat")
    if poll:
        with open(pdat, "w") as f:
            f.write(" ".join("NaN" if poll[k] is None else str(poll[k]) for k in (
                "n", "separate_nsm_cores", "shared_nsm_cores")) + "\n")
    font = "font ',11'" if term == "pngcairo" else ""
    sub = (f"8 VMs: shared/separate throughput {fmt(tr8, 2)}, NSM CPU {fmt(cr8, 2)} "
           f"(bars: >= 0.90, <= 0.50)")
    gp = [
        f"set terminal {term} size 1000,600 {font}",
        f"set output '{os.path.join(a.out, 'fig-mux.png')}'",
        f"set title \"NSM multiplexing: one NSM per VM vs one shared NSM "
        f"(per VM: iperf3 -b {a.rate} + {a.rr_rate} req/s; NSM spin {a.nsm_spin_us} us)\\n{sub}\"",
        "set xlabel 'VMs (N)'",
        "set ylabel 'NSM CPU (cores)'",
        "set y2label 'aggregate throughput (Mbit/s)'",
        "set logscale x 2",
        f"set xrange [{min(vms) / 1.3:g}:{max(vms) * 1.3:g}]",
        f"set xtics ({', '.join(str(n) for n in vms)})",
        f"set yrange [0:{ymax_c * 1.25:.3f}]",
        f"set y2range [0:{ymax_t * 1.25:.0f}]",
        "set ytics nomirror",
        "set y2tics",
        "set grid",
        "set key top left box opaque",
        f"plot '{dat}' using 1:2 with linespoints lw 2 pt 7 lc rgb '#d62728' title 'cores: one NSM per VM', \\",
        f"     '{dat}' using 1:3 with linespoints lw 2 pt 5 lc rgb '#1f77b4' title 'cores: one shared NSM', \\",
        f"     '{dat}' using 1:4 axes x1y2 with linespoints dt 2 pt 6 lc rgb '#d62728' "
        f"title 'throughput: one NSM per VM', \\",
        f"     '{dat}' using 1:5 axes x1y2 with linespoints dt 2 pt 4 lc rgb '#1f77b4' "
        f"title 'throughput: shared NSM'" + (", \\" if poll else ""),
    ]
    if poll:
        gp += [
            f"     '{pdat}' using 1:2 with points pt 9 ps 2 lc rgb '#d62728' "
            f"title 'cores: one NSM per VM, NSMs poll {poll['spin_us']} us holding the core', \\",
            f"     '{pdat}' using 1:3 with points pt 11 ps 2 lc rgb '#1f77b4' "
            f"title 'cores: shared NSM, NSM polls {poll['spin_us']} us holding the core'",
        ]
    with open(os.path.join(a.dir, "plot.gp"), "w") as f:
        f.write("\n".join(gp) + "\n")

    # ---- table ----
    print(f"   {'N':>2} | {'separate NSMs':^33} | {'one shared NSM':^33} | {'shared/separate':^15} | cores")
    print(f"   {'':>2} | {'Mbit/s':>8} {'r/r /s':>7} {'NSM cores':>9} {'CE':>6} | {'Mbit/s':>8} {'r/r /s':>7} "
          f"{'NSM cores':>9} {'CE':>6} | {'tput':>6} {'CPU':>7} | saved")
    for row in table:
        print(f"   {row['n']:>2} | {fmt(row['separate_agg_mbps']):>8} {fmt(row['separate_rr_per_s'], 0):>7} "
              f"{fmt(row['separate_nsm_cores'], 3):>9} {fmt(row['separate_ce_cores'], 3):>6} | "
              f"{fmt(row['shared_agg_mbps']):>8} {fmt(row['shared_rr_per_s'], 0):>7} "
              f"{fmt(row['shared_nsm_cores'], 3):>9} {fmt(row['shared_ce_cores'], 3):>6} | "
              f"{fmt(row['throughput_ratio'], 3):>6} {fmt(row['cpu_ratio'], 3):>7} | {fmt(row['cores_saved'], 3)}")
    if poll:
        row = poll
        print(f"   {row['n']:>2} | {fmt(row['separate_agg_mbps']):>8} {fmt(row['separate_rr_per_s'], 0):>7} "
              f"{fmt(row['separate_nsm_cores'], 3):>9} {fmt(row['separate_ce_cores'], 3):>6} | "
              f"{fmt(row['shared_agg_mbps']):>8} {fmt(row['shared_rr_per_s'], 0):>7} "
              f"{fmt(row['shared_nsm_cores'], 3):>9} {fmt(row['shared_ce_cores'], 3):>6} | "
              f"{fmt(row['throughput_ratio'], 3):>6} {fmt(row['cpu_ratio'], 3):>7} | {fmt(row['cores_saved'], 3)}"
              f"   <- poll point: every NSM spins {row['spin_us']} us before sleeping"
              f"{', holding its core' if row.get('spin_hold') else ''}")
    if nat:
        print(f"   native baseline, N={nat['n']}: {fmt(nat['agg_mbps'])} Mbit/s, r/r {fmt(nat['rr_per_s'], 0)}/s "
              f"avg {fmt(nat['rr_lat_avg_us'], 0)} us; its iperf3 clients' system time {fmt(nat['stack_cores'], 3)} cores")
    if floor8 is not None:
        print(f"   floor: the bulk load's kernel TCP work alone is {fmt(floor8, 3)} of the separate NSMs' CPU at N=8 "
              f"(an estimate of the floor under cpu_ratio)")
    print(f"   N=8: throughput_ratio_8 {fmt(tr8, 3)} (bar >= 0.90: {'met' if acceptance['throughput_met'] else 'NOT met'}), "
          f"cpu_ratio_8 {fmt(cr8, 3)} (bar <= 0.50: {'met' if acceptance['cpu_met'] else 'NOT met'})")
    if poll and poll["n"] == 8:
        print(f"   N=8, NSMs spinning {poll['spin_us']} us{' holding their cores' if poll.get('spin_hold') else ''}: "
              f"throughput ratio {fmt(poll['throughput_ratio'], 3)}, "
              f"cpu ratio {fmt(poll['cpu_ratio'], 3)} (bar <= 0.50: {'met' if acceptance['cpu_met_poll'] else 'NOT met'})")
    for p in problems:
        print(f"   PROBLEM: {p}")
    print(f"   result: {'OK' if not problems else 'PROBLEMS (%d)' % len(problems)} ({os.path.join(a.out, 'summary.json')})")
    return 0 if not problems else 1


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    l = sub.add_parser("line")
    l.add_argument("--dir", required=True)
    l.add_argument("--out", required=True)
    l.add_argument("--case", required=True)
    s = sub.add_parser("summary")
    s.add_argument("--dir", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--vms", required=True)
    s.add_argument("--reps", type=int, default=1)
    s.add_argument("--secs", type=float, required=True)
    s.add_argument("--warm", type=float, default=2)
    s.add_argument("--rate", default="100M")
    s.add_argument("--rr-rate", type=int, default=500)
    s.add_argument("--link-rate", default="1gbit")
    s.add_argument("--cc", default="cubic")
    s.add_argument("--nsm-spin-us", type=int, required=True)
    s.add_argument("--poll-spin-us", default="off")
    s.add_argument("--elapsed", type=int, default=0)
    a = ap.parse_args()
    return cmd_line(a) if a.cmd == "line" else cmd_summary(a)


if __name__ == "__main__":
    sys.exit(main())
