#!/usr/bin/env bash
# Install the real Apollo federation the apollo-marked tests run (tests/apollo/README.md).
#
# Idempotent: `npm ci` from the committed package-lock.json, skipped when node_modules was
# installed from the same lock file (its sha256 is kept in node_modules/.capacity-lock.sha256).
# Install scripts are not run: none of these packages needs one.
set -euo pipefail
cd "$(dirname "$0")/../tests/apollo"

log() { echo "apollo-setup: $*" >&2; }

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    log "node and npm are needed (Node 20+) for tests/apollo"
    exit 1
fi
major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$major" -lt 20 ]; then
    log "Node $(node --version) is too old for tests/apollo (Node 20+ is needed)"
    exit 1
fi
want="$(sha256sum package-lock.json | cut -d' ' -f1)"
stamp="node_modules/.capacity-lock.sha256"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
log "installing tests/apollo node packages (npm ci)"
APOLLO_TELEMETRY_DISABLED=true npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null
echo "$want" >"$stamp"
