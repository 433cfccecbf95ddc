#!/usr/bin/env bash
# Runs the main job on a small corpus with injected failures, then every `instrumentctl` command
# its report prints, against the database the run wrote; fails if the job or a command fails or
# prints nothing. `.ci/run` runs it after the example step.
#
#   scripts/report-commands.sh [ARGS...]     # extra arguments for the job
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo build --quiet -p instrument-sinks --features cli --bin instrumentctl
cargo build --quiet --example ast_pipeline
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

target/debug/examples/ast_pipeline --limit 500 --fail-rate 0.1 --prometheus off \
    --data-dir "$work/data" "$@" >"$work/report.txt"
mapfile -t commands < <(sed -n 's/^  \(instrumentctl .*\)$/\1/p' "$work/report.txt")
if ((${#commands[@]} == 0)); then
    echo "report-commands: the report printed no instrumentctl command:" >&2
    cat "$work/report.txt" >&2
    exit 1
fi
export PATH="$PWD/target/debug:$PATH"
for command in "${commands[@]}"; do
    echo "\$ $command"
    # The report quotes what needs quoting for a POSIX shell.
    if ! eval "$command" >"$work/out.txt" 2>&1; then
        cat "$work/out.txt" >&2
        echo "report-commands: failed: $command" >&2
        exit 1
    fi
    if [[ ! -s $work/out.txt ]]; then
        echo "report-commands: printed nothing: $command" >&2
        exit 1
    fi
    head -n 4 "$work/out.txt"
done
echo "report-commands: ${#commands[@]} commands ran"
