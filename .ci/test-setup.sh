#!/usr/bin/env bash
# Everything the test suite needs beyond the venv: a private Docker engine (collector tests),
# headless Chromium (report test), the Node packages of the real Apollo federation (apollo
# tests) and tcpdump (latency truth from packet captures, tests/test_accuracy.py).
# Idempotent; writes .ci/test-env.sh for the test run.
set -euo pipefail
cd "$(dirname "$0")/.."
docker_env="$(bash .ci/docker-setup.sh)"
if ! command -v chromium >/dev/null 2>&1; then
    echo "test-setup: installing chromium" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends chromium >/dev/null 2>&1 \
        || { apt-get update >/dev/null && apt-get install -y --no-install-recommends chromium >/dev/null; }
fi
if ! command -v tcpdump >/dev/null 2>&1; then
    echo "test-setup: installing tcpdump" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends tcpdump >/dev/null 2>&1 \
        || { apt-get update >/dev/null && apt-get install -y --no-install-recommends tcpdump >/dev/null; }
fi
bash .ci/apollo-setup.sh
printf '%s\n' "$docker_env" >.ci/test-env.sh
