#!/usr/bin/env bash
# Builds build/chorus (release) or, with --asan, build-asan/chorus
# (AddressSanitizer + UBSan). The release build is configured for the
# /usr prefix, the Debian package's: `cd build && cpack` makes
# build/package/chorus_<version>_<arch>.deb from it (scripts/package-test).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
dir=build
flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=/usr)
if [ "${1:-}" = "--asan" ]; then
  dir=build-asan
  flags=(-DCMAKE_BUILD_TYPE=Debug -DCHORUS_SANITIZE=ON)
fi
cmake -S . -B "$dir" "${flags[@]}" >/dev/null
cmake --build "$dir" -j"$(nproc)" >&2
