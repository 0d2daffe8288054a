#!/usr/bin/env bash
# bench/run.sh - the dataplane microbenchmarks (`make bench`).
#
#   bench/run.sh            full run (~1-2 minutes)
#   NK_BENCH_QUICK=1 bench/run.sh   smoke run (a few seconds, numbers noisy)
#
# Runs bench_chunk (chunk copy path vs memcpy, modes hot and stream),
# bench_ring (NQEs/s through one nk_ring between two pinned processes, batch
# 1, 8, 32, alternating with a kernel-pipe baseline and a what-if ring) and
# bench_ce (NQEs/s switched by the real nk-coreengine), then writes
#   results/bench/summary.json   [{name, unit, nk, native, ratio, runs, ...}]
#   results/bench/*.csv          every run
#   results/bench/*.png          gnuplot figures
# and prints a table. It reports; it never fails on speed. Exit status is
# non-zero only when a benchmark could not run or its checksum failed.
#
# Environment: BUILD (default build), NK_BENCH_OUT (default results/bench),
# NK_BENCH_RUNS (default 5).
set -u

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
OUT=${NK_BENCH_OUT:-$ROOT/results/bench}
RUNS=${NK_BENCH_RUNS:-5}
QUICK=${NK_BENCH_QUICK:-0}

for b in bench_ring bench_chunk bench_ce; do
	if [ ! -x "$BUILD/bench/$b" ]; then
		echo "bench/run.sh: $BUILD/bench/$b missing: run make first" >&2
		exit 1
	fi
done
command -v jq >/dev/null || { echo "bench/run.sh: jq is required" >&2; exit 1; }

mkdir -p "$OUT"
rm -f "$OUT"/*.csv "$OUT"/*.jsonl "$OUT"/*.png "$OUT"/*.dat "$OUT"/*.log "$OUT"/summary.json
JL=$OUT/results.jsonl
fail=0

echo "== machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-), $(uname -r)"
# CPU steal over one second: a VM whose host is busy makes every number noisy.
read -r _ u1 n1 s1 i1 w1 q1 sq1 st1 _ < /proc/stat
sleep 1
read -r _ u2 n2 s2 i2 w2 q2 sq2 st2 _ < /proc/stat
tot=$(( (u2+n2+s2+i2+w2+q2+sq2+st2) - (u1+n1+s1+i1+w1+q1+sq1+st1) ))
steal_pct=$(( tot > 0 ? 100 * (st2 - st1) / tot : 0 ))
echo "== CPU steal before the run: ${steal_pct}% (above a few % the numbers are noisy)"

# ---- chunk copy ----
if [ "$QUICK" = 1 ]; then csamp=2001; else csamp=20001; fi
for mode in hot stream; do
	echo "== bench_chunk ($mode)"
	"$BUILD/bench/bench_chunk" -m "$mode" -r "$RUNS" -s "$csamp" \
		-c "$OUT/chunk_$mode.csv" -j "$JL" || fail=1
done

# ---- ring: one call per batch size, so each gets an NQE count that keeps
# the run under a few seconds (batch 1 is ~10x slower than batch 32) ----
echo "== bench_ring"
for spec in "1 4000000 500000" "8 10000000 1000000" "32 20000000 2000000"; do
	set -- $spec
	b=$1 n=$2 p=$3
	if [ "$QUICK" = 1 ]; then n=$((n / 10)) p=$((p / 10)); fi
	# -C: also the what-if ring with cached peer indices (reported apart)
	"$BUILD/bench/bench_ring" -C -b "$b" -n "$n" -p "$p" -r "$RUNS" \
		-c "$OUT/ring.csv" -j "$JL" || fail=1
done

# ---- CoreEngine switching rate (real nk-coreengine, fake guest + NSM) ----
echo "== bench_ce"
if [ "$QUICK" = 1 ]; then csec=0.3; else csec=1; fi
"$BUILD/bench/bench_ce" -C "$BUILD/bin/nk-coreengine" -r "$RUNS" -t "$csec" -w 32,1 \
	-j "$JL" -l "$OUT/ce.log" || fail=1

jq -s --argjson steal "$steal_pct" 'map(. + {steal_pct_before: $steal})' "$JL" > "$OUT/summary.json" || fail=1
rm -f "$JL"
jq -r '["name","unit","nk","native","ratio","runs"], (.[] | [.name, .unit, .nk, .native, .ratio, .runs]) | @csv' \
	"$OUT/summary.json" > "$OUT/summary.csv"

# ---- table ----
echo
echo "== summary ($OUT/summary.json)"
jq -r '["name","unit","nk","native","ratio","better","goal","meets"],
       (.[] | [.name, .unit, (.nk|tostring), (.native|tostring), (.ratio|tostring),
               .better, .goal, (.meets_goal|tostring)]) | @tsv' "$OUT/summary.json" |
	column -t -s $'\t'
echo "reference (HotNets'17 prototype, chunk copy): 8 ns at 64 B, 809 ns at 8 KiB"
echo "ring 'native' = the same NQEs through a kernel pipe (syscall path); ratio = speed-up."
echo "chunk 'native' = one memcpy of the same size; ratio = cost (NetKernel path / memcpy)."
echo "ring_whatif_cached = NOT shipped code: the ring with cached peer indices; native = shipped ring."
echo "ce_* = the real CoreEngine; no native counterpart (null)."

# ---- plots ----
if command -v gnuplot >/dev/null; then
	term=png
	gnuplot -e 'set terminal pngcairo' 2>/dev/null && term=pngcairo
	jq -r '.[] | select(.name|startswith("ring_b")) |
	       [.batch, .nk, .nk_min, .nk_max, .native, .native_min, .native_max] | @tsv' \
		"$OUT/summary.json" > "$OUT/ring.dat"
	jq -r '.[] | select(.name|startswith("ring_whatif_cached_b")) |
	       [.batch, .nk, .nk_min, .nk_max] | @tsv' "$OUT/summary.json" > "$OUT/ring_wi.dat"
	for mode in hot stream; do
		jq -r --arg m "$mode" '.[] | select(.mode == $m) |
		       [.size, .native, .nk, .nk_in, .ratio, .ratio_in] | @tsv' \
			"$OUT/summary.json" > "$OUT/chunk_$mode.dat"
	done
	gnuplot <<EOF || echo "bench/run.sh: gnuplot failed (results are still in summary.json)"
set terminal $term size 800,500 noenhanced
set grid
set output "$OUT/ring.png"
set title "NQE throughput through one nk_ring, two pinned processes (median, min-max)"
set xlabel "batch size (NQEs per enqueue/dequeue burst)"
set ylabel "M NQEs/s"
set logscale x 2
set xrange [0.7:45]
set key top left
plot "$OUT/ring.dat" u 1:2:3:4 w yerrorlines lw 2 t "nk_ring (shared memory)", \
     "$OUT/ring.dat" u 1:5:6:7 w yerrorlines lw 2 t "kernel pipe (baseline)", \
     "$OUT/ring_wi.dat" u 1:2:3:4 w yerrorlines lw 1 dt 3 t "what-if: cached peer indices (not shipped)", \
     50 w l dt 2 lc rgb "red" t "goal 50 M/s"
unset logscale
set output "$OUT/chunk.png"
set title "Copy path of one send: NetKernel vs memcpy (median ns, hot chunk)"
set xlabel "bytes"
set ylabel "ns per operation"
set logscale xy 2
set xrange [48:11000]
set key top left
plot "$OUT/chunk_hot.dat" u 1:2 w lp lw 2 t "memcpy (native send copy)", \
     "$OUT/chunk_hot.dat" u 1:3 w lp lw 2 t "NetKernel: app->chunk->socket buffer", \
     "$OUT/chunk_hot.dat" u 1:4 w lp lw 2 t "app->chunk only (the added copy)", \
     "-" u 1:2 w p pt 7 ps 1.5 t "HotNets'17 prototype"
64 8
8192 809
e
unset logscale y
set output "$OUT/chunk_ratio.png"
set title "NetKernel copy path / memcpy (lower is better)"
set ylabel "ratio"
set yrange [0:*]
plot "$OUT/chunk_hot.dat" u 1:5 w lp lw 2 t "full path, hot", \
     "$OUT/chunk_stream.dat" u 1:5 w lp lw 2 t "full path, stream (32 in flight)", \
     "$OUT/chunk_hot.dat" u 1:6 w lp lw 2 t "added copy only, hot", \
     "$OUT/chunk_stream.dat" u 1:6 w lp lw 2 t "added copy only, stream", \
     1.5 w l dt 2 lc rgb "red" t "goal 1.5"
EOF
	rm -f "$OUT"/*.dat
else
	echo "bench/run.sh: gnuplot not installed: no PNGs"
fi
ls "$OUT"
exit $fail
