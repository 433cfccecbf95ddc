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
# Prints each pair's wall times and their ratio, the runs' CPU times (user + system, every
# thread) and their ratio, with the share of the cores other processes used meanwhile (busy time
# in /proc/stat less the run's own) and the share the hypervisor stole; then the median wall
# time ratio (instrumented / not) with the lowest and highest, the same for CPU time, the median
# times, the files per minute they make, and the load average before and after. The machine should be
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

# The machine's busy and steal time so far, in clock ticks (the first line of /proc/stat).
cpu_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $9 }' /proc/stat; }
ticks_per_second=$(getconf CLK_TCK)
cores=$(nproc)

# Runs one side; prints its wall time in seconds, the share of the machine's cores that other
# processes kept busy meanwhile and the share the hypervisor stole, in percent, and its own CPU
# time (user and system, all its threads) in seconds.
run() {
    local side=$1 dir="$work/data"
    rm -rf "$dir"
    local args=(--data-dir "$dir" "${extra[@]}")
    if [[ $side == on ]]; then
        args+=(--prometheus 127.0.0.1:0)
    else
        args+=(--no-instrument)
    fi
    local before after times
    read -r -a before < <(cpu_ticks)
    times=$( { TIMEFORMAT='%3R %3U %3S'; time "$bin" "${args[@]}" >"$work/out-$side.txt" 2>"$work/err-$side.txt"; } 2>&1 )
    read -r -a after < <(cpu_ticks)
    awk -v t="$times" -v busy=$((after[0] - before[0])) -v steal=$((after[1] - before[1])) \
        -v hz="$ticks_per_second" -v cores="$cores" 'BEGIN {
            split(t, f, " ")
            other = busy / hz - f[2] - f[3]
            if (other < 0) other = 0
            printf "%s %.1f %.1f %.3f\n", f[1], 100 * other / (f[1] * cores), 100 * steal / hz / (f[1] * cores), f[2] + f[3]
        }'
}

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
run on >/dev/null
run off >/dev/null
head -n 1 "$work/out-on.txt"

on_times=()
off_times=()
ratios=()
cpu_ratios=()
for ((i = 1; i <= pairs; i++)); do
    if ((i % 2)); then
        read -r on on_other on_steal on_cpu < <(run on)
        read -r off off_other off_steal off_cpu < <(run off)
    else
        read -r off off_other off_steal off_cpu < <(run off)
        read -r on on_other on_steal on_cpu < <(run on)
    fi
    ratio=$(awk -v a="$on" -v b="$off" 'BEGIN { printf "%.4f\n", a / b }')
    cpu_ratio=$(awk -v a="$on_cpu" -v b="$off_cpu" 'BEGIN { printf "%.4f\n", a / b }')
    printf 'pair %2d: instrumented %ss, --no-instrument %ss, ratio %s; CPU %ss / %ss, ratio %s (other processes %s%% / %s%% of the cores, stolen %s%% / %s%%)\n' \
        "$i" "$on" "$off" "$ratio" "$on_cpu" "$off_cpu" "$cpu_ratio" "$on_other" "$off_other" "$on_steal" "$off_steal"
    cpu_ratios+=("$cpu_ratio")
    on_times+=("$on")
    off_times+=("$off")
    ratios+=("$ratio")
done

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
lowest() { printf '%s\n' "$@" | sort -g | head -n 1; }
highest() { printf '%s\n' "$@" | sort -g | tail -n 1; }

echo "median ratio $(median "${ratios[@]}") (lowest $(lowest "${ratios[@]}"), highest $(highest "${ratios[@]}")) over $pairs pairs"
echo "median CPU time ratio $(median "${cpu_ratios[@]}") (lowest $(lowest "${cpu_ratios[@]}"), highest $(highest "${cpu_ratios[@]}"))"
files=$(sed -n 's/^ast_pipeline: \([0-9,]*\) files .*/\1/p' "$work/out-on.txt" | tr -d ,)
on_median=$(median "${on_times[@]}")
off_median=$(median "${off_times[@]}")
echo "median wall time: instrumented ${on_median}s, --no-instrument ${off_median}s"
awk -v n="$files" -v on="$on_median" -v off="$off_median" 'BEGIN {
    printf "files per minute of process wall time (%d files): instrumented %.0f, --no-instrument %.0f\n", n, n * 60 / on, n * 60 / off
}'

echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
