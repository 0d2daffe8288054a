# SPDX-License-Identifier: MIT
"""figlib - helpers shared by the scenario analysers (fig_*.py)."""

import json
import subprocess


def read_res(path):
    """KEY=VALUE lines of a .res file the scenario scripts write; {} if absent."""
    d = {}
    try:
        with open(path) as f:
            for line in f:
                line = line.rstrip("\n")
                if "=" in line:
                    k, v = line.split("=", 1)
                    d[k] = v
    except OSError:
        pass
    return d


def fmt(x, nd=1):
    """x with nd decimals, or '-' for a value that was not measured."""
    return "-" if x is None else f"{x:.{nd}f}"


def iperf_mbps(path):
    """(received Mbit/s, error) from an iperf3 client's --json output."""
    try:
        with open(path, errors="replace") as f:
            text = f.read()
    except OSError:
        return None, "no output"
    i = text.find("{")
    if i < 0:
        return None, text.strip()[-200:] or "empty output"
    try:
        j = json.loads(text[i:])
    except ValueError:
        return None, "unparsable JSON"
    if j.get("error"):
        return None, j["error"]
    try:
        return j["end"]["sum_received"]["bits_per_second"] / 1e6, None
    except (KeyError, TypeError):
        return None, "no end.sum_received"


def png_terminal():
    """gnuplot's pngcairo terminal if it has one, else png."""
    try:
        terms = subprocess.run(["gnuplot", "-e", "set terminal"], capture_output=True, text=True, timeout=20)
        return "pngcairo" if "pngcairo" in (terms.stdout + terms.stderr) else "png"
    except (OSError, subprocess.SubprocessError):
        return "png"
