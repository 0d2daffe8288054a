#!/usr/bin/env python3
"""Render results/compat/summary.json (tests/compat/run.sh) as a markdown table.

  tests/compat/table.py [SUMMARY_JSON]    (default results/compat/summary.json)
"""
import json
import os
import sys

root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "results", "compat", "summary.json")
rows = json.load(open(path))


def cell(s):
    # a '|' inside a cell would end it
    return str(s).replace("|", "\\|").replace("\n", " ")


print("| program | case | result | measured / reason |")
print("|---|---|---|---|")
for r in rows:
    print("| %s | %s | %s | %s |" % (cell(r["program"]), cell(r["case"]),
                                   "pass" if r["passed"] else "**FAIL**",
                                   cell(r.get("reason", r.get("detail", "")))))
npass = sum(1 for r in rows if r["passed"])
print("\n%d of %d rows pass." % (npass, len(rows)))
