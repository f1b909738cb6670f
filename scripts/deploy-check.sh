#!/usr/bin/env bash
# Checks of deploy/: the alert rules (promtool check rules, and their unit tests), the metric
# names and labels of the dashboard and the alerts against deploy/metrics.txt, the PromQL of every
# dashboard query, and the systemd unit (systemd-analyze verify, when systemd-analyze is there).
# No build needed; takes seconds.
#
# promtool comes from Debian's `prometheus` package. When promtool is not on the PATH, the
# package is downloaded with apt-get and only its promtool is unpacked into
# $CARGO_TARGET_DIR/tools (installing the package would also set up a Prometheus server).
set -euo pipefail
cd "$(dirname "$0")/.."

target="${CARGO_TARGET_DIR:-target}"
[[ "$target" == /* ]] || target="$PWD/$target"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

promtool="$(command -v promtool || true)"
if [[ -z "$promtool" ]]; then
  promtool="$target/tools/usr/bin/promtool"
  if [[ ! -x "$promtool" ]]; then
    echo "promtool missing: unpacking it from Debian's prometheus package into $target/tools" >&2
    sudo=""
    [[ $(id -u) -ne 0 ]] && sudo="sudo"
    (cd "$work" && { apt-get download prometheus >/dev/null 2>&1 \
      || { $sudo apt-get update -qq && apt-get download prometheus >/dev/null; }; })
    mkdir -p "$target/tools"
    dpkg-deb --fsys-tarfile "$work"/prometheus_*.deb | tar -x -C "$target/tools" ./usr/bin/promtool
  fi
fi
"$promtool" --version | head -1

echo "== promtool check rules deploy/prometheus/alerts.yml"
"$promtool" check rules deploy/prometheus/alerts.yml
echo "== promtool test rules deploy/prometheus/alerts.test.yml"
"$promtool" test rules deploy/prometheus/alerts.test.yml

echo "== metric names and labels (deploy/check-metrics.py)"
python3 deploy/check-metrics.py --promql-rules "$work/dashboard-queries.yml"
echo "== PromQL of the dashboard's queries"
"$promtool" check rules "$work/dashboard-queries.yml"

echo "== systemd unit"
if command -v systemd-analyze >/dev/null 2>&1; then
  # verify wants the ExecStart binaries to exist: point them at a stand-in.
  printf '#!/bin/sh\n' >"$work/sessiongate"
  chmod 0755 "$work/sessiongate"
  sed "s|/usr/local/bin/sessiongate|$work/sessiongate|g" deploy/systemd/sessiongate.service \
    >"$work/sessiongate.service"
  systemd-analyze verify "$work/sessiongate.service"
  echo "systemd-analyze verify: ok"
  systemd-analyze security --offline=yes "$work/sessiongate.service" 2>/dev/null | tail -1 || true
else
  echo "systemd-analyze not installed: deploy/systemd/sessiongate.service not verified"
fi
echo "deploy check: ok"
