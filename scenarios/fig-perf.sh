#!/usr/bin/env bash
# scenarios/fig-perf.sh - the application benchmarks of issue 6 as an
# experiment: `./reproduce.sh fig-perf [--quick] [--only LIST] [--runs N]`.
# A thin wrapper around bench/app.sh (also run by `make bench`); results go
# to results/bench/ (summary.json, app_*.csv, app_*.png), not results/fig-perf.
exec "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/bench/app.sh" "$@"
