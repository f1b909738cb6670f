#!/usr/bin/env bash
# The run command: builds sessiongate and the bundled demo app, starts the demo app on
# 127.0.0.1:8000 and sessiongate in front of it on http://localhost:8080 with the embedded
# memory store (no Redis needed). Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cargo build --locked --bins
demo_pid=""
cleanup() { [[ -n "$demo_pid" ]] && kill "$demo_pid" 2>/dev/null || true; }
trap cleanup EXIT INT TERM
target/debug/sessiongate-demo --listen 127.0.0.1:8000 --key-file conf/keys/demo-k1.key &
demo_pid=$!
echo
echo "  sessiongate: open http://localhost:8080 in a browser (Ctrl-C to stop)"
echo "  admin:       http://127.0.0.1:9091/healthz, /readyz"
echo
target/debug/sessiongate --config conf/quickstart.toml
