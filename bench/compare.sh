#!/usr/bin/env bash
# bench/compare.sh REF: this tree against an earlier commit, side by side
# in one sitting: the in-memory engine, the persisted engine and the API,
# each build with its own bench scripts, rounds interleaved (old, new,
# old, new...) so the machine's drift hits both alike. Not a test.
#
#   bash bench/compare.sh 9cc4bb0
#   ROUNDS=3 N_SEQ=100000 N_1K=100000 N_PG=20000 bash bench/compare.sh 9cc4bb0
#   OLD_LIBS=/path/to/old/lib bash bench/compare.sh REF   # the old build with
#                                     # other shared libraries (LD_LIBRARY_PATH),
#                                     # e.g. the LuaJIT it was built for
#   CASES="engine api" ...            # a subset (engine persisted api)
#
# Lines: bench/results/compare-<timestamp>.jsonl ({build, round, case,
# ...the bench's own figures}); a table of medians at the end, with the
# median of each round's new/old beside them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD
ref=${1:?usage: bench/compare.sh REF (a commit to compare with)}
rounds=${ROUNDS:-2}
cases=${CASES:-engine persisted api}
workload=${WORKLOAD:-../shared/bench/workload.json}
[ -f "$workload" ] || workload=$repo/bench/engine/workload.json
workload=$(readlink -f "$workload")

tmp=$(mktemp -d /tmp/chorus-compare.XXXXXX)
chmod 755 "$tmp"
old=$tmp/old
svc=$tmp/svc
cleanup() {
  [ -d "$svc" ] && bash scripts/services.sh stop "$svc" || true
  git worktree remove --force "$old" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

echo "compare: building $ref and this tree" >&2
git worktree add --detach "$old" "$ref" >/dev/null 2>&1
(cd "$old" && bash scripts/build.sh >"$tmp/old-build.log" 2>&1) || { cat "$tmp/old-build.log" >&2; exit 1; }
bash scripts/build.sh >/dev/null 2>&1

mkdir -p bench/results
out=$repo/bench/results/compare-$(date +%Y%m%d-%H%M%S).jsonl

# run BUILD CASE CMD...: one measurement, its JSON line tagged.
run() {
  local build=$1 case=$2 line
  shift 2
  if [ "$build" = old ] && [ -n "${OLD_LIBS:-}" ]; then
    line=$(cd "$old" && LD_LIBRARY_PATH=$OLD_LIBS "$@" | tail -n 1)
  elif [ "$build" = old ]; then
    line=$(cd "$old" && "$@" | tail -n 1)
  else
    line=$("$@" | tail -n 1)
  fi
  echo "{\"build\":\"$build\",\"round\":$round,\"case\":\"$case\",${line#\{}" | tee -a "$out"
}

if [[ " $cases " == *" persisted "* ]]; then
  mkdir -p "$svc"
  exports=$(CHORUS_PG_PORT=${BENCH_PG_PORT:-45492} CHORUS_REDIS_PORT=${BENCH_REDIS_PORT:-46499} \
    bash scripts/services.sh start "$svc")
  eval "$exports"
  pgbase=${CHORUS_TEST_PG%/*}
  for build in old new; do
    psql "$CHORUS_TEST_PG" -qc "CREATE DATABASE bench_$build" >/dev/null
    dir=$repo
    [ "$build" = old ] && dir=$old
    (cd "$dir" && ./build/chorus migrate --db "$pgbase/bench_$build" >/dev/null)
  done
fi

for round in $(seq "$rounds"); do
  for build in old new; do
    if [[ " $cases " == *" engine "* ]]; then
      run "$build" engine_seq ./build/chorus lua bench/engine/bench.lua "$workload" seq "${N_SEQ:-50000}"
      run "$build" engine_1k ./build/chorus lua bench/engine/bench.lua "$workload" conc "${N_1K:-50000}" 1000
    fi
    if [[ " $cases " == *" persisted "* ]]; then
      run "$build" persisted_1k ./build/chorus lua bench/persisted/bench.lua "$pgbase/bench_$build" "$workload" conc \
        "${N_PG:-10000}" 1000
    fi
    if [[ " $cases " == *" api "* ]]; then
      # Each tree runs its own bench/api/run.sh; its lines are in its
      # bench/results/api-*.jsonl.
      dir=$repo
      [ "$build" = old ] && dir=$old
      (cd "$dir" && if [ "$build" = old ] && [ -n "${OLD_LIBS:-}" ]; then export LD_LIBRARY_PATH=$OLD_LIBS; fi &&
        DURATION=${API_DURATION:-10s} SUBSCRIBERS=${SUBSCRIBERS:-200} bash bench/api/run.sh >"$tmp/api.log" 2>&1) ||
        echo "compare: bench/api failed for the $build build (see its lines)" >&2
      f=$(ls -t "$dir"/bench/results/api-*.jsonl 2>/dev/null | head -n 1)
      [ -n "$f" ] && grep '"name"' "$f" | grep -v '"name":"server"' | while read -r line; do
        echo "{\"build\":\"$build\",\"round\":$round,\"case\":\"api\",${line#\{}" | tee -a "$out"
      done
    fi
  done
done

echo "results: $out" >&2
# Medians per build and case of the figure each case is about.
build/chorus lua /dev/stdin "$out" <<'EOF'
local json = require "chorus.json"
local rows = {}
for line in io.lines((...)) do
  local r = json.decode(line)
  if r then
    local key, v = r.case, r.exec_per_s
    if r.case == "api" then
      key = ("api/%s/%s%s"):format(r.name, tostring(r.workers), r.client and ("/" .. r.client) or "")
      v = r.req_per_s or r.p99_ms -- ws_fanout: its p99 (ms), lower is better
    end
    if v then
      rows[key] = rows[key] or { old = {}, new = {}, by_round = {} }
      table.insert(rows[key][r.build], v)
      local rr = rows[key].by_round
      rr[r.round] = rr[r.round] or {}
      rr[r.round][r.build] = v
    end
  end
end
local function median(t)
  if #t == 0 then return nil end
  table.sort(t)
  return t[math.ceil(#t / 2)]
end
local keys = {}
for k in pairs(rows) do keys[#keys + 1] = k end
table.sort(keys)
-- per round: the median of each round's new/old, the two builds run one
-- after the other (the machine's drift over a sitting cancels out of it
-- better than out of the ratio of the two medians).
io.stdout:write(("%-40s %14s %14s %8s %10s\n"):format("case", "old (median)", "new (median)", "new/old",
  "per round"))
for _, k in ipairs(keys) do
  local o, n = median(rows[k].old), median(rows[k].new)
  local ratios = {}
  for _, pair in pairs(rows[k].by_round) do
    if pair.old and pair.new and pair.old > 0 then ratios[#ratios + 1] = pair.new / pair.old end
  end
  local pr = median(ratios)
  io.stdout:write(("%-40s %14s %14s %8s %10s\n"):format(k, o and ("%.1f"):format(o) or "-",
    n and ("%.1f"):format(n) or "-", (o and n and o > 0) and ("%.2f"):format(n / o) or "-",
    pr and ("%.2f"):format(pr) or "-"))
end
EOF
