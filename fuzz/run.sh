#!/usr/bin/env bash
# Coverage-guided fuzzing of relay with AFL++ through cargo-afl, on stable Rust.
#
#   bash fuzz/run.sh [SECONDS_PER_TARGET] [TARGET ...]
#
# Builds every target of fuzz/src/bin with AFL++'s instrumentation, runs each
# one after the other (one core) for SECONDS_PER_TARGET (default 60) from the
# seeds in fuzz/seeds/<target>/, and prints per target: executions
# (fuzzer_stats `execs_done`), executions per second over the run, corpus
# size, crashes and hangs. Findings are left in fuzz/out/<target>/default/{crashes,hangs}/ (out/
# is not committed); each becomes a regression test in the relay's normal
# `cargo test` once fixed. Exits 1 when any target crashed or hung.
#
# Setup (once per machine; the first build of the targets takes a while, it
# instruments wasmtime too because the relay crate links it):
#   cargo install cargo-afl --version 0.18.2 --locked
#     (its install builds the AFL++ runtime and afl-fuzz from the source
#     bundled in the crate, no download; were it missing, the script runs
#     `cargo afl config --build`)
# Nothing here is part of the relay's build, tests or CI: fuzz/ is a workspace
# of its own (excluded in the root Cargo.toml) with its own target dir.
set -euo pipefail

secs=${1:-60}
shift || true
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"

all=(ingest config template slack teams cef syslog slack_dest splunk_hec)
if [ $# -gt 0 ]; then targets=("$@"); else targets=("${all[@]}"); fi

if ! cargo afl --version >/dev/null 2>&1; then
    cargo install cargo-afl --version 0.18.2 --locked
fi
# Builds the AFL++ runtime unless it is there already (then it refuses: fine).
cargo afl config --build >/dev/null 2>&1 || true

# --target: RUSTFLAGS (instrumentation, opt-level 3, debug assertions and
# overflow checks) then apply to the fuzzed code only, not to build scripts
# and proc macros, which build much faster without them.
# Only plugin targets asked for: build without the relay crate (no wasmtime).
features=()
for t in "${targets[@]}"; do
    case $t in ingest | config | template) features=() && break ;; *) features=(--no-default-features) ;; esac
done
triple=$(rustc -vV | sed -n 's/^host: //p')
RUSTFLAGS="-C codegen-units=16" cargo afl build --release --target "$triple" "${features[@]}"
bin="${CARGO_TARGET_DIR:-$here/target}/$triple/release"

export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1
# The machine is shared: do not insist on a core of our own.
export AFL_NO_AFFINITY=1
# The seeds' paths come from fuzz/seeds, not from a saved state.
export AFL_AUTORESUME=0

mkdir -p out
declare -A dict=([config]=dicts/yaml.dict)
summary=()
total=0
found=0
for t in "${targets[@]}"; do
    rm -rf "out/$t"
    d=${dict[$t]:-dicts/json.dict}
    echo "== $t: ${secs}s (log: fuzz/out/$t.log)"
    # -t: an input that takes over 1 s is a hang. -V: stop after secs.
    cargo afl fuzz -V "$secs" -t 1000 -x "$d" -i "seeds/$t" -o "out/$t" -- "$bin/$t" \
        >"out/$t.log" 2>&1 || { echo "afl-fuzz failed for $t:"; tail -20 "out/$t.log"; exit 2; }
    stats="out/$t/default/fuzzer_stats"
    get() { sed -n "s/^$1 *: *//p" "$stats"; }
    execs=$(get execs_done)
    crashes=$(get saved_crashes)
    hangs=$(get saved_hangs)
    run_time=$(get run_time)
    rate=$((execs / (run_time > 0 ? run_time : 1)))
    corpus=$(get corpus_count)
    total=$((total + execs))
    found=$((found + crashes + hangs))
    summary+=("$(printf '%-11s %12s %10s %7s %8s %6s' "$t" "$execs" "$rate" "$corpus" "$crashes" "$hangs")")
done

echo
printf '%-11s %12s %10s %7s %8s %6s\n' target executions execs/s corpus crashes hangs
printf '%s\n' "${summary[@]}"
echo "total executions: $total"
if [ "$found" -gt 0 ]; then
    echo "findings: see fuzz/out/<target>/default/crashes and hangs"
    exit 1
fi
echo "no crashes, no hangs"
