# SPDX-License-Identifier: MIT
"""figlib - helpers shared by the scenario analysers (fig_*.py)."""


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
