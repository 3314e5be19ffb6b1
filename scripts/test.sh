#!/usr/bin/env bash
# The one test command: installs what the tests need, then typecheck, lint and every test.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d node_modules ] || npm install
bash scripts/setup-system.sh
npx tsc -p tsconfig.json --noEmit
npx eslint .
# The dashboard tests need the built dashboard (dist/dashboard/): build it unless it is newer than its sources.
if [ ! -f dist/dashboard/index.html ] || [ -n "$(find dashboard src/client src/tracking src/events src/core -newer dist/dashboard/index.html -type f -print -quit)" ]; then
  npm run build:dashboard
fi
npx vitest run "$@"
