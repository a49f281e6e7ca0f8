#!/usr/bin/env bash
# Runs every fuzz target (or those named) for SECONDS each, one after the other,
# with its seeds (fuzz/seeds/, in git) and its corpus kept between runs
# (fuzz/corpus/, not in git), its dictionary (fuzz/dicts/) and the same limits
# as CI. Prints executions, coverage and crashes per target at the end and keeps
# each run's log in fuzz/logs/. Crashes land in fuzz/artifacts/<target>/.
#
#   fuzz/run-all.sh 600                      # ten minutes each
#   fuzz/run-all.sh 60 dsn_report web_requests
#   FUZZ_DEBUG=1 fuzz/run-all.sh 300         # with debug assertions and
#                                            # overflow checks (separate build)
#
# Exits 1 when a target crashed (the others still run).
set -uo pipefail
cd "$(dirname "$0")"

seconds="${1:?usage: run-all.sh SECONDS [TARGET...]}"
shift
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^casella-fuzz$')
fi

build=(--sanitizer none -O)
if [ "${FUZZ_DEBUG:-0}" = 1 ]; then
    # Debug assertions and overflow checks, built apart so the two builds do
    # not undo each other.
    build+=(--debug-assertions --target-dir target/debug-assertions)
fi
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --version 0.13.2
cargo fuzz build "${build[@]}" || exit 2

mkdir -p logs
summary="logs/summary-$(date +%Y%m%d-%H%M%S).txt"
printf '%-18s %8s %12s %8s %8s  %s\n' target seconds execs cov ft crashes | tee "$summary"
failed=0
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target" "artifacts/$target"
    dict=()
    [ -f "dicts/$target.dict" ] && dict=(-dict="dicts/$target.dict")
    log="logs/$target.log"
    start=$(date +%s)
    cargo fuzz run "${build[@]}" "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 -timeout=30 \
        -print_final_stats=1 -artifact_prefix="artifacts/$target/" "${dict[@]}" \
        >"$log" 2>&1
    status=$?
    took=$(( $(date +%s) - start ))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    last=$(grep -E '^#[0-9]+' "$log" | tail -1)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    crashes=0
    if [ $status -ne 0 ]; then
        crashes=$(grep -c 'Test unit written' "$log")
        [ "$crashes" -eq 0 ] && crashes="exit $status"
        failed=1
    fi
    printf '%-18s %8s %12s %8s %8s  %s\n' "$target" "$took" "${execs:-?}" "${cov:-?}" "${ft:-?}" "$crashes" \
        | tee -a "$summary"
    if [ $status -ne 0 ]; then
        grep -E 'panicked|ERROR|Test unit written|SUMMARY' "$log" | head -5 | sed 's/^/    /'
    fi
done
echo "summary: fuzz/$summary"
exit $failed
