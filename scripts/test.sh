#!/usr/bin/env bash
# The one test command: installs what the tests need, then typecheck, lint and every test on
# this machine's Node, then the unit suite and end-to-end smoke tests on the other supported
# Node majors (scripts/test-node.sh; Node binaries from the npm registry into .tmp/).
#   FLOWCAST_TEST_NODES="24" npm test   # only Node 24 besides this one; "" for none
#   npm test -- test/x.test.ts          # these files, on this machine's Node only
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
if [ "$#" -eq 0 ]; then
  for major in ${FLOWCAST_TEST_NODES-22 24}; do
    bash scripts/test-node.sh "$major"
  done
fi
