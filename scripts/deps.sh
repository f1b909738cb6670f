#!/usr/bin/env bash
# Installs the system packages sessiongate needs when they are missing (Debian/Ubuntu, as root
# or with sudo): cmake to build Pingora, and redis-server when "redis" is passed (the tests
# start their own redis-server processes).
set -euo pipefail

want=(cmake)
[[ "${1:-}" == "redis" ]] && want+=(redis-server)

missing=()
for cmd in "${want[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "missing: ${missing[*]}; install them with your package manager" >&2
  exit 1
fi
sudo=""
[[ $(id -u) -ne 0 ]] && sudo="sudo"
echo "installing ${missing[*]} ..." >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
