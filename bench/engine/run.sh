#!/usr/bin/env bash
# In-memory engine benchmark on the reference workload
# (../shared/bench/workload.json): executions/s and steps/s back to back
# with echo agents, and with 1,000 and 100,000 executions in flight on
# 10 ms delay agents; peak RSS from /usr/bin/time -v and from inside.
#
#   bash bench/engine/run.sh            # all modes
#   N_SEQ=50000 N_1K=50000 N_100K=200000 bash bench/engine/run.sh
#
# Results go to bench/results/engine-<timestamp>.jsonl. Compare with
# ../shared/bench/peers/RESULTS.md measured in the same sitting
# (bash ../shared/bench/peers/run.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
workload=${WORKLOAD:-../shared/bench/workload.json}
[ -f "$workload" ] || workload=bench/engine/workload.json
bash scripts/build.sh >/dev/null 2>&1
mkdir -p bench/results
out=bench/results/engine-$(date +%Y%m%d-%H%M%S).jsonl

run() {
  local label=$1; shift
  local tv
  tv=$(mktemp)
  /usr/bin/time -v -o "$tv" ./build/chorus lua bench/engine/bench.lua "$workload" "$@" >"$tv.out"
  local rss_kb
  rss_kb=$(awk -F: '/Maximum resident/ {gsub(/ /,"",$2); print $2}' "$tv")
  local line
  line=$(cat "$tv.out")
  line=${line%\}}
  echo "${line},\"label\":\"$label\",\"max_rss_mb_time\":$((rss_kb / 1024))}" | tee -a "$out"
  rm -f "$tv" "$tv.out"
}

run seq_echo seq "${N_SEQ:-100000}"
run inflight_1k_delay10 conc "${N_1K:-100000}" 1000
run inflight_100k_delay10 conc "${N_100K:-300000}" 100000
echo "results: $out" >&2
