#!/usr/bin/env bash
# Formats the C sources (runtime/, tests/c/, tests/fuzz/) with clang-format
# and the repository's .clang-format; with --check, changes nothing and
# fails naming every file (and line) that is not formatted. scripts/test
# runs the check. The style is clang-format 14's (Debian 12): another
# version may format a few constructs differently.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
command -v clang-format >/dev/null ||
  { echo "scripts/format.sh: clang-format is required (apt-get install clang-format)" >&2; exit 1; }
files=(runtime/*.[ch] tests/c/*.[ch] tests/fuzz/*.[ch])
if [ "${1:-}" = "--check" ]; then
  clang-format --dry-run --Werror "${files[@]}"
else
  clang-format -i "${files[@]}"
fi
