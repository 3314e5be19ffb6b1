#!/usr/bin/env bash
# Runs the unit suite and the end-to-end smoke tests on another Node.js major (22 or 24):
# installs that Node from the npm registry (scripts/node-binary.sh), puts it first on PATH,
# and runs vitest with it. Test processes, CLI children and workers all use that Node.
#   bash scripts/test-node.sh 24              # the matrix files below
#   bash scripts/test-node.sh 24 test/x.test.ts  # or the files given
set -euo pipefail
cd "$(dirname "$0")/.."
major=${1:?usage: scripts/test-node.sh <22|24> [vitest filters...]}
shift
bin=$(bash scripts/node-binary.sh "$major")
export PATH="$bin:$PATH"
# What runs on every supported Node (vitest file filters; the whole suite runs on the
# machine's Node in scripts/test.sh):
#  - unit: the engine, tracking, scheduler, client SDK (global WebSocket on 22+, ws on 20),
#    protocol and SSE tests: in-process, real sockets, a real redis-server where needed;
#  - end-to-end smoke: the CLI (serve, demo, lazy help), BullMQ workers on Redis across
#    processes, the README example, and the packed package (require, import, types).
MATRIX=(
  test/engine-
  test/tracking-
  test/scheduler.test.ts
  test/client-node.test.ts
  test/client-monitor.test.ts
  test/client-fake-server.test.ts
  test/client-options.test.ts
  test/server-protocol.test.ts
  test/server-sse.test.ts
  test/seams-memory.test.ts
  test/cli-lazy.test.ts
  test/cli-serve.test.ts
  test/cli-demo.test.ts
  test/distributed-e2e.test.ts
  test/readme.test.ts
  test/packaging.test.ts
)
[ "$#" -gt 0 ] && MATRIX=("$@")
echo "test-node.sh: Node $(node --version) ($(command -v node)): ${#MATRIX[@]} filter(s)"
npx vitest run "${MATRIX[@]}"
