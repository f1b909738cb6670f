#!/usr/bin/env bash
# Installs the system packages sessiongate needs when they are missing (Debian/Ubuntu, as root
# or with sudo): cmake to build Pingora; with "redis", redis-server (the tests start their own
# redis-server processes); with "promtool", Prometheus's promtool (the metrics test checks the
# exposition with it), unpacked from Debian's prometheus package into target/tools, because
# installing the package would also set up a Prometheus server.
set -euo pipefail
cd "$(dirname "$0")/.."

want=(cmake)
want_promtool=0
for arg in "$@"; do
  case "$arg" in
    redis) want+=(redis-server) ;;
    promtool) want_promtool=1 ;;
    *) echo "deps.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done

sudo=""
[[ $(id -u) -ne 0 ]] && sudo="sudo"
updated=0
apt_update() {
  if [[ $updated -eq 0 ]]; then
    $sudo apt-get update -qq
    updated=1
  fi
}

missing=()
for cmd in "${want[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "missing: ${missing[*]}; install them with your package manager" >&2
    exit 1
  fi
  echo "installing ${missing[*]} ..." >&2
  apt_update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

tools="$PWD/target/tools"
if [[ $want_promtool -eq 1 ]] && ! command -v promtool >/dev/null 2>&1 \
  && [[ ! -x "$tools/usr/bin/promtool" ]]; then
  echo "unpacking promtool from Debian's prometheus package into $tools ..." >&2
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && { apt-get download prometheus >/dev/null 2>&1 \
    || { apt_update && apt-get download prometheus >/dev/null 2>&1; }; })
  mkdir -p "$tools"
  dpkg-deb --fsys-tarfile "$work"/prometheus_*.deb | tar -x -C "$tools" ./usr/bin/promtool
fi
