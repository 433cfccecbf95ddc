#!/usr/bin/env bash
# The main job's instrumentation overhead: alternating runs of examples/ast_pipeline.rs with
# everything on and with --no-instrument, on the same corpus, and the ratio of their wall times.
#
#   scripts/overhead.sh [PAIRS] [-- ARGS...]
#
# PAIRS (default 5) pairs of runs, after one warm-up run of each (not counted) that fills the
# page cache. Within a pair the order alternates (on/off, then off/on, ...), so a trend in the
# machine's load falls on both sides. Each run writes to a fresh data directory under a
# temporary directory, so no run reads or grows another's database. ARGS go to both sides
# (say `--limit 5000` or a corpus path); the instrumented side also gets `--prometheus
# 127.0.0.1:0` (the endpoint on, on a free port). A run's wall time is the whole process, from
# exec to exit: set-up, the pipeline, flush, report and shutdown.
#
# Prints each run's time, then the median ratio (instrumented / not) with the lowest and
# highest ratio, the median times, and the load average before and after. The machine should be
# otherwise idle: with 2 cores any other busy process shows up in the figures.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

pairs=5
if [[ $# -gt 0 && $1 != -- ]]; then
    pairs=$1
    shift
fi
[[ ${1:-} == -- ]] && shift
extra=("$@")

cargo build --release --example ast_pipeline --quiet
bin=target/release/examples/ast_pipeline
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Runs one side; prints its wall time in seconds.
run() {
    local side=$1 dir="$work/data"
    rm -rf "$dir"
    local args=(--data-dir "$dir" "${extra[@]}")
    if [[ $side == on ]]; then
        args+=(--prometheus 127.0.0.1:0)
    else
        args+=(--no-instrument)
    fi
    local start end
    start=$(date +%s%N)
    "$bin" "${args[@]}" >"$work/out-$side.txt"
    end=$(date +%s%N)
    awk -v ns=$((end - start)) 'BEGIN { printf "%.3f\n", ns / 1e9 }'
}

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
run on >/dev/null
run off >/dev/null
head -n 1 "$work/out-on.txt"

on_times=()
off_times=()
ratios=()
for ((i = 1; i <= pairs; i++)); do
    if ((i % 2)); then
        on=$(run on)
        off=$(run off)
    else
        off=$(run off)
        on=$(run on)
    fi
    ratio=$(awk -v a="$on" -v b="$off" 'BEGIN { printf "%.4f\n", a / b }')
    printf 'pair %2d: instrumented %ss, --no-instrument %ss, ratio %s\n' "$i" "$on" "$off" "$ratio"
    on_times+=("$on")
    off_times+=("$off")
    ratios+=("$ratio")
done

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
lowest() { printf '%s\n' "$@" | sort -g | head -n 1; }
highest() { printf '%s\n' "$@" | sort -g | tail -n 1; }

echo "median ratio $(median "${ratios[@]}") (lowest $(lowest "${ratios[@]}"), highest $(highest "${ratios[@]}")) over $pairs pairs"
echo "median wall time: instrumented $(median "${on_times[@]}")s, --no-instrument $(median "${off_times[@]}")s"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
