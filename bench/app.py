#!/usr/bin/env python3
"""bench/app.py - parsing, summaries, figures and the README table for the
application benchmarks (bench/app.sh).

  app.py record RAW FAM CASE MODE RUN PARSER FILE WALL_US MB0 MB1 TT0 TT1 RC HZ
      parse one run's output FILE with PARSER (iperf3 | sockperf | rpc | wrk |
      redis:N), add its CPU accounting, append one JSON line to RAW
  app.py brief RAW FAM CASE
      one line: medians of that case so far
  app.py summarize RAW OUTDIR --runs N --quick 0|1 --load-before S
                   --load-after S --families LIST
      results/bench/app_FAM.csv (every run), merges the summary rows into
      OUTDIR/summary.json (suite "app"; other entries kept), rewrites
      OUTDIR/summary.csv, draws OUTDIR/app_*.png, prints the table
  app.py readme SUMMARY README
      rewrites the table between <!-- bench-table:begin --> and
      <!-- bench-table:end --> in README from SUMMARY's "app" rows

Medians never means; ratio = nk / native always.
"""
import csv
import datetime
import json
import os
import re
import statistics
import subprocess
import sys


# ---------------------------------------------------------------- parsers
# Each returns (metrics dict, work, work_unit) or raises ValueError(reason).

def _json_from(text):
    i = text.find("{")
    if i < 0:
        raise ValueError("no JSON in output: " + " | ".join(text.strip().splitlines()[-2:])[:200])
    d, _ = json.JSONDecoder().raw_decode(text[i:])
    return d


def p_iperf3(text, _arg):
    d = _json_from(text)
    if d.get("error"):
        raise ValueError("iperf3: " + d["error"])
    r = d["end"]["sum_received"]
    s = d["end"].get("sum_sent", {})
    m = {"gbps": r["bits_per_second"] / 1e9, "bytes": r["bytes"],
         "retransmits": s.get("retransmits", 0)}
    if r["bytes"] <= 0:
        raise ValueError("iperf3: 0 bytes received")
    return m, r["bytes"], "bytes"


def p_sockperf(text, _arg):
    def grab(pat):
        mm = re.search(pat, text)
        if not mm:
            raise ValueError("sockperf: no '%s' in output: %s" % (
                pat, " | ".join(text.strip().splitlines()[-2:])[:200]))
        return float(mm.group(1))
    valid = re.search(r"\[Valid Duration\] RunTime=([0-9.]+) sec; SentMessages=(\d+); ReceivedMessages=(\d+)", text)
    if not valid or int(valid.group(3)) == 0:
        raise ValueError("sockperf: no replies: " + " | ".join(text.strip().splitlines()[-2:])[:200])
    m = {"p50_us": grab(r"percentile 50\.000 =\s*([0-9.]+)"),
         "p99_us": grab(r"percentile 99\.000 =\s*([0-9.]+)"),
         "avg_us": grab(r"avg-latency=([0-9.]+)"),
         "messages": int(valid.group(3))}
    tot = re.search(r"\[Total Run\].*ReceivedMessages=(\d+)", text)
    return m, int(tot.group(1)) if tot else m["messages"], "requests"


STALL_MS = 1000


def p_rpc(text, _arg):
    d = _json_from(text)
    if not d.get("requests"):
        raise ValueError("nk_rpc: no completed requests")
    # A closed loop with 8 requests outstanding never waits a second for a
    # response unless something lost them: the rate would be the stall's.
    if d.get("max_stall_ms", 0) >= STALL_MS:
        raise ValueError("nk_rpc: a connection got no response for %.0f ms (stalled; %d requests done)"
                         % (d["max_stall_ms"], d["requests"]))
    m = {k: d[k] for k in ("rate", "gbps", "lat_p50_us", "lat_p99_us", "lat_avg_us", "requests",
                           "max_stall_ms") if k in d}
    return m, d.get("requests_total", d["requests"]), "requests"


def p_wrk(text, _arg):
    rq = re.search(r"(\d+) requests in ([0-9.]+)(m?s)", text)
    rps = re.search(r"Requests/sec:\s*([0-9.]+)", text)
    if not rq or not rps:
        raise ValueError("wrk: " + " | ".join(text.strip().splitlines()[-3:])[:200])
    n = int(rq.group(1))
    errs = 0
    se = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if se:
        errs = sum(int(x) for x in se.groups())
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if non2xx and int(non2xx.group(1)) > 0:
        raise ValueError("wrk: %s non-2xx responses" % non2xx.group(1))
    if n == 0:
        raise ValueError("wrk: 0 requests")
    return {"rps": float(rps.group(1)), "requests": n, "socket_errors": errs}, n, "requests"


def p_redis(text, arg):
    n = int(arg)
    for line in text.splitlines():
        f = [x.strip('"') for x in line.strip().split(",")]
        if len(f) >= 5 and f[0] in ("SET", "GET"):
            return {"ops": float(f[1]), "p50_ms": float(f[4])}, n, "requests"
    raise ValueError("redis-benchmark: " + " | ".join(text.strip().splitlines()[-2:])[:200])


PARSERS = {"iperf3": p_iperf3, "sockperf": p_sockperf, "rpc": p_rpc, "wrk": p_wrk, "redis": p_redis}


def _times_s(s):
    # bash `times`: 1m2.345s
    mm = re.match(r"(\d+)m([0-9.]+)s", s)
    return int(mm.group(1)) * 60 + float(mm.group(2)) if mm else 0.0


def cmd_record(a):
    raw, fam, case, mode, run, parser, path, wall_us, mb0, mb1, tt0, tt1, rc, hz = a
    hz = float(hz)
    text = ""
    try:
        text = open(path, errors="replace").read()
    except OSError:
        pass
    name, _, arg = parser.partition(":")
    row = {"family": fam, "case": case, "mode": mode, "run": int(run),
           "wall_s": int(wall_us) / 1e6, "exit": int(rc)}
    try:
        m, work, unit = PARSERS[name](text, arg)
        row.update(ok=True, metrics=m, work=work, work_unit=unit)
    except (ValueError, KeyError, TypeError) as e:
        row.update(ok=False, error=str(e) or repr(e))
    row["cpu_machine_s"] = (int(mb1) - int(mb0)) / hz
    t0, t1 = tt0.split(), tt1.split()
    row["cpu_task_s"] = ((int(t1[0]) - int(t0[0])) / hz
                         + sum(_times_s(t1[i]) - _times_s(t0[i]) for i in (1, 2)))
    # task CPU by role (app.sh task_snap: ROLE=ticks after the first three)
    r0 = dict(kv.split("=", 1) for kv in t0[3:])
    r1 = dict(kv.split("=", 1) for kv in t1[3:])
    row["cpu_role_s"] = {k: (int(r1[k]) - int(r0[k])) / hz for k in r1 if k in r0}
    with open(raw, "a") as f:
        f.write(json.dumps(row) + "\n")
    if not row["ok"]:
        print("  %s %s %s run %s: FAILED (exit %s): %s" % (fam, case, mode, run, rc, row["error"]),
              file=sys.stderr)
        return 3
    return 0


def load_raw(path):
    return [json.loads(l) for l in open(path) if l.strip()]


# ---------------------------------------------------------------- summary rows
# name, family, case, metric, unit, better, label, goal (ratio op value) or None
def specs(families):
    s = []
    if "iperf3" in families:
        for case, lab in (("g2r_p1", "guest→remote, 1 stream"), ("g2r_p4", "guest→remote, 4 streams"),
                          ("r2g_p1", "remote→guest, 1 stream"), ("r2g_p4", "remote→guest, 4 streams")):
            goal = (">=", 0.9) if case.endswith("p1") else None
            s.append(("iperf3_" + case, "iperf3", case, "gbps", "Gbit/s", "higher", "iperf3 " + lab, goal))
    if "sockperf" in families:
        for size in ("64", "1024"):
            for q in ("p50", "p99"):
                goal = ("<=", 1.5) if size == "64" and q == "p50" else None
                lab = "sockperf TCP ping-pong %s B, %s latency" % (size, "median" if q == "p50" else "p99")
                s.append(("sockperf_tcp_%s_%s" % (size, q), "sockperf", "tcp_" + size, q + "_us", "µs",
                          "lower", lab, goal))
    if "rpc" in families:
        for size in ("16", "64", "256", "1024", "4096"):
            s.append(("rpc_%s" % size, "rpc", size, "rate", "req/s", "higher",
                      "micro-RPC %s B (4 conns × 8 outstanding)" % size, None))
    if "nginx" in families:
        for case, lab in (("ka_1k", "keep-alive, 1 KiB"), ("ka_64k", "keep-alive, 64 KiB"),
                          ("close_1k", "Connection: close, 1 KiB"), ("close_64k", "Connection: close, 64 KiB")):
            goal = (">=", 0.9) if case == "ka_1k" else None
            s.append(("nginx_" + case, "nginx", case, "rps", "req/s", "higher", "nginx + wrk " + lab, goal))
    if "redis" in families:
        for case in ("set", "get"):
            s.append(("redis_" + case, "redis", case, "ops", "ops/s", "higher",
                      "redis-benchmark " + case.upper() + " (50 clients)", None))
    # CPU cost rows: metric "cpu_per_gb" / "cpu_per_100k" computed per run
    if "iperf3" in families:
        for case in ("g2r_p1", "g2r_p4", "r2g_p1", "r2g_p4"):
            s.append(("cpu_per_gb_iperf3_" + case, "iperf3", case, "cpu_per_gb", "CPU s/GB", "lower",
                      "CPU per GB, iperf3 " + case.replace("_p", " P").replace("g2r", "guest→remote")
                      .replace("r2g", "remote→guest"), ("<=", 1.3)))
    for fam, case, lab in (("nginx", "ka_1k", "nginx keep-alive 1 KiB"), ("nginx", "close_1k", "nginx close 1 KiB"),
                           ("rpc", "64", "micro-RPC 64 B"), ("redis", "get", "redis GET")):
        if fam in families:
            s.append(("cpu_per_100k_%s_%s" % (fam, case), fam, case, "cpu_per_100k", "CPU s/100k req",
                      "lower", "CPU per 100k requests, " + lab, None))
    return s


ALL_FAMILIES = ["iperf3", "sockperf", "rpc", "nginx", "redis"]


def canonical(rows):
    """App rows in the order of specs(): the families, then the CPU rows."""
    order = {sp[0]: i for i, sp in enumerate(specs(ALL_FAMILIES))}
    return sorted(rows, key=lambda e: order.get(e["name"], len(order)))


NATIVE_IS = {
    "iperf3": "the same iperf3 client natively in the nsm namespace (same veth, same remote server)",
    "sockperf": "the same sockperf client natively in the nsm namespace (same remote server)",
    "rpc": "the same nk_rpc server natively in the nsm namespace (client on remote)",
    "nginx": "the same nginx config natively in the nsm namespace (wrk on remote)",
    "redis": "the same redis-server natively in the nsm namespace (redis-benchmark on remote)",
}


def run_value(r, metric):
    if not r.get("ok"):
        return None
    if metric == "cpu_per_gb":
        return r["cpu_machine_s"] / (r["work"] / 1e9) if r["work"] else None
    if metric == "cpu_per_100k":
        return r["cpu_machine_s"] / (r["work"] / 1e5) if r["work"] else None
    if metric == "cpu_task_per_gb":
        return r["cpu_task_s"] / (r["work"] / 1e9) if r["work"] else None
    if metric == "cpu_task_per_100k":
        return r["cpu_task_s"] / (r["work"] / 1e5) if r["work"] else None
    return r["metrics"].get(metric)


# Task CPU by role (app.sh task_snap), and the client (the reaped child:
# the rest of cpu_task_s). In NetKernel runs the application's share is
# "guest" + "ce" + "nsm"; natively it is "nsmapp" (or the client).
ROLES = ("guest", "ce", "nsm", "nsmapp", "remote", "client")


def role_split(sel, mode, per):
    out = {}
    for role in ROLES:
        vals = []
        for r in sel:
            if r["mode"] != mode or not r.get("ok") or not r["work"] or "cpu_role_s" not in r:
                continue
            cr = r["cpu_role_s"]
            v = r["cpu_task_s"] - sum(cr.values()) if role == "client" else cr.get(role, 0.0)
            vals.append(v / (r["work"] / per))
        m = med(vals)
        if m is not None and m > 0:
            out[role] = rnd(m)
    return out


def rnd(x):
    if x is None:
        return None
    if x == 0:
        return 0.0
    from math import floor, log10
    return round(x, max(0, 3 - int(floor(log10(abs(x))))))


def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def build_rows(raw, families, meta):
    rows = []
    for name, fam, case, metric, unit, better, label, goal in specs(families):
        sel = [r for r in raw if r["family"] == fam and r["case"] == case]
        if not sel:
            continue
        v = {m: [run_value(r, metric) for r in sel if r["mode"] == m] for m in ("nk", "native")}
        ok = {m: [x for x in v[m] if x is not None] for m in v}
        nk, nat = med(ok["nk"]), med(ok["native"])
        ratio = nk / nat if nk is not None and nat else None
        e = {"name": name, "unit": unit, "nk": rnd(nk), "native": rnd(nat),
             "ratio": round(ratio, 3) if ratio is not None else None,
             "runs": max(len(v["nk"]), len(v["native"])), "better": better,
             "nk_min": rnd(min(ok["nk"])) if ok["nk"] else None,
             "nk_max": rnd(max(ok["nk"])) if ok["nk"] else None,
             "native_min": rnd(min(ok["native"])) if ok["native"] else None,
             "native_max": rnd(max(ok["native"])) if ok["native"] else None,
             "nk_failed": len(v["nk"]) - len(ok["nk"]),
             "native_failed": len(v["native"]) - len(ok["native"]),
             "suite": "app", "family": fam, "case": case, "label": label,
             "native_is": NATIVE_IS[fam]}
        if metric.startswith("cpu_per"):
            tm = metric.replace("cpu_per", "cpu_task_per")
            tnk = med([run_value(r, tm) for r in sel if r["mode"] == "nk"])
            tnat = med([run_value(r, tm) for r in sel if r["mode"] == "native"])
            e["nk_task"], e["native_task"] = rnd(tnk), rnd(tnat)
            e["ratio_task"] = round(tnk / tnat, 3) if tnk is not None and tnat else None
            per = 1e9 if metric == "cpu_per_gb" else 1e5
            e["nk_task_split"] = role_split(sel, "nk", per)
            e["native_task_split"] = role_split(sel, "native", per)
            e["method"] = ("whole-machine busy CPU (/proc/stat user+nice+system+irq+softirq) over each run / "
                           "work moved in that run; nk_task/native_task: task CPU of the CoreEngine, every "
                           "process in the testbed namespaces and the client; *_task_split: the same by "
                           "role (guest namespace, CoreEngine, NSM, the rest of the nsm namespace = "
                           "native server, remote namespace, client), median per unit of work")
        if fam == "sockperf":
            e["note"] = "sockperf reports half the round trip"
        if fam == "nginx":
            e["socket_errors_nk"] = sum(r["metrics"].get("socket_errors", 0) for r in sel
                                        if r.get("ok") and r["mode"] == "nk")
            e["socket_errors_native"] = sum(r["metrics"].get("socket_errors", 0) for r in sel
                                            if r.get("ok") and r["mode"] == "native")
        if goal:
            op, g = goal
            e["goal"] = "ratio %s %s" % (op, g)
            # judged on the ratio as printed (two decimals)
            r2 = None if ratio is None else round(ratio, 2)
            e["meets_goal"] = (None if r2 is None else (r2 >= g if op == ">=" else r2 <= g))
        e.update(meta)
        rows.append(e)
    return rows


def write_csvs(raw, outdir, families):
    for fam in families:
        sel = [r for r in raw if r["family"] == fam]
        if not sel:
            continue
        with open(os.path.join(outdir, "app_%s.csv" % fam), "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["case", "mode", "run", "ok", "metric", "value"])
            for r in sel:
                base = [r["case"], r["mode"], r["run"], int(r["ok"])]
                if r["ok"]:
                    for k, val in r["metrics"].items():
                        w.writerow(base + [k, val])
                    w.writerow(base + ["work_" + r["work_unit"], r["work"]])
                else:
                    w.writerow(base + ["error", r["error"]])
                for k in ("wall_s", "cpu_machine_s", "cpu_task_s"):
                    w.writerow(base + [k, round(r[k], 4)])


def plots(rows, raw, outdir):
    def dat(name, lines):
        p = os.path.join(outdir, name)
        with open(p, "w") as f:
            for ln in lines:
                f.write("\t".join(str(x) for x in ln) + "\n")
        return p
    by = {r["name"]: r for r in rows}
    tput = [r for r in rows if r["better"] == "higher" and r["ratio"] is not None]
    cost = [r for r in rows if r["better"] == "lower" and r["ratio"] is not None]
    script = ["set terminal pngcairo size 1000,560 noenhanced font ',9'", "set grid ytics",
              "set style fill solid 0.8 border -1", "set boxwidth 0.7"]
    files = []
    if tput:
        p = dat("app_tput.dat", [(i, r["name"], r["ratio"]) for i, r in enumerate(tput)])
        files.append(p)
        script += ['set output "%s/app_ratio_tput.png"' % outdir,
                   'set title "Throughput, NetKernel / native (median of runs; higher is better)"',
                   "set ylabel 'ratio'", "set yrange [0:*]", "set xtics rotate by -40",
                   "set xrange [-0.7:%f]" % (len(tput) - 0.3),
                   'plot "%s" u 1:3:xtic(2) w boxes lc rgb "#4477aa" t "nk / native", '
                   '0.9 w l dt 2 lc rgb "red" t "goal 0.9 (iperf3 1 stream, nginx keep-alive 1 KiB)", '
                   '1 w l lc rgb "black" t ""' % p]
    if cost:
        p = dat("app_cost.dat", [(i, r["name"], r["ratio"]) for i, r in enumerate(cost)])
        files.append(p)
        script += ['set output "%s/app_ratio_cost.png"' % outdir,
                   'set title "Latency and CPU cost, NetKernel / native (median of runs; lower is better)"',
                   "set ylabel 'ratio'", "set yrange [0:*]", "set xtics rotate by -40",
                   "set xrange [-0.7:%f]" % (len(cost) - 0.3),
                   'plot "%s" u 1:3:xtic(2) w boxes lc rgb "#cc6677" t "nk / native", '
                   '1.5 w l dt 2 lc rgb "red" t "goal 1.5 (sockperf 64 B median)", '
                   '1.3 w l dt 3 lw 2 lc rgb "orange" t "goal 1.3 (CPU per GB)", '
                   '1 w l lc rgb "black" t ""' % p]
    rpc = [by.get("rpc_%d" % s) for s in (16, 64, 256, 1024, 4096)]
    rpc = [r for r in rpc if r and r["nk"] is not None and r["native"] is not None]
    if rpc:
        p = dat("app_rpc.dat", [(r["case"], r["nk"], r["nk_min"], r["nk_max"],
                                 r["native"], r["native_min"], r["native_max"]) for r in rpc])
        files.append(p)
        script += ['set output "%s/app_rpc.png"' % outdir,
                   'set title "micro-RPC request rate by message size (4 connections x 8 outstanding; median, min-max)"',
                   "set xlabel 'message size (bytes)'", "set ylabel 'requests/s'", "set logscale x 2",
                   "set xrange [10:6000]", "set yrange [0:*]", "set xtics norotate", "set xtics auto",
                   "set key top right",
                   'plot "%s" u 1:2:3:4 w yerrorlines lw 2 t "NetKernel (server in guest)", '
                   '"%s" u 1:5:6:7 w yerrorlines lw 2 t "native (server in nsm namespace)"' % (p, p),
                   "unset logscale x", "unset xlabel"]
    ip = [by.get("iperf3_" + c) for c in ("g2r_p1", "g2r_p4", "r2g_p1", "r2g_p4")]
    ip = [r for r in ip if r and r["nk"] is not None and r["native"] is not None]
    if ip:
        p = dat("app_iperf3.dat", [(r["case"], r["native"], r["nk"]) for r in ip])
        files.append(p)
        script += ['set output "%s/app_iperf3.png"' % outdir,
                   'set title "iperf3 throughput (median of runs)"', "set ylabel 'Gbit/s'",
                   "set yrange [0:*]", "set xrange [*:*]", "set style data histograms",
                   "set style histogram cluster gap 1", "set xtics norotate", "set key top right",
                   'plot "%s" u 2:xtic(1) t "native" lc rgb "#999999", "" u 3 t "NetKernel" lc rgb "#4477aa"' % p]
    if len(script) > 4:
        try:
            subprocess.run(["gnuplot"], input="\n".join(script) + "\n", text=True, check=True,
                           capture_output=True)
        except (OSError, subprocess.CalledProcessError) as e:
            print("app.py: gnuplot failed (%s); results are in summary.json" %
                  (getattr(e, "stderr", "") or e), file=sys.stderr)
    for p in files:
        os.unlink(p)


def fmt(x):
    if x is None:
        return "—"
    if abs(x) >= 1000:
        return "{:,.0f}".format(x)
    if abs(x) >= 100:
        return "%.0f" % x
    if abs(x) >= 10:
        return "%.1f" % x
    return "%#.3g" % x


def print_table(rows):
    w = [38, 14, 11, 11, 7, 12]
    hdr = ["benchmark", "unit", "native", "NetKernel", "ratio", "goal"]
    print("  ".join(h.ljust(n) for h, n in zip(hdr, w)))
    for r in rows:
        g = ""
        if r.get("goal"):
            g = r["goal"].replace("ratio ", "") + (" met" if r.get("meets_goal") else " NOT met")
        fails = ""
        if r.get("nk_failed") or r.get("native_failed"):
            fails = "  (failed runs: nk %d, native %d)" % (r["nk_failed"], r["native_failed"])
        print("  ".join(str(c).ljust(n) for c, n in zip(
            [r["name"], r["unit"], fmt(r["native"]), fmt(r["nk"]),
             "—" if r["ratio"] is None else "%.2f" % r["ratio"], g], w)) + fails)


def cmd_summarize(argv):
    raw_path, outdir = argv[0], argv[1]
    opts = dict(zip(argv[2::2], argv[3::2]))
    families = opts.get("--families", "iperf3,sockperf,rpc,nginx,redis").split(",")
    raw = load_raw(raw_path)
    meta = {"quick": opts.get("--quick", "0") == "1",
            "load_before": opts.get("--load-before", ""), "load_after": opts.get("--load-after", ""),
            "measured_at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%MZ"),
            "tree": opts.get("--tree", ""),
            "background_busy_cores": (float(opts["--background-busy-cores"])
                                      if opts.get("--background-busy-cores") else None)}
    rows = build_rows(raw, families, meta)
    write_csvs(raw, outdir, families)
    sp = os.path.join(outdir, "summary.json")
    old = []
    if os.path.exists(sp):
        try:
            old = json.load(open(sp))
        except ValueError:
            print("app.py: %s unreadable; rewriting it" % sp, file=sys.stderr)
    # keep the microbenchmarks and app families not run this time
    kept = [e for e in old if not (e.get("suite") == "app" and e.get("family") in families)]
    micro = [e for e in kept if e.get("suite") != "app"]
    kept = micro + canonical([e for e in kept if e.get("suite") == "app"] + rows)
    rows_all = kept
    json.dump(rows_all, open(sp, "w"), indent=2, ensure_ascii=False)
    with open(os.path.join(outdir, "summary.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name", "unit", "nk", "native", "ratio", "runs"])
        for e in rows_all:
            w.writerow([e.get(k) for k in ("name", "unit", "nk", "native", "ratio", "runs")])
    allapp = [e for e in rows_all if e.get("suite") == "app"]
    plots(allapp, raw, outdir)
    print()
    print("== application benchmarks (%s; medians; ratio = NetKernel / native; load %s -> %s; "
          "background %s busy cores)%s" % (sp, meta["load_before"], meta["load_after"],
                                           meta["background_busy_cores"], "  QUICK RUN" if meta["quick"] else ""))
    print_table(canonical(rows))
    print("CPU rows: whole-machine busy CPU seconds (/proc/stat) per GB received or per 100k requests.")
    print("sockperf latencies are what sockperf reports: half the round trip.")
    missing = [f for f in families if not any(r["family"] == f and r.get("ok") for r in raw)]
    if missing:
        print("app.py: no successful run at all in: %s" % ", ".join(missing), file=sys.stderr)
        return 1
    return 0


def cmd_brief(argv):
    raw, fam, case = argv
    sel = [r for r in load_raw(raw) if r["family"] == fam and r["case"] == case]
    key = {"iperf3": ("gbps", "Gbit/s"), "sockperf": ("p50_us", "µs median"), "rpc": ("rate", "req/s"),
           "wrk": ("rps", "req/s"), "nginx": ("rps", "req/s"), "redis": ("ops", "ops/s")}[fam]
    out = []
    for m in ("nk", "native"):
        vals = [r["metrics"][key[0]] for r in sel if r["mode"] == m and r.get("ok")]
        bad = sum(1 for r in sel if r["mode"] == m and not r.get("ok"))
        out.append("%s %s%s" % (m, fmt(med(vals)), (" (%d failed)" % bad) if bad else ""))
        if m == "nk":
            nkm = med(vals)
        else:
            natm = med(vals)
    ratio = ("%.2f" % (nkm / natm)) if nkm is not None and natm else "—"
    print("  %-10s %-9s %s | %s %s, ratio %s" % (fam, case, out[0], out[1], key[1], ratio))
    return 0


def cmd_readme(argv):
    sp, readme = argv
    rows = canonical([e for e in json.load(open(sp)) if e.get("suite") == "app"])
    begin, end = "<!-- bench-table:begin -->", "<!-- bench-table:end -->"
    text = open(readme).read()
    if begin not in text or end not in text:
        print("app.py: %s has no %s ... %s markers" % (readme, begin, end), file=sys.stderr)
        return 1
    when = sorted({e.get("measured_at", "?") for e in rows})
    loads = sorted({"%s → %s" % (e.get("load_before", "?"), e.get("load_after", "?")) for e in rows})
    bgs = sorted({e.get("background_busy_cores") for e in rows if e.get("background_busy_cores") is not None})
    quick = any(e.get("quick") for e in rows)
    runs = sorted({e.get("runs") for e in rows})
    trees = sorted({e.get("tree") or "?" for e in rows})
    out = [begin, "",
           "Generated by `bench/app.py readme` from `results/bench/summary.json` (application rows); "
           "measured %s (binaries of tree %s), %s runs per case and mode, alternating NetKernel "
           "and native, medians; 1-minute load average before → after: %s on this 2-vCPU "
           "machine%s.%s" % (
               ", ".join(when), ", ".join(trees), "/".join(str(r) for r in runs), "; ".join(loads),
               (", other work using %s cores with the testbed idle" % "/".join("%.2f" % b for b in bgs))
               if bgs else "",
               " **Quick run (short runs): noisy.**" if quick else ""),
           "",
           "| benchmark | unit | native | NetKernel | NetKernel / native | goal |",
           "|---|---|--:|--:|--:|---|"]
    for e in rows:
        g = ""
        if e.get("goal"):
            g = "%s: %s" % (e["goal"].replace("ratio ", "≤ " if "<=" in e["goal"] else "≥ ")
                            .replace("<= ", "").replace(">= ", ""),
                            "met" if e.get("meets_goal") else "**not met**")
        ratio = "—" if e["ratio"] is None else "%.2f" % e["ratio"]
        fails = ""
        if e.get("nk_failed") or e.get("native_failed"):
            fails = " (failed runs: nk %d, native %d)" % (e["nk_failed"], e["native_failed"])
        task = ""
        if e.get("ratio_task") is not None:
            task = " (task CPU only: native %s, NetKernel %s, %.2f×)" % (
                fmt(e["native_task"]), fmt(e["nk_task"]), e["ratio_task"])
        out.append("| %s%s%s | %s | %s | %s | %s | %s |" % (e["label"], task, fails, e["unit"],
                                                            fmt(e["native"]), fmt(e["nk"]), ratio, g))
    goals = [e for e in rows if e.get("goal")]
    if goals:
        out += ["", "Goals: %d of %d met (%s)." % (
            sum(1 for e in goals if e.get("meets_goal")), len(goals),
            "; ".join("%s %s" % (e["name"], "met" if e.get("meets_goal") else "not met") for e in goals))]
    split = [e for e in rows if e.get("nk_task_split") or e.get("native_task_split")]
    if split:
        cols = (("client", "client"), ("guest", "guest ns"), ("ce", "CoreEngine"), ("nsm", "NSM"),
                ("nsmapp", "nsm ns (native server)"), ("remote", "remote ns"))
        out += ["", "Where the task CPU goes (medians per unit of work; the client is the "
                "load generator or iperf3/sockperf client this script started; roles that used "
                "nothing are blank):", "",
                "| benchmark | unit | run | " + " | ".join(c[1] for c in cols) + " |",
                "|---|---|---|" + "--:|" * len(cols)]
        for e in split:
            for mode, label in (("native", "native"), ("nk", "NetKernel")):
                sp = e.get(mode + "_task_split") or {}
                out.append("| %s | %s | %s | %s |" % (e["label"], e["unit"], label,
                                                      " | ".join(fmt(sp[c[0]]) if c[0] in sp else ""
                                                                 for c in cols)))
    out += ["", end]
    i, j = text.index(begin), text.index(end) + len(end)
    open(readme, "w").write(text[:i] + "\n".join(out) + text[j:])
    return 0


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, argv = sys.argv[1], sys.argv[2:]
    if cmd == "record":
        return cmd_record(argv)
    if cmd == "brief":
        return cmd_brief(argv)
    if cmd == "summarize":
        return cmd_summarize(argv)
    if cmd == "readme":
        return cmd_readme(argv)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
