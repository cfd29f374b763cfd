# bench/agents/fake_llm.sh: sourced by the agents benches. start_fake_llm
# DIR starts fakes/llm.lua on a free loopback port (its pid joins the
# caller's pids array, which its cleanup kills) and sets llm to its base
# URL; it exits the bench when the fake does not start.
start_fake_llm() {
  ./build/chorus lua fakes/llm.lua --port 0 >"$1/llm.out" 2>&1 &
  pids+=($!)
  llm=
  for _ in $(seq 200); do
    llm=$(head -n 1 "$1/llm.out" 2>/dev/null | grep -o 'http://[^ ]*' || true)
    [ -n "$llm" ] && return 0
    sleep 0.05
  done
  echo "bench/agents: fakes/llm.lua did not start: $(cat "$1/llm.out")" >&2
  exit 1
}
