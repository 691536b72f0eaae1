#!/usr/bin/env bash
# Run every fuzz target for SECONDS (default 600) each, two at a time, on the
# nightly toolchain; the corpus grows in corpus/<target>, crashes land in
# artifacts/<target>. Needs `cargo install cargo-fuzz`.
set -uo pipefail
cd "$(dirname "$0")"
secs=${1:-600}
run() {
  local t=$1 len=$2
  cargo +nightly fuzz run "$t" -- -max_total_time="$secs" -max_len="$len" -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 >"fuzz-$t.log" 2>&1
  echo "$t: exit $? ($(grep -E '^stat::number_of_executed_units' "fuzz-$t.log" | awk '{print $2}') runs)"
}
run dockerfile 4096 & run reference 512 & wait
run dockerignore 2048 & run extract 65536 & wait
