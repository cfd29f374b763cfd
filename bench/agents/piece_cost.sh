#!/usr/bin/env bash
# bench/agents/piece_cost.sh: what one streamed piece of an answer costs
# the server, in instructions (valgrind's callgrind counts them the same
# whatever else the machine does). Not a test.
#
# `chorus serve` runs under callgrind twice, side by side, each with
# EXECUTIONS (20) executions streaming from fakes/llm.lua to a WebSocket
# subscriber each (bench/agents/delta_latency.mjs): 10 pieces 3,000 ms
# apart, then 100 pieces 300 ms apart. Both last as long, so what the
# server does with time alone (timers, the watchdog) cancels out; the
# difference over the extra pieces is a piece's cost: its read, the
# chunk, the delta event, the hub, the WebSocket frame.
#
#   bash bench/agents/piece_cost.sh
#   KEEP=1 bash bench/agents/piece_cost.sh   # keep the callgrind files
#     (callgrind_annotate on both shows where the difference goes)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
bash scripts/build.sh >/dev/null 2>&1
command -v valgrind >/dev/null || { echo "piece_cost: valgrind is needed" >&2; exit 1; }
n=${EXECUTIONS:-20}
tmp=$(mktemp -d /tmp/chorus-piece-cost.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${KEEP:-}" ] || rm -rf "$tmp"
}
trap cleanup EXIT
# shellcheck source=bench/agents/fake_llm.sh
source bench/agents/fake_llm.sh

start_fake_llm "$tmp"

# run NAME PIECES TOKEN_MS: one server under callgrind, one bench run.
run() {
  local name=$1 pieces=$2 token_ms=$3 key port log vpid
  key=chk_$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
  log=$tmp/$name.serve.log
  OPENAI_BASE_URL=$llm CHORUS_LLM_MODEL=chorus-sim CHORUS_ADMIN_KEY=$key \
    valgrind --tool=callgrind --callgrind-out-file="$tmp/$name.cg" \
    ./build/chorus serve --listen 127.0.0.1:0 >"$log" 2>&1 &
  vpid=$!
  for _ in $(seq 600); do
    port=$(grep -o 'listening on 127\.0\.0\.1:[0-9]*' "$log" 2>/dev/null | grep -o '[0-9]*$' || true)
    [ -n "$port" ] && break
    sleep 0.1
  done
  [ -n "$port" ] || { echo "piece_cost: the server did not start: $(cat "$log")" >&2; return 1; }
  RUN_TIMEOUT_MS=600000 node bench/agents/delta_latency.mjs "http://127.0.0.1:$port" "$key" "$n" \
    "$pieces" "$token_ms" 300 0 >"$tmp/$name.json"
  kill -INT "$vpid"
  wait "$vpid" || true
}
run few 10 3000 &
few=$!
run many 100 300
wait "$few"
total() { awk '/^summary:|^totals:/ {print $2; exit}' "$1"; }
a=$(total "$tmp/few.cg")
b=$(total "$tmp/many.cg")
extra=$((n * 90))
echo "{\"executions\":$n,\"instructions_10_pieces\":$a,\"instructions_100_pieces\":$b,\"extra_pieces\":$extra,\"instructions_per_piece\":$(((b - a) / extra))}"
[ -z "${KEEP:-}" ] || echo "callgrind files: $tmp/few.cg $tmp/many.cg" >&2
