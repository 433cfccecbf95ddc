#!/usr/bin/env bash
# Runs every command of the README's and the runbooks' ```sh blocks against the data of the main
# job, and fails naming FILE:LINE of each command that exits non-zero or prints nothing. Also
# writes each block that follows a `<!-- check: CMD -->` line (README, docs/guide.md,
# docs/runbooks/) to a file and runs `CMD FILE` on it (a Prometheus configuration through
# `promtool check config`, say). `.ci/run` runs it after scripts/report-commands.sh.
#
#   scripts/doc-commands.sh [DOC.md...]     # default: README.md docs/runbooks/*.md
#
# The conventions the documents follow are stated in docs/runbooks/README.md:
# - every line of a ```sh block is a command (a line ending in `\` goes on on the next line;
#   lines starting with `#` are comments);
# - the commands use $DATA (the data directory), $DB (DATA/instrument.db), $ENDPOINT (the
#   operations endpoint), $PROM (a Prometheus server scraping it) and $BACKUPS (where backups
#   go), which this script sets; README commands use the defaults (./instrument-data), so they
#   run in a directory where ./instrument-data is $DATA;
# - `# ci: skip (WHY)` at the end of a line: not run here, for the reason given;
# - `# may print nothing` at the end of a line: empty output is a valid answer; any other
#   command must print something. `NAME=$(...)` lines must set NAME to something other than
#   empty or `null`;
# - the commands of one file run in order in one shell (a variable a line sets is there for the
#   following lines), each file in a shell of its own, all against the same data.
#
# The data: the main job runs twice, with `--fail-rate 0.1`:
# 1. on 500 files (`--limit 500`, as CI's other steps), in the foreground, into $DATA: the
#    store and logs the commands read. It ends while its `StageErrors` alert is firing, so the store holds a firing alert to acknowledge, as when an
#    operator is paged. (An alert of a lingering job resolves about 10 s after its last parse
#    call, too soon for the commands to find it firing.)
# 2. in the background, on 2,000 files (a run of several seconds, so that rates over the
#    one-second scrapes show it), into a data directory of its own, with `--linger`: the live
#    operations endpoint ($ENDPOINT: /metrics, /health, /ready), scraped every second by a real Prometheus
#    ($PROM, Debian's `prometheus`) that was started before it, so the scrapes cover the run.
# Both are stopped when the script exits.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD

for tool in prometheus promtool curl jq sqlite3; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "doc-commands: \`$tool\` is not installed (Debian: apt-get install prometheus curl jq sqlite3)" >&2
        exit 1
    fi
done

if (($# > 0)); then
    docs=("$@")
else
    docs=(README.md docs/runbooks/*.md)
fi
check_docs=("${docs[@]}")
[[ " ${docs[*]} " == *" docs/guide.md "* ]] || check_docs+=(docs/guide.md)

cargo build --quiet -p instrument-sinks --features cli --bin instrumentctl
cargo build --quiet --example ast_pipeline
export PATH="$repo/target/debug:$PATH"
job="$repo/target/debug/examples/ast_pipeline"

work=$(mktemp -d)
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

# A loopback port nothing listens on.
free_port() {
    local port
    for _ in $(seq 200); do
        # Below the kernel's ephemeral range (32768 and up on Linux), so that no outgoing
        # connection (Prometheus scraping this port before the job listens, say) takes it.
        port=$((20000 + RANDOM % 12000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
    echo "doc-commands: no free port found" >&2
    exit 1
}

export DATA="$work/data"
export DB="$DATA/instrument.db"
export BACKUPS="$work/backups"
export USER="${USER:-ci}"
mkdir -p "$BACKUPS"

# 1. The store: a run that ends while StageErrors fires.
echo "==> the main job (store): ast_pipeline --limit 500 --fail-rate 0.1 --data-dir $DATA"
"$job" --limit 500 --fail-rate 0.1 --prometheus off --data-dir "$DATA" >"$work/report.txt"
if ! instrumentctl --data-dir "$DATA" --json alerts |
    jq -e 'any(.[]; .rule == "StageErrors" and .state == "firing")' >/dev/null; then
    echo "doc-commands: the job's store holds no firing StageErrors alert; the runbooks acknowledge one:" >&2
    instrumentctl --data-dir "$DATA" alerts --all >&2
    exit 1
fi

# 2. Prometheus, then the live job it scrapes.
job_port=$(free_port)
prom_port=$(free_port)
export ENDPOINT="http://127.0.0.1:$job_port"
export PROM="http://127.0.0.1:$prom_port"
cat >"$work/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: ast_pipeline
    static_configs:
      - targets: ['127.0.0.1:$job_port']
EOF
promtool check config "$work/prometheus.yml" >/dev/null
echo "==> prometheus on $PROM, scraping 127.0.0.1:$job_port every second"
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
    --web.listen-address="127.0.0.1:$prom_port" --web.enable-lifecycle \
    >"$work/prometheus.log" 2>&1 &
pids+=($!)
for i in $(seq 60); do
    curl -sf "$PROM/-/ready" >/dev/null 2>&1 && break
    if ((i == 60)); then
        tail -n 20 "$work/prometheus.log" >&2
        echo "doc-commands: Prometheus did not get ready within 30 s" >&2
        exit 1
    fi
    sleep 0.5
done
# Prometheus hands new targets to its scrape loops a few seconds after it starts; wait for its
# first (failed) scrape of the job's port, so that the scrapes cover the whole run.
for i in $(seq 60); do
    [[ -n $(promtool query instant "$PROM" 'up{job="ast_pipeline"}' 2>/dev/null) ]] && break
    if ((i == 60)); then
        tail -n 20 "$work/prometheus.log" >&2
        echo "doc-commands: Prometheus did not scrape its target within 30 s" >&2
        exit 1
    fi
    sleep 0.5
done

# 2,000 files: a run of several seconds, so that rates over the scrapes are not all zero.
echo "==> the main job (live): ast_pipeline --limit 2000 --fail-rate 0.1 --prometheus 127.0.0.1:$job_port --linger 1800"
"$job" --limit 2000 --fail-rate 0.1 --data-dir "$work/live" \
    --prometheus "127.0.0.1:$job_port" --linger 1800 >"$work/live.txt" 2>&1 &
live_pid=$!
pids+=("$live_pid")
for i in $(seq 600); do
    grep -q '^  metrics: ' "$work/live.txt" && break
    if ! kill -0 "$live_pid" 2>/dev/null || ((i == 600)); then
        cat "$work/live.txt" >&2
        echo "doc-commands: the live job ended or did not finish its run within 300 s" >&2
        exit 1
    fi
    sleep 0.5
done
# Scrapes after the run's last window, so every counter has its final value in Prometheus.
sleep 3
for i in $(seq 30); do
    if [[ -n $(promtool query instant "$PROM" \
        'instrument_calls_total{function="ast_pipeline::parse_source",outcome="error"}' 2>/dev/null) ]]; then
        break
    fi
    if ((i == 30)); then
        tail -n 20 "$work/prometheus.log" >&2
        echo "doc-commands: Prometheus has not scraped the job's parse errors from $ENDPOINT" >&2
        exit 1
    fi
    sleep 1
done

# README commands use ./instrument-data; every file's commands run here.
mkdir -p "$work/cwd"
ln -s "$DATA" "$work/cwd/instrument-data"

# Prints LINE<TAB>COMMAND for every command of FILE's ```sh blocks.
extract_commands() {
    awk '
        /^[[:space:]]*```/ {
            if (in_sh) { in_sh = 0; next }
            if ($0 ~ /^[[:space:]]*```sh[[:space:]]*$/) { in_sh = 1; joined = "" }
            next
        }
        in_sh {
            line = $0
            if (joined == "") start = NR
            if (line ~ /\\$/) { joined = joined substr(line, 1, length(line) - 1); next }
            command = joined line
            joined = ""
            if (command ~ /^[[:space:]]*(#|$)/) next
            sub(/^[[:space:]]+/, "", command)
            printf "%d\t%s\n", start, command
        }
    ' "$1"
}

# Writes each block after a `<!-- check: CMD -->` line to a file of its own; prints
# LINE<TAB>CMD<TAB>BLOCK-FILE for each.
extract_checks() {
    awk -v dir="$2" -v base="$3" '
        match($0, /^[[:space:]]*<!-- check: .* -->[[:space:]]*$/) {
            check = $0
            sub(/^[[:space:]]*<!-- check: /, "", check)
            sub(/ -->[[:space:]]*$/, "", check)
            want = 1
            next
        }
        want && /^[[:space:]]*```/ && !in_block {
            in_block = 1; n++; file = dir "/" base "-" n; start = NR + 1
            printf "" > file
            next
        }
        in_block && /^[[:space:]]*```/ {
            close(file)
            printf "%d\t%s\t%s\n", start, check, file
            in_block = 0; want = 0
            next
        }
        in_block { print > file }
    ' "$1"
}

failures=()
ran=0
skipped=()

# Runs FILE's commands in this (sub)shell, in $work/cwd; appends to $work/results.
run_file() {
    local doc=$1 lineno command out rc name value
    cd "$work/cwd"
    set +e
    set -o pipefail
    while IFS=$'\t' read -r lineno command <&3; do
        if [[ $command =~ \#\ ci:\ skip(.*)$ ]]; then
            if [[ -z ${BASH_REMATCH[1]// /} ]]; then
                echo "FAIL	$doc:$lineno	\`# ci: skip\` without a reason" >>"$work/results"
            else
                echo "SKIP	$doc:$lineno	$command" >>"$work/results"
            fi
            continue
        fi
        echo "\$ $command"
        out="$work/out.txt"
        eval "$command" >"$out" 2>&1 </dev/null
        rc=$?
        if ((rc != 0)); then
            sed 's/^/    /' "$out" | tail -n 20
            echo "FAIL	$doc:$lineno	exit status $rc: $command" >>"$work/results"
            continue
        fi
        if [[ $command =~ ^([A-Za-z_][A-Za-z0-9_]*)= ]]; then
            name=${BASH_REMATCH[1]}
            value=${!name-}
            echo "    $name=$value"
            if [[ -z $value || $value == null ]]; then
                echo "FAIL	$doc:$lineno	set $name to '${value}': $command" >>"$work/results"
                continue
            fi
        elif [[ ! -s $out && $command != *'# may print nothing'* ]]; then
            echo "FAIL	$doc:$lineno	printed nothing: $command" >>"$work/results"
            continue
        fi
        sed 's/^/    /' "$out" | head -n 6
        echo "OK	$doc:$lineno	$command" >>"$work/results"
    done 3< <(extract_commands "$repo/$doc")
    return 0
}

: >"$work/results"
for doc in "${docs[@]}"; do
    echo
    echo "==> $doc"
    (run_file "$doc")
done

echo
echo "==> checked blocks"
mkdir -p "$work/blocks"
for doc in "${check_docs[@]}"; do
    while IFS=$'\t' read -r lineno check file; do
        echo "\$ $check ($doc:$lineno)"
        if (cd "$work/cwd" && $check "$file") >"$work/out.txt" 2>&1; then
            sed 's/^/    /' "$work/out.txt" | head -n 4
            echo "OK	$doc:$lineno	$check" >>"$work/results"
        else
            sed 's/^/    /' "$work/out.txt"
            echo "FAIL	$doc:$lineno	$check failed on the block" >>"$work/results"
        fi
    done < <(extract_checks "$repo/$doc" "$work/blocks" "$(basename "$doc" .md)")
done

mapfile -t failures < <(grep '^FAIL' "$work/results" | cut -f2-)
mapfile -t skipped < <(grep '^SKIP' "$work/results" | cut -f2-)
ran=$(grep -c '^\(OK\|FAIL\)' "$work/results" || true)
echo
for s in "${skipped[@]}"; do
    echo "doc-commands: skipped ${s%%	*}: ${s#*	}"
done
if ((${#failures[@]} > 0)); then
    for f in "${failures[@]}"; do
        echo "doc-commands: FAILED ${f%%	*}: ${f#*	}" >&2
    done
    echo "doc-commands: ${#failures[@]} of $ran commands and checks failed" >&2
    exit 1
fi
echo "doc-commands: $ran commands and checks ran in ${#docs[@]} files, ${#skipped[@]} skipped; all passed"
