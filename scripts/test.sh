#!/usr/bin/env bash
# The test command: installs what the tests need (cmake, redis-server) when missing, then runs
# every unit, integration and doc test. Integration tests start their own redis-server and
# sessiongate processes on ephemeral ports.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh redis promtool
# Two test threads: each integration test runs a proxy with two worker threads of its own.
cargo test --locked -- --test-threads=2
