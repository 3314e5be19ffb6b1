#!/usr/bin/env bash
# The one test command: installs what the tests need, then typecheck, lint and every test.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d node_modules ] || npm install
bash scripts/setup-system.sh
npx tsc -p tsconfig.json --noEmit
npx eslint .
npx vitest run "$@"
