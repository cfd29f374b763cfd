#!/usr/bin/env bash
# Durable executions/s against PostgreSQL 15 with STOCK durability
# (fsync=on, synchronous_commit=on): back to back, with many in flight,
# and the raw ceiling (the same rows by a pipelined script).
#
#   bash bench/persisted/run.sh
#   N_SEQ=500 N_CONC=20000 INFLIGHT=3000 bash bench/persisted/run.sh
#
# Results: bench/results/persisted-<timestamp>.jsonl. Run
# ../shared/bench/peers/run.sh in the same sitting for the ratios.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
workload=${WORKLOAD:-../shared/bench/workload.json}
bash scripts/build.sh >/dev/null 2>&1
svc=$(mktemp -d /tmp/chorus-bench-pg.XXXXXX)
cleanup() { bash scripts/services.sh stop "$svc"; rm -rf "$svc"; }
trap cleanup EXIT
eval "$(CHORUS_PG_PORT=${BENCH_PG_PORT:-45482} CHORUS_REDIS_PORT=${BENCH_REDIS_PORT:-46489} bash scripts/services.sh start "$svc")"
url=$CHORUS_TEST_PG
./build/chorus migrate --db "$url" >/dev/null
mkdir -p bench/results
out=bench/results/persisted-$(date +%Y%m%d-%H%M%S).jsonl
run() { ./build/chorus lua bench/persisted/bench.lua "$url" "$workload" "$@" | tee -a "$out"; }
run seq "${N_SEQ:-500}"
run conc "${N_CONC:-30000}" 100
run conc "${N_CONC:-30000}" 1000
run conc "${N_CONC:-30000}" "${INFLIGHT:-3000}"
run raw "${N_CONC:-30000}" "${RAW_BATCH:-750}"
echo "results: $out" >&2
