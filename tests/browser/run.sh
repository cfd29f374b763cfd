#!/usr/bin/env bash
# The admin page's browser test (scripts/test runs it after the specs):
# playwright-core from the lock file (npm ci), Debian's /usr/bin/chromium,
# `chorus serve` from build/ (or $CHORUS_BIN) with PostgreSQL when
# CHORUS_TEST_PG is set, and in memory. Screenshots: build/artifacts/browser/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
npm ci --no-audit --no-fund --loglevel=error >&2
exec node --test --test-reporter=spec admin.test.mjs
