#!/usr/bin/env bash
# Installs the Debian 12 packages Chorus needs, only those missing.
# Run by scripts/demo and scripts/test; needs root (or sudo).
# With --services it also installs the servers and tools the tests use;
# with --demo, PostgreSQL (the demo's knowledge base).
set -euo pipefail

CHORUS_PACKAGES=(
  build-essential cmake pkg-config
  libluajit2-5.1-dev luajit2 libuv1-dev libssl-dev
  libpq-dev libhiredis-dev libcurl4-openssl-dev libh2o-dev libwslay-dev
  lua-cjson lua-cjson-dev lua-busted
)
if [ "${1:-}" = "--services" ]; then
  # clang + libclang-rt: the libFuzzer targets (scripts/fuzz.sh);
  # clang-format: the C style check (scripts/format.sh --check);
  # systemd (systemd-analyze), adduser: scripts/package-test checks the
  # units and installs the package (its postinst makes the chorus user);
  # chromium: the admin page's browser test (tests/browser, driven by
  # playwright-core from npm with this browser: nothing downloaded at run time);
  # nginx + openssl: TLS in front of the fake Workload Scheduler (the tws
  # agent's CA-file path, spec/02-integration/20-tws/tls_spec.lua);
  # jq: the log spec follows a trace id the way docs/DESIGN.md tells operators;
  # prometheus: its promtool checks what /metrics serves (metrics_spec);
  # lua-check: luacheck over every Lua file (.luacheckrc).
  CHORUS_PACKAGES+=(postgresql redis-server curl procps clang libclang-rt-14-dev
    clang-format systemd adduser chromium nginx openssl jq prometheus lua-check)
fi
if [ "${1:-}" = "--demo" ]; then
  CHORUS_PACKAGES+=(postgresql)
fi

missing=()
# Specs use node (a local protocol-faithful server, a WebSocket client)
# and the browser test npm (tests/browser); Debian's nodejs and npm are
# installed when the machine has none.
if [ "${1:-}" = "--services" ] && ! command -v node >/dev/null 2>&1; then
  missing+=(nodejs)
fi
if [ "${1:-}" = "--services" ] && ! command -v npm >/dev/null 2>&1; then
  missing+=(npm)
fi
for p in "${CHORUS_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi
