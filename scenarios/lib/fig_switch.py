#!/usr/bin/env python3
"""Summary of scenarios/fig-switch.sh: data.csv, summary.json, the gnuplot
script of fig-switch.png, and the closing table.

Reads, for each case (native_tcp, native_mptcp, netkernel, netkernel_cold):
  DIR/CASE.res        key=value lines written by the scenario
  DIR/CASE.csv        nk_stream recv series: t_s,bytes_interval,mbps
  DIR/CASE.vms.json   `nkctl --json list vms` of the sender CoreEngine (nk runs)
  OUT/logs/CASE-send.log, OUT/logs/CASE-recv.log   nk_stream output
Writes OUT/data.csv, OUT/summary.json and DIR/plot.gp (+ DIR/plot-CASE.dat).
Exit status 0 when nothing went wrong, 1 otherwise.
"""
import argparse
import json
import os
import re
import sys
from figlib import png_terminal, read_res

CASES = ["native_tcp", "native_mptcp", "netkernel", "netkernel_cold"]
PAPER_TCP, PAPER_MPTCP = 0.94, 1.7
CLAIM = ("A VM streaming over two 1 Gbit/s links is switched live from a TCP (cubic) NSM "
         "to an MPTCP NSM (nkctl switch); its throughput rises from ~0.94 Gbit/s to "
         "~1.7 Gbit/s, close to native MPTCP, and the application never restarts "
         "(NetKernel, HotNets'17, Figure 2).")


def read_series(path):
    rows = []
    try:
        with open(path) as f:
            next(f, None)
            for line in f:
                p = line.strip().split(",")
                if len(p) == 3:
                    rows.append((float(p[0]), int(p[1]), float(p[2])))
    except (OSError, ValueError):
        pass
    return rows


def mean_gbps(rows, a, b):
    """Mean throughput in (a, b] from interval rows (t_end, bytes, mbps)."""
    if not rows:
        return None
    end = min(b, rows[-1][0])
    if end <= a:
        return None
    s = sum(r[1] for r in rows if a + 1e-6 < r[0] <= b + 1e-6)
    return round(s * 8 / (end - a) / 1e9, 3)


def parse_logs(out, case):
    r = {}
    for side in ("send", "recv"):
        try:
            with open(os.path.join(out, "logs", f"{case}-{side}.log"), errors="replace") as f:
                text = f.read()
        except OSError:
            continue
        m = re.search(r"^pid (\d+)$", text, re.M)
        if m:
            r[f"{side}_pid_start"] = int(m.group(1))
        if side == "send":
            m = re.search(r"^sent (\d+) checksum (0x[0-9a-f]+) peer (.*?) secs ([\d.]+) mbps ([\d.]+) pid (\d+)$",
                          text, re.M)
            if m:
                r.update(bytes_sent=int(m.group(1)), checksum_sent=m.group(2), peer=m.group(3),
                         send_secs=float(m.group(4)), send_mbps=float(m.group(5)), send_pid_end=int(m.group(6)))
        else:
            m = re.search(r"^received (\d+) checksum (0x[0-9a-f]+) (ok|CORRUPT at \d+) secs ([\d.]+) "
                          r"mbps ([\d.]+) pid (\d+)(?: stall_ms ([\d.]+) at_s ([\d.]+))?$", text, re.M)
            if m:
                r.update(bytes_received=int(m.group(1)), checksum_received=m.group(2), stream=m.group(3),
                         recv_secs=float(m.group(4)), recv_mbps=float(m.group(5)), recv_pid_end=int(m.group(6)))
                if m.group(7):
                    r.update(recv_max_stall_ms=float(m.group(7)), recv_max_stall_at_s=float(m.group(8)))
    return r


def vm_entry(path, name="vs"):
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    for v in data if isinstance(data, list) else []:
        if isinstance(v, dict) and v.get("name") == name:
            return v
    return None


def num(s):
    try:
        return float(s)
    except (TypeError, ValueError):
        return None


def fmt(x, nd=2, unit=""):
    return "-" if x is None else f"{x:.{nd}f}{unit}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--phase", type=float, required=True)
    ap.add_argument("--cold", type=float, required=True)
    ap.add_argument("--interval-ms", type=int, default=100)
    ap.add_argument("--cc", default="cubic")
    ap.add_argument("--rate", default="1gbit")
    ap.add_argument("--elapsed", type=int, default=0)
    ap.add_argument("--guests", default="process")
    ap.add_argument("--accel", default="")
    a = ap.parse_args()

    P, C = a.phase, a.cold
    skip = min(1.0, P / 5)  # the first second of each 5 s phase is left out
    problems, notes = [], []
    runs = {}
    series = {}
    for c in CASES:
        res = read_res(os.path.join(a.dir, c + ".res"))
        if not os.path.exists(os.path.join(a.dir, c + ".res")):
            continue  # the case did not run
        r = {"duration_s": num(res.get("duration_s"))}
        r.update(parse_logs(a.out, c))
        for k in ("send_rc", "recv_rc", "send_launched_pid", "recv_launched_pid", "switch_rc"):
            if k in res:
                r[k] = int(res[k]) if res[k].lstrip("-").isdigit() else None
        for k in ("switch_at_s", "switch_cmd_ms", "vm_boot_s"):
            if k in res:
                r[k] = round(num(res[k]), 3) if num(res[k]) is not None else None
        for k in ("switch_output", "error", "cc_mid", "cc_before", "cc_after", "nsm_state_before"):
            if k in res:
                r[k] = res[k]
        for k in ("subflows_mid", "subflows_before", "subflows_after"):
            if k in res and res[k].isdigit():
                r[k] = int(res[k])
        for k in ("nk_peers", "warm_ready"):
            if k in res:
                r[k] = res[k] == "1"
        rows = read_series(os.path.join(a.dir, c + ".csv"))
        series[c] = rows
        intact = (r.get("bytes_sent") is not None and r.get("bytes_sent") == r.get("bytes_received")
                  and r.get("checksum_sent") == r.get("checksum_received") and r.get("stream") == "ok")
        r["data_intact"] = intact
        r["apps_ok"] = r.get("send_rc") == 0 and r.get("recv_rc") == 0 and r.get("peer") == "ok"
        restarts = 0
        for side in ("send", "recv"):
            s, e, l = r.get(f"{side}_pid_start"), r.get(f"{side}_pid_end"), r.get(f"{side}_launched_pid")
            if s is None or e is None or s != e or (l is not None and s != l):
                restarts += 1
        r["app_restarts"] = restarts
        if c.startswith("netkernel"):
            vm = vm_entry(os.path.join(a.dir, c + ".vms.json"))
            if vm is None:
                r["switch_gap_us"] = None
                r["gap_note"] = "nkctl --json list vms gave no entry for vs"
            elif "switch_gap_us" not in vm:
                r["switch_gap_us"] = None
                r["gap_note"] = "the CoreEngine does not report switch_gap_us"
            else:
                r["switch_gap_us"] = vm["switch_gap_us"]
                if vm["switch_gap_us"] is None:
                    r["gap_note"] = "switch_gap_us is null (no byte carried by the new NSM yet?)"
            if vm is not None:
                r["switch_chunk_us"] = vm.get("switch_chunk_us")
                r["vm_after"] = {k: vm.get(k) for k in ("nsm", "switches", "migrations") if k in vm}
            out = r.get("switch_output", "")
            m = re.search(r"\((warm|cold) switch\)", out)
            r["switch_kind"] = m.group(1) if m else None
        if rows:
            r["rows"] = len(rows)
        runs[c] = r

    def run(c):
        return runs.get(c, {})

    nt, nm, nk, nkc = run("native_tcp"), run("native_mptcp"), run("netkernel"), run("netkernel_cold")
    native_tcp = mean_gbps(series.get("native_tcp"), skip, 2 * P)
    native_mptcp = mean_gbps(series.get("native_mptcp"), skip, 2 * P)
    nk_tcp = mean_gbps(series.get("netkernel"), skip, P)
    nk_mptcp = mean_gbps(series.get("netkernel"), P + skip, 2 * P)
    cold_tcp = mean_gbps(series.get("netkernel_cold"), min(1.0, C / 5), C)
    cold_mptcp = mean_gbps(series.get("netkernel_cold"), C + min(1.0, C / 5), 2 * C)

    def gap_ms(r, key="switch_gap_us"):
        g = r.get(key)
        return round(g / 1000, 3) if isinstance(g, (int, float)) else None

    # ---- problems ----
    for c, label in (("native_tcp", "native TCP"), ("native_mptcp", "native MPTCP")):
        r = run(c)
        if r.get("error"):
            problems.append(f"{label}: {r['error']}")
        elif not r.get("data_intact") or not r.get("apps_ok"):
            problems.append(f"{label}: the stream was not verified end to end (see logs/{c}-*.log)")
    if nm.get("subflows_mid") is not None and nm["subflows_mid"] < 2:
        problems.append(f"native MPTCP used {nm['subflows_mid']} subflow(s), not 2")
    for c, label in (("netkernel", "NetKernel (warm)"), ("netkernel_cold", "NetKernel (cold)")):
        r = run(c)
        if not r:
            problems.append(f"{label}: did not run")
            continue
        if r.get("error"):
            problems.append(f"{label}: {r['error']}")
        if "switch_rc" not in r:
            problems.append(f"{label}: the switch was never issued")
        elif r.get("switch_rc") != 0:
            problems.append(f"{label}: nkctl switch vs mptcp failed (exit {r.get('switch_rc')}): "
                            f"{r.get('switch_output', '')}")
        if not r.get("data_intact"):
            problems.append(f"{label}: bytes/checksums differ or the stream is corrupt "
                            f"(sent {r.get('bytes_sent')}, received {r.get('bytes_received')}, "
                            f"stream {r.get('stream')})")
        if not r.get("apps_ok"):
            problems.append(f"{label}: an application failed (sender exit {r.get('send_rc')}, peer answer "
                            f"'{r.get('peer')}', receiver exit {r.get('recv_rc')})")
        if r.get("app_restarts"):
            problems.append(f"{label}: {r['app_restarts']} application(s) did not run as one process throughout")
        if r.get("switch_gap_us") is None and r.get("switch_rc") == 0:
            problems.append(f"{label}: no switch gap: {r.get('gap_note', 'unknown')}")
    if nk and nk.get("warm_ready") is False:
        problems.append("the mptcp NSM was not up before the warm switch")
    if nk and nk.get("switch_kind") == "cold":
        problems.append("the CoreEngine called the 'warm' switch cold")
    if nkc and nkc.get("switch_kind") == "warm":
        problems.append("the CoreEngine called the 'cold' switch warm")
    if nk and nk.get("nk_peers") is False:
        notes.append("nk-coreengine was started without --nk-peers (it does not know the option): "
                     "the existing connection drains on the old NSM instead of moving")
    for c in ("netkernel", "netkernel_cold"):
        if run(c).get("gap_note"):
            notes.append(f"{c}: {run(c)['gap_note']}")

    bs, br = nk.get("bytes_sent"), nk.get("bytes_received")
    summary = {
        "experiment": "fig-switch",
        "claim": CLAIM,
        "guests": a.guests,
        "vm_accel": a.accel or None,
        "vm_boot_s": {c: run(c).get("vm_boot_s") for c in ("netkernel", "netkernel_cold")} if a.guests == "vm" else None,
        "link_rate": a.rate,
        "cc": a.cc,
        "phase_s": P,
        "duration_s": 2 * P,
        "cold_phase_s": C,
        "interval_ms": a.interval_ms,
        "time_zero": "the receiver's first byte; the switch is issued at t = phase_s on that clock",
        "windows_s": {"native": [skip, 2 * P], "nk_tcp_phase": [skip, P], "nk_mptcp_phase": [P + skip, 2 * P]},
        "paper_tcp_gbps": PAPER_TCP,
        "paper_mptcp_gbps": PAPER_MPTCP,
        "native_tcp_gbps": native_tcp,
        "native_mptcp_gbps": native_mptcp,
        "nk_tcp_phase_gbps": nk_tcp,
        "nk_mptcp_phase_gbps": nk_mptcp,
        "nk_cold_tcp_phase_gbps": cold_tcp,
        "nk_cold_mptcp_phase_gbps": cold_mptcp,
        "nk_over_native_tcp": round(nk_tcp / native_tcp, 3) if nk_tcp and native_tcp else None,
        "nk_over_native_mptcp": round(nk_mptcp / native_mptcp, 3) if nk_mptcp and native_mptcp else None,
        "switch_gap_warm_ms": gap_ms(nk),
        "switch_gap_cold_ms": gap_ms(nkc),
        "switch_gap_source": "switch_gap_us of `nkctl --json list vms` (sender CoreEngine, vm vs): "
                             "switch command to the new NSM's first write of the VM's bytes",
        "switch_chunk_warm_ms": gap_ms(nk, "switch_chunk_us"),
        "switch_chunk_cold_ms": gap_ms(nkc, "switch_chunk_us"),
        "switch_chunk_source": "switch_chunk_us: switch command to the first whole chunk the new NSM "
                               "finished writing (its SEND_DONE)",
        "app_stall_warm_ms": nk.get("recv_max_stall_ms"),
        "app_stall_cold_ms": nkc.get("recv_max_stall_ms"),
        "app_stall_source": "longest time between two data arrivals at the receiving nk_stream (recv returns)",
        "native_app_stall_ms": {"tcp": nt.get("recv_max_stall_ms"), "mptcp": nm.get("recv_max_stall_ms")},
        "switch_cmd_warm_ms": nk.get("switch_cmd_ms"),
        "switch_cmd_cold_ms": nkc.get("switch_cmd_ms"),
        "switch_at_s": nk.get("switch_at_s"),
        "switch_ok_warm": nk.get("switch_rc") == 0 if "switch_rc" in nk else False,
        "switch_ok_cold": nkc.get("switch_rc") == 0 if "switch_rc" in nkc else False,
        "bytes_sent": bs,
        "bytes_received": br,
        "bytes_lost": bs - br if isinstance(bs, int) and isinstance(br, int) else None,
        "app_restarts": nk.get("app_restarts") if nk else None,
        "native_mptcp_subflows": nm.get("subflows_mid"),
        "nk_mptcp_subflows_after_switch": nk.get("subflows_after"),
        "runs": runs,
        "notes": notes,
        "problems": problems,
        "ok": not problems,
        "elapsed_s": a.elapsed,
    }
    with open(os.path.join(a.out, "data.csv"), "w") as f:
        f.write("case,t_s,mbps\n")
        for c in CASES:
            for t, _, mbps in series.get(c, []):
                f.write(f"{c},{t:.3f},{mbps:.2f}\n")

    # ---- gnuplot ----
    term = png_terminal()
    plotted = []
    for c, title, style in (("native_tcp", f"native TCP ({a.cc})", "lc rgb '#1f77b4' dt 2"),
                            ("native_mptcp", "native MPTCP", "lc rgb '#2ca02c' dt 4"),
                            ("netkernel", "NetKernel: TCP NSM, then MPTCP NSM", "lc rgb '#d62728' lw 2")):
        rows = [r for r in series.get(c, []) if r[0] <= 2 * P + 1e-6]
        if not rows:
            continue
        dat = os.path.join(a.dir, f"plot-{c}.dat")
        with open(dat, "w") as f:
            for t, _, mbps in rows:
                f.write(f"{t:.3f} {mbps / 1000:.4f}\n")
        plotted.append(f"'{dat}' using 1:2 with lines {style} title '{title}'")
    sw_at = nk.get("switch_at_s") or P
    sw_label = "nkctl switch vs mptcp" if nk.get("switch_rc") == 0 else "switch FAILED"
    font = "font ',11'" if term == "pngcairo" else ""
    gp = [
        f"set terminal {term} size 1000,600 {font}",
        f"set output '{os.path.join(a.out, 'fig-switch.png')}'",
        "set title \"Live switching of a running stream: TCP (cubic) NSM -> MPTCP NSM\\n"
        "(NetKernel HotNets'17 Fig. 2; paper: TCP 0.94, MPTCP 1.7 Gbit/s)"
        + (f"\\nNetKernel guests: QEMU VMs ({a.accel or '?'})" if a.guests == "vm" else "") + "\"",
        "set xlabel 'time (s)'",
        "set ylabel 'throughput (Gbit/s)'",
        f"set xrange [0:{2 * P:g}]",
        "set yrange [0:2.2]",
        "set grid",
        "set key bottom right box opaque",
        f"set arrow 1 from {sw_at:g}, graph 0 to {sw_at:g}, graph 1 nohead lc rgb '#555555' dt 3",
        f"set label 1 '{sw_label} (t={sw_at:.2f} s)' at {sw_at:g}, graph 0.96 offset 0.5,0",
    ]
    if plotted:
        gp.append("plot " + ", \\\n     ".join(plotted))
        with open(os.path.join(a.dir, "plot.gp"), "w") as f:
            f.write("\n".join(gp) + "\n")
    else:
        problems.append("nothing to plot")

    summary["ok"] = not problems
    with open(os.path.join(a.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")

    # ---- table ----
    w0 = f"{skip:g}-{P:g} s"
    w1 = f"{P + skip:g}-{2 * P:g} s"

    def ratio(x, y):
        return f"{x / y:.2f}" if x and y else "-"

    if a.guests == "vm":
        print(f"   NetKernel guests are QEMU VMs ({a.accel or '?'}); VM boot s: {summary['vm_boot_s']}")
    print(f"   {'':36} {'measured':>9} {'paper':>7} {'native':>8} {'nk/native':>10}")
    print(f"   {'TCP phase, NetKernel (' + w0 + ')':36} {fmt(nk_tcp):>9} {PAPER_TCP:>7.2f} "
          f"{fmt(native_tcp):>8} {ratio(nk_tcp, native_tcp):>10}   Gbit/s")
    print(f"   {'MPTCP phase, NetKernel (' + w1 + ')':36} {fmt(nk_mptcp):>9} {PAPER_MPTCP:>7.2f} "
          f"{fmt(native_mptcp):>8} {ratio(nk_mptcp, native_mptcp):>10}   Gbit/s")
    print(f"   {'native TCP / MPTCP (' + f'{skip:g}-{2 * P:g} s' + ')':36} {fmt(native_tcp):>9} / {fmt(native_mptcp)}"
          f"   (MPTCP subflows: {nm.get('subflows_mid', '-')})")
    print(f"   {'switch gap warm / cold':36} {fmt(gap_ms(nk), 1, ' ms'):>9} / {fmt(gap_ms(nkc), 1, ' ms')}"
          f"   (nkctl switch took {fmt(nk.get('switch_cmd_ms'), 1)} / {fmt(nkc.get('switch_cmd_ms'), 1)} ms)")
    def stall(r):
        if r.get("recv_max_stall_ms") is None:
            return "-"
        return f"{r['recv_max_stall_ms']:.0f} ms at t={r.get('recv_max_stall_at_s', 0):.2f} s"
    lbl = "receiver's longest pause warm/cold"
    print(f"   {lbl:36} {stall(nk)} / {stall(nkc)}"
          f"   (native: {fmt(nt.get('recv_max_stall_ms'), 0)} / {fmt(nm.get('recv_max_stall_ms'), 0)} ms)")
    lost = summary["bytes_lost"]
    print(f"   {'bytes sent / received / lost':36} {bs if bs is not None else '-'} / "
          f"{br if br is not None else '-'} / {lost if lost is not None else '-'}"
          f"   (checksums {'equal' if nk.get('data_intact') else 'NOT verified'})")
    print(f"   {'app restarts':36} {summary['app_restarts'] if summary['app_restarts'] is not None else '-'}")
    for n in notes:
        print(f"   note: {n}")
    for p in problems:
        print(f"   PROBLEM: {p}")
    print(f"   {'result':36} {'OK' if not problems else 'PROBLEMS (%d)' % len(problems)}"
          f"   ({os.path.join(a.out, 'summary.json')})")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
