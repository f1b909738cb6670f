#!/usr/bin/env bash
# The test command: installs what the tests need (cmake, redis-server, promtool, the legacy web
# servers tomcat10, lighttpd and php-cli, the HTTP clients curl, openssl, nghttp and h2load, the
# assertion verifiers PyJWT and jose, the OpenID provider fixture's npm packages and Chromium)
# when missing, then runs every unit, integration and doc test. Integration tests start their
# own redis-server, sessiongate, legacy server, OpenID provider and browser processes on
# ephemeral ports.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh redis promtool legacy http python-jwt node oidc browser
# Two test threads: each integration test runs a proxy with two worker threads of its own.
cargo test --locked -- --test-threads=2
