#!/usr/bin/env bash
# The end-to-end load harness: sessiongate against a direct upstream, nginx and plain Pingora,
# over plain HTTP/1.1, HTTP/1.1 over TLS and HTTP/2 over TLS, measured interleaved in one run on
# this machine. See benches/load/harness.py for what runs.
#
#   benches/load/run.sh            full run, at most 13 minutes after the build
#   benches/load/run.sh --smoke    a few seconds per system, under 2 minutes after the build
#   benches/load/run.sh --smoke --dev   the same on the debug build (CI: only checks it works)
#   benches/load/run.sh --smoke --eddsa --only dg --no-tls --no-h2
#                                  the cached route signing with HS256 (d) and EdDSA (g), interleaved
#
# Installs what is missing with apt-get (as root or through sudo): nginx and wrk, h2load
# (nghttp2-client) and openssl (the run's certificate), redis-server, cmake (to build Pingora),
# python3 (the harness uses only its standard library). Honours CARGO_TARGET_DIR. Other
# options (--no-tls, --no-h2, ...): benches/load/run.sh --help.
set -euo pipefail
cd "$(dirname "$0")/../.."

# command -> Debian package
declare -A package=([nginx]=nginx [wrk]=wrk [h2load]=nghttp2-client [openssl]=openssl
  [redis-server]=redis-server [cmake]=cmake [python3]=python3)
missing=()
for cmd in nginx wrk h2load openssl redis-server cmake python3; do
  command -v "$cmd" >/dev/null 2>&1 || [[ -x "/usr/sbin/$cmd" ]] || missing+=("${package[$cmd]}")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "missing: ${missing[*]}; install them with your package manager" >&2
    exit 1
  fi
  sudo=""
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  echo "installing ${missing[*]} ..." >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
export PATH="$PATH:/usr/sbin"
exec python3 benches/load/harness.py "$@"
