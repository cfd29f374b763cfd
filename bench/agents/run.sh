#!/usr/bin/env bash
# bench/agents: what the agent adapters cost. Not a test.
#
#  1. calls: the reference workload (../shared/bench/workload.json) with
#     every step an `llm` agent call (the real adapter) to the stand-in
#     endpoint the peers use (../shared/bench/peers/servers.sh: nginx
#     answering one fixed chat completion at LLM_URL), 100 executions in
#     flight, in memory: executions/s and this process's CPU time per
#     agent call (utime + stime over calls), RUNS times.
#  2. deltas: `chorus serve` with EXECUTIONS (100) executions streaming an
#     answer from fakes/llm.lua at once, one WebSocket subscriber each: how
#     long a piece takes from the model's server to the subscriber (p50,
#     p99, max); twice: the streams in step ("deltas": every TOKEN_MS the
#     100 pieces land in the same instant), then independent
#     ("deltas_independent": each stream's first piece up to JITTER_MS,
#     default TOKEN_MS, later).
#
#   bash bench/agents/run.sh
#   RUNS=3 N=20000 EXECUTIONS=100 PIECES=50 TOKEN_MS=20 FIRST_MS=300 JITTER_MS=20 bash bench/agents/run.sh
#
# FIRST_MS: the model's time to first token (real models: hundreds of ms);
# with FIRST_MS=0 every stream's first pieces land in the burst of the 100
# approvals and connections, on the machine the client and model share.
#
# Compare in the same sitting with the peer (LangGraph.js, the same agents
# over fetch): CASES="lg_httpH" bash ../shared/bench/peers/run.sh
# Results: bench/results/agents-<timestamp>.jsonl
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
repo=$PWD
workload=${WORKLOAD:-../shared/bench/workload.json}
[ -f "$workload" ] || workload=bench/engine/workload.json
peers=../shared/bench/peers
[ -f "$peers/servers.sh" ] || { echo "bench/agents: $peers/servers.sh not found" >&2; exit 1; }
bash scripts/build.sh >/dev/null 2>&1
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || apt-get install -y -q nginx-light >&2
mkdir -p bench/results
out=$repo/bench/results/agents-$(date +%Y%m%d-%H%M%S).jsonl

tmp=$(mktemp -d /tmp/chorus-bench-agents.XXXXXX)
chmod 755 "$tmp"
pids=()
export DATA_DIR=$tmp/peers LLM_PORT=${LLM_PORT:-55490}
# shellcheck source=/dev/null
source "$peers/servers.sh" # LLM_URL, llm_start, llm_stop
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  llm_stop
  rm -rf "$tmp"
}
trap cleanup EXIT
# shellcheck source=bench/agents/fake_llm.sh
source bench/agents/fake_llm.sh
llm_start

# 1. calls
export OPENAI_API_KEY=bench
for r in $(seq "${RUNS:-3}"); do
  /usr/bin/time -v -o "$tmp/time" ./build/chorus lua bench/agents/bench.lua "$workload" "${N:-20000}" 100 >"$tmp/line"
  rss_kb=$(awk -F: '/Maximum resident/ {gsub(/ /,"",$2); print $2}' "$tmp/time")
  line=$(cat "$tmp/line")
  echo "${line%\}},\"label\":\"calls\",\"run\":$r,\"max_rss_mb_time\":$((rss_kb / 1024))}" | tee -a "$out"
done

# 2. deltas: the stand-in model, then the server reaching it
start_fake_llm "$tmp"
key=chk_$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
port=${BENCH_PORT:-18391}
OPENAI_BASE_URL=$llm CHORUS_LLM_MODEL=chorus-sim CHORUS_ADMIN_KEY=$key \
  ./build/chorus serve --listen "127.0.0.1:$port" >"$tmp/serve.log" 2>&1 &
pids+=($!)
for _ in $(seq 200); do
  curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  sleep 0.05
done
# In step (every stream's pieces land at once: the worst case), then
# independent streams (each one's first piece up to one token interval
# later, as separate requests to a real model are).
for jitter in 0 "${JITTER_MS:-${TOKEN_MS:-20}}"; do
  label=deltas
  [ "$jitter" = 0 ] || label=deltas_independent
  line=$(node bench/agents/delta_latency.mjs "http://127.0.0.1:$port" "$key" "${EXECUTIONS:-100}" \
    "${PIECES:-50}" "${TOKEN_MS:-20}" "${FIRST_MS:-300}" "$jitter")
  echo "${line%\}},\"label\":\"$label\"}" | tee -a "$out"
done
echo "results: $out" >&2
