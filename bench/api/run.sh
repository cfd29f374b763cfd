#!/usr/bin/env bash
# API benchmark of `chorus serve` in memory: POST execute (wrk, 2 worker
# processes, then 1), GET status (wrk, 1 process: in memory each process
# keeps its own executions), and the WebSocket fan-out of one execution's
# events to 1,000 subscribers (node); peak RSS (VmHWM) of every server
# process. Targets are reported, not enforced; checks (no non-2xx, no
# socket error, no failed execution, no error in the server log, every
# subscriber gets every event, clean shutdown) make it exit 1.
#
#   bash bench/api/run.sh
#   DURATION=30s CONNECTIONS=128 SUBSCRIBERS=2000 bash bench/api/run.sh
#
# Results: bench/results/api-<timestamp>.jsonl (one JSON line per
# measurement); server logs and raw wrk output in a temporary directory
# kept with KEEP_TMP=1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
root=$PWD
build=${BUILD_DIR:-build-bench}
duration=${DURATION:-10s}
warmup=${WARMUP:-2s}
conns=${CONNECTIONS:-64}
threads=${THREADS:-2}
subscribers=${SUBSCRIBERS:-1000}
delay_ms=${DELAY_MS:-200}
base_port=${BENCH_PORT:-38480}

die() { echo "bench/api: $*" >&2; exit 1; }
for tool in wrk node jq curl cmake; do
  command -v "$tool" >/dev/null || die "$tool is required (apt-get install $tool)"
done
[ -x /usr/bin/time ] || die "/usr/bin/time is required (apt-get install time)"

tmp=$(mktemp -d /tmp/chorus-bench-api.XXXXXX)
started=()   # every process this script started (servers and workers)
cleanup() {
  local pid
  for pid in "${started[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${started[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  if [ -n "${KEEP_TMP:-}" ]; then echo "bench/api: logs kept in $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Release build, quietly (its output only when it fails).
if ! { cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo &&
  cmake --build "$build" -j"$(nproc)"; } >"$tmp/build.log" 2>&1; then
  cat "$tmp/build.log" >&2
  die "build failed"
fi
bin=$root/$build/chorus

# node's global WebSocket: a flag before node 22.
node_ws=(node --expose-gc)
if ! node -e 'process.exit(typeof WebSocket === "function" ? 0 : 1)' 2>/dev/null; then
  node_ws=(node --expose-gc --experimental-websocket)
  "${node_ws[@]}" -e 'process.exit(typeof WebSocket === "function" ? 0 : 1)' 2>/dev/null ||
    die "node >= 20.10 with a global WebSocket is required"
fi
# 1,000 sockets on each side: raise the descriptor limit (inherited).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

key=chk_$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
mkdir -p bench/results
stamp=$(date +%Y%m%d-%H%M%S)
out=bench/results/api-$stamp.jsonl
failed=0
host_info=$(jq -cn --arg cpus "$(nproc)" --arg kernel "$(uname -r)" \
  '{cpus: ($cpus | tonumber), kernel: $kernel}')

# emit(json): one result line (common fields added); a line whose "ok" is
# false fails the run.
emit() {
  local line
  line=$(jq -c --arg ts "$stamp" --argjson host "$host_info" \
    '{bench: "api", ts: $ts} + . + {host: $host}' <<<"$1")
  echo "$line" >>"$out"
  if [ "$(jq -r '.ok' <<<"$line")" != "true" ]; then
    failed=1
    echo "bench/api: CHECK FAILED: $line" >&2
  fi
}

# free_port(n): the first port from n that nobody listens on.
free_port() {
  local p=$1
  while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done
  echo "$p"
}

# start_server(name, port, args...): sets srv_pid, srv_workers (the worker
# pids with --workers, else srv_pid), srv_log, srv_url.
start_server() {
  local name=$1 port=$2
  shift 2
  srv_log=$tmp/$name.log
  srv_url=http://127.0.0.1:$port
  CHORUS_ADMIN_KEY=$key "$bin" serve --listen "127.0.0.1:$port" --grace-ms 1000 "$@" \
    >"$srv_log" 2>&1 </dev/null &
  srv_pid=$!
  started+=("$srv_pid")
  local up=
  for _ in $(seq 150); do
    kill -0 "$srv_pid" 2>/dev/null || break
    if curl -sf "$srv_url/healthz" >/dev/null 2>&1; then up=1; break; fi
    sleep 0.1
  done
  [ -n "$up" ] || { cat "$srv_log" >&2; die "server $name did not start"; }
  srv_workers=$srv_pid
  if [[ " $* " == *" --workers "* ]]; then
    # The workers are the supervisor's children (not read from its log:
    # that may be off, CHORUS_LOG_LEVEL=error, to measure logging's cost).
    local n list= args=" $* "
    n=${args#* --workers }
    n=${n%% *}
    for _ in $(seq 50); do
      list=$(pgrep -P "$srv_pid" | tr '\n' ' ')
      [ "$(wc -w <<<"$list")" -ge "$n" ] && break
      sleep 0.1
    done
    [ "$(wc -w <<<"$list")" -ge "$n" ] || die "server $name: $n workers did not start"
    srv_workers=$list
    local w
    for w in $srv_workers; do started+=("$w"); done
  fi
}

# api(method, path, [body]) -> body on stdout; fails on a non-2xx.
api() {
  curl -sf -X "$1" -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
    ${3:+--data "$3"} "$srv_url$2"
}

# scrape_workers(n): /metrics of each of n processes (a new connection
# each time; /healthz then /metrics on the same one tells which process
# answered). Prints {processes_scraped, executions_started,
# executions_completed, executions_failed, http_5xx} summed over them.
scrape_workers() {
  local want=$1 seen=" " total_c=0 total_f=0 total_5=0 total_r=0 i raw node m
  for i in $(seq 60); do
    raw=$(curl -s "$srv_url/healthz" "$srv_url/metrics") || continue
    node=$(head -c 300 <<<"$raw" | sed -n 's/.*"node":"\([^"]*\)".*/\1/p' | head -1)
    [ -n "$node" ] || continue
    [[ $seen == *" $node "* ]] && continue
    seen="$seen$node "
    m=$(sed 's/^{.*}//' <<<"$raw")
    total_c=$((total_c + $(awk '/^chorus_execution_transitions_total\{status="completed"\}/ {s+=$2} END {print s+0}' <<<"$m")))
    total_r=$((total_r + $(awk '/^chorus_execution_transitions_total\{status="running"\}/ {s+=$2} END {print s+0}' <<<"$m")))
    total_f=$((total_f + $(awk '/^chorus_execution_transitions_total\{status="(failed|cancelled)"\}/ {s+=$2} END {print s+0}' <<<"$m")))
    total_5=$((total_5 + $(awk '/^chorus_http_requests_total\{.*status_class="5xx"/ {s+=$2} END {print s+0}' <<<"$m")))
    [ "$(wc -w <<<"$seen")" -ge "$want" ] && break
  done
  jq -cn --argjson n "$(wc -w <<<"$seen")" --argjson c "$total_c" --argjson f "$total_f" \
    --argjson e "$total_5" --argjson r "$total_r" \
    '{processes_scraped: $n, executions_started: $r, executions_completed: $c, executions_failed: $f, http_5xx: $e}'
}

# stop_server(label): VmHWM of every process, SIGTERM, wait; emits the
# server line (peak RSS, exit code, errors logged).
stop_server() {
  local label=$1 procs="[]" p hwm role rc=0
  for p in $srv_pid $srv_workers; do
    [[ $procs == *"\"pid\":$p,"* ]] && continue
    hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
    role=worker
    [ "$p" = "$srv_pid" ] && [ "$srv_workers" != "$srv_pid" ] && role=supervisor
    procs=$(jq -c --argjson pid "$p" --arg role "$role" --argjson kb "${hwm:-0}" \
      '. + [{pid: $pid, role: $role, vmhwm_mb: (($kb / 1024 * 10 | round) / 10)}]' <<<"$procs")
  done
  kill -TERM "$srv_pid" 2>/dev/null || true
  wait "$srv_pid" || rc=$?
  # Workers must go with their supervisor.
  local left=0 w
  for w in $srv_workers; do
    [ "$w" = "$srv_pid" ] && continue
    for _ in $(seq 50); do kill -0 "$w" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$w" 2>/dev/null && left=$((left + 1))
  done
  [ "$left" = 0 ] && started=() # all gone: nothing for cleanup to kill
  local errors
  # Text or JSON records (the format follows stderr: JSON into a file).
  errors=$(grep -c ' error \|"level":"error"\| fatal \|deadlock\|worker [0-9]* exited' "$srv_log" || true)
  emit "$(jq -cn --arg lbl "$label" --argjson procs "$procs" --argjson rc "$rc" \
    --argjson errors "$errors" --argjson left "$left" --arg log "$(grep -m3 ' error \|"level":"error"\| fatal \|deadlock\|exited' "$srv_log" || true)" \
    '{name: "server", "label": $lbl, processes: $procs,
      peak_rss_mb: ([$procs[] | select(.role == "worker") | .vmhwm_mb] | max),
      exit_code: $rc, log_errors: $errors, first_errors: $log, workers_left: $left,
      ok: ($rc == 0 and $errors == 0 and $left == 0)}')"
}

# cpu_ms(pids...): CPU time (user + system) used so far by those processes.
cpu_ms() {
  local total=0 p f
  for p in "$@"; do
    f=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null) || continue
    total=$((total + $(awk '{print ($12 + $13) * 10}' <<<"$f")))
  done
  echo "$total"
}

# run_wrk(name, script, path, workers, target_rps, target_p99, env...):
# a warm-up, then the measured run; emits its line.
run_wrk() {
  local name=$1 script=$2 path=$3 workers=$4 trps=$5 tp99=$6
  shift 6
  env "$@" BENCH_DIR="$root/bench/api" wrk -t"$threads" -c"$conns" -d"$warmup" \
    -s "$root/bench/api/$script" "$srv_url$path" >"$tmp/$name-$workers-warmup.txt" 2>&1 ||
    die "wrk warm-up failed: $(cat "$tmp/$name-$workers-warmup.txt")"
  sleep 0.5
  local cpu0 cpu1 wrk_cpu
  cpu0=$(cpu_ms $srv_workers)
  env "$@" BENCH_DIR="$root/bench/api" /usr/bin/time -f '%U %S' -o "$tmp/$name-$workers.time" \
    wrk -t"$threads" -c"$conns" -d"$duration" --latency \
    -s "$root/bench/api/$script" "$srv_url$path" >"$tmp/$name-$workers.txt" 2>&1 ||
    die "wrk failed: $(cat "$tmp/$name-$workers.txt")"
  cpu1=$(cpu_ms $srv_workers)
  wrk_cpu=$(awk '{printf "%d", ($1 + $2) * 1000}' "$tmp/$name-$workers.time")
  sleep 0.5 # let the last executions finish
  local w s
  w=$(grep -m1 '^{"wrk"' "$tmp/$name-$workers.txt") || die "no figures from wrk: $(cat "$tmp/$name-$workers.txt")"
  s=$(scrape_workers "$workers")
  emit "$(jq -cn --argjson w "$w" --argjson s "$s" --arg name "$name" --argjson workers "$workers" \
    --argjson t "$threads" --argjson c "$conns" --arg d "$duration" \
    --argjson trps "$trps" --argjson tp99 "$tp99" --argjson scpu $((cpu1 - cpu0)) --argjson wcpu "$wrk_cpu" \
    '{name: $name, workers: $workers, wrk_threads: $t, connections: $c, duration: $d} + $w.wrk + $s
      + {server_cpu_ms: $scpu, wrk_cpu_ms: $wcpu,
         server_cpu_us_per_req: (($scpu * 1000 / $w.wrk.requests * 10 | round) / 10)}
      + {target_req_per_s: $trps, target_p99_ms: $tp99,
         meets_target: (if $trps == null then null
           else ($w.wrk.req_per_s >= $trps and $w.wrk.p99_ms < $tp99) end),
         ok: ($w.wrk.non2xx == 0 and $w.wrk.errors_connect == 0 and $w.wrk.errors_read == 0
              and $w.wrk.errors_write == 0 and $w.wrk.errors_timeout == 0
              and $s.executions_failed == 0 and $s.http_5xx == 0
              and $s.processes_scraped == $workers)}')"
}

echo_config='{"name":"bench-echo","strategy":"sequential","steps":[{"id":"a","agent":"echo"}]}'

# 1. POST execute, --workers 2 (SO_REUSEPORT).
start_server post2 "$(free_port "$base_port")" --workers 2
# In memory each process keeps its own configs: create it in both (a new
# connection each time, /healthz first on it tells which process it is).
created=" "
for _ in $(seq 100); do
  raw=$(curl -s "$srv_url/healthz" --next -s -o /dev/null -w ' %{http_code}' -X POST \
    -H "Authorization: Bearer $key" -H 'Content-Type: application/json' --data "$echo_config" \
    "$srv_url/api/v1/orchestrations/configs") || continue
  node=$(sed -n 's/.*"node":"\([^"]*\)".*/\1/p' <<<"$raw")
  [[ $raw =~ \ (201|409)$ && -n $node && $created != *" $node "* ]] && created="$created$node "
  [ "$(wc -w <<<"$created")" -ge 2 ] && break
done
[ "$(wc -w <<<"$created")" -ge 2 ] || die "could not create the config in both workers"
run_wrk post_execute post_execute.lua / 2 20000 10 BENCH_KEY="$key" BENCH_CONFIG=bench-echo
stop_server "post_execute --workers 2"

# 2. GET status (one process: it holds the execution), then POST execute
# on that one process for comparison.
start_server one "$(free_port $((base_port + 1)))"
api POST /api/v1/orchestrations/configs "$echo_config" >/dev/null
trace=$(api POST /api/v1/orchestrations/execute/bench-echo '{"input":{"job_name":"PAYROLL_DAILY"}}' | jq -r .trace_id)
for _ in $(seq 100); do
  [ "$(api GET "/api/v1/orchestrations/status/$trace" | jq -r .status)" = completed ] && break
  sleep 0.05
done
run_wrk get_status get_status.lua / 1 null null BENCH_KEY="$key" BENCH_TRACE="$trace"
run_wrk post_execute post_execute.lua / 1 20000 10 BENCH_KEY="$key" BENCH_CONFIG=bench-echo
stop_server "get_status + post_execute, 1 process"

# 3. WebSocket fan-out: a gate step waiting for an approval, then three
# delay steps; every event after the approval is measured.
start_server ws "$(free_port $((base_port + 2)))"
ws_config=$(jq -cn --argjson ms "$delay_ms" '{name: "bench-ws", strategy: "sequential", steps: [
  {id: "gate", agent: "echo", approval: true},
  {id: "d1", agent: "delay", params: {ms: $ms}, dependencies: ["gate"]},
  {id: "d2", agent: "delay", params: {ms: $ms}, dependencies: ["d1"]},
  {id: "d3", agent: "delay", params: {ms: $ms}, dependencies: ["d2"]}]}')
api POST /api/v1/orchestrations/configs "$ws_config" >/dev/null
# node's WebSocket (undici), then a minimal raw client (net's onread, one
# timestamp per read): both run on the server's two cores, and the raw
# one's lower per-message cost shows how much of the delay is the client.
for client in ${WS_CLIENTS:-builtin raw}; do
  ws_rc=0
  WS_CLIENT=$client SERVER_PID=$srv_pid "${node_ws[@]}" bench/api/ws_fanout.mjs "$srv_url" "$key" bench-ws \
    "$subscribers" gate >"$tmp/ws-$client.json" 2>"$tmp/ws-$client.err" &
  started+=("$!")
  wait "$!" || ws_rc=$?
  ws=$(tail -1 "$tmp/ws-$client.json")
  [ -n "$ws" ] || ws='{"ok":false,"problems":["ws_fanout printed nothing"]}'
  emit "$(jq -c --argjson rc "$ws_rc" --arg err "$(head -c 2000 "$tmp/ws-$client.err")" --arg client "$client" \
    '{name: "ws_fanout", workers: 1, client: $client} + . + {delay_step_ms: '"$delay_ms"', target_p99_ms: 50,
      meets_target: ((.p99_ms // 1e9) < 50), ok: (.ok == true and $rc == 0)}
      + (if $err != "" then {stderr: $err} else {} end)' <<<"$ws")"
done
stop_server "ws_fanout, 1 process"

# The table.
{
  printf 'measurement\tprocs\treq/s\tp50 ms\tp99 ms\tmax ms\ttarget\tmet\tok\n'
  jq -r 'select(.name != "server") |
    [.name + (if .client then " (\(.client))" else "" end), .workers,
     (if .req_per_s then (.req_per_s | floor) else "-" end),
     .p50_ms, .p99_ms, .max_ms,
     (if .name == "ws_fanout" then "p99<50ms" elif .target_req_per_s == null then "-"
      else "\(.target_req_per_s)/s p99<\(.target_p99_ms)ms" end),
     (if .meets_target == null then "-" else .meets_target end), .ok] | @tsv' "$out"
  jq -r 'select(.name == "server") |
    ["server: " + .label, (.processes | length), "-", "-", "-", "-",
     "peak RSS \(.peak_rss_mb) MB", "-", .ok] | @tsv' "$out"
} | column -t -s $'\t'
jq -r 'select(.name == "ws_fanout") |
  "ws_fanout (\(.client)): \(.subscribers) subscribers, \(.events_per_subscriber_min)..\(.events_per_subscriber_max) events each, \(.events_measured) measured (\(.pairs) pairs); sockets open in \(.open_ms) ms; CPU ms server \(.server_cpu_ms) client \(.client_cpu_ms)"' "$out"
echo "results: $out" >&2
[ "$failed" = 0 ] || die "a check failed (see the lines with \"ok\":false)"
