#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) for SECONDS each, one after the other, and
# prints how many executions each ran and whether it found anything.
#
#   fuzz/run.sh [SECONDS] [TARGET...]
#
# Environment:
#   PHOTO_SECONDS  seconds for the photo targets (default: SECONDS)
#   SANITIZER      address (default) or none
#   FUZZ_ARGS      extra libFuzzer flags for every target
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). Only a stable toolchain is installed here,
# so the nightly-only flags cargo-fuzz passes (-Zsanitizer, ...) are enabled with
# RUSTC_BOOTSTRAP=1. Each target runs single-process (no -jobs/-workers): the machine has
# two cores and other builds share it. The corpus grows in fuzz/corpus/<target> (ignored by
# git), seeded from fuzz/seeds/; crashes land in fuzz/artifacts/<target>; logs in fuzz/logs.
set -uo pipefail

cd "$(dirname "$0")/.."
secs="${1:-60}"
shift || true
photo_secs="${PHOTO_SECONDS:-$secs}"
sanitizer="${SANITIZER:-address}"
all=(up_envelope down_envelope stored_application chunk_check bitmap topic_parse photo_header photo_normalize ingest_apply)
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${all[@]}")

export RUSTC_BOOTSTRAP=1
# One target directory per sanitizer, so that switching does not rebuild everything.
target_dir="$PWD/fuzz/target"
[ "$sanitizer" = address ] || target_dir="$PWD/fuzz/target/sanitizer-$sanitizer"
export CARGO_TARGET_DIR="$target_dir"
build=(--fuzz-dir fuzz --target-dir "$target_dir" -O -a --sanitizer "$sanitizer")

cargo fuzz build "${build[@]}" || { echo "build failed" >&2; exit 2; }

mkdir -p fuzz/logs
declare -a rows
failed=0
for t in "${targets[@]}"; do
    case "$t" in
        photo_*) s="$photo_secs"; seeds=fuzz/seeds/photo; extra=(-max_len=16384 -timeout=60) ;;
        *) s="$secs"; seeds="fuzz/seeds/$t"; extra=(-timeout=10) ;;
    esac
    mkdir -p "fuzz/corpus/$t"
    log="fuzz/logs/$t.log"
    echo "== $t: $s s" >&2
    # shellcheck disable=SC2086
    cargo fuzz run "${build[@]}" "$t" "fuzz/corpus/$t" "$seeds" -- \
        -max_total_time="$s" -print_final_stats=1 "${extra[@]}" ${FUZZ_ARGS:-} >"$log" 2>&1
    rc=$?
    runs=$(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second(s)$/\1/p' "$log" | tail -n1)
    took=$(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second(s)$/\2/p' "$log" | tail -n1)
    if [ -z "$runs" ]; then
        # No "Done" line: libFuzzer stopped on a finding; its final stats still count.
        runs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\)$/\1/p' "$log" | tail -n1)
        took="-"
    fi
    if [ "$rc" -eq 0 ]; then
        outcome=clean
    else
        outcome="FOUND (exit $rc): $(grep -m1 -o 'Test unit written to .*' "$log" || echo "see $log")"
        failed=1
    fi
    rows+=("$(printf '%-20s %12s %8s  %s' "$t" "${runs:-?}" "$took" "$outcome")")
done

printf '\n%-20s %12s %8s  %s\n' target runs seconds outcome
for r in "${rows[@]}"; do echo "$r"; done
exit "$failed"
