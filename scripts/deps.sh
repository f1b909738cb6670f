#!/usr/bin/env bash
# Installs the system packages sessiongate needs when they are missing (Debian/Ubuntu, as root
# or with sudo): cmake to build Pingora; with "redis", redis-server (the tests start their own
# redis-server processes); with "promtool", Prometheus's promtool (the metrics test checks the
# exposition with it), unpacked from Debian's prometheus package into target/tools, because
# installing the package would also set up a Prometheus server; with "legacy", the real legacy
# web servers the legacy_servers tests start on ephemeral ports (tomcat10, lighttpd, php-cli),
# installed with their system services kept from starting (they would take ports 8080 and 80);
# with "http", the HTTP clients the TLS and HTTP/2 tests drive (curl, openssl, and nghttp and
# h2load from nghttp2-client); with "oidc", the real OpenID provider the sign-in tests start
# (npm packages pinned by tests/oidc/package-lock.json, installed with `npm ci`; Node.js from
# Debian when there is none); with "browser", Debian's Chromium for the browser test; with
# "python-jwt", PyJWT and cryptography for the system's /usr/bin/python3 (python3-jwt,
# python3-cryptography), and with "node", jose from npm at the version
# tests/verifiers/node/package-lock.json pins (`npm ci`, when node_modules is missing): the
# independent verifiers of the JWKS tests.
set -euo pipefail
cd "$(dirname "$0")/.."

want=(cmake)
want_promtool=0
want_legacy=0
want_oidc=0
want_python_jwt=0
want_node=0
for arg in "$@"; do
  case "$arg" in
    redis) want+=(redis-server) ;;
    promtool) want_promtool=1 ;;
    legacy) want_legacy=1 ;;
    http) want+=(curl openssl nghttp2-client:nghttp nghttp2-client:h2load) ;;
    oidc) want+=(nodejs:node npm); want_oidc=1 ;;
    browser) want+=(chromium) ;;
    python-jwt) want_python_jwt=1 ;;
    node) want_node=1 ;;
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

# Each wanted item is a package, or package:command where the command is named otherwise.
missing=()
for item in "${want[@]}"; do
  pkg="${item%%:*}"
  cmd="${item#*:}"
  if ! command -v "$cmd" >/dev/null 2>&1 && [[ " ${missing[*]} " != *" $pkg "* ]]; then
    missing+=("$pkg")
  fi
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

# The legacy servers: package name and a file that proves it is installed (Tomcat has no
# command on PATH; lighttpd lives in /usr/sbin, which a plain user's PATH may lack).
if [[ $want_legacy -eq 1 ]]; then
  legacy_missing=()
  for pair in tomcat10:/usr/share/tomcat10/bin/catalina.sh lighttpd:/usr/sbin/lighttpd \
    php-cli:/usr/bin/php; do
    [[ -e "${pair#*:}" ]] || legacy_missing+=("${pair%%:*}")
  done
  if [[ ${#legacy_missing[@]} -gt 0 ]]; then
    if ! command -v apt-get >/dev/null 2>&1; then
      echo "missing: ${legacy_missing[*]}; install them with your package manager" >&2
      exit 1
    fi
    echo "installing ${legacy_missing[*]} (services kept stopped) ..." >&2
    # invoke-rc.d asks policy-rc.d before starting a service; 101 means "not allowed". An
    # existing policy (a container's, say) is put back afterwards; ours is removed.
    policy=/usr/sbin/policy-rc.d
    saved_policy=""
    if [[ -e "$policy" ]]; then
      saved_policy="$(mktemp)"
      $sudo cp -p "$policy" "$saved_policy"
    fi
    restore_policy() {
      if [[ -n "$saved_policy" ]]; then
        $sudo cp -p "$saved_policy" "$policy" && rm -f "$saved_policy"
      else
        $sudo rm -f "$policy"
      fi
    }
    trap restore_policy EXIT
    printf '#!/bin/sh\n# deps.sh: no service starts while the legacy servers install\nexit 101\n' \
      | $sudo tee "$policy" >/dev/null
    $sudo chmod 755 "$policy"
    apt_update
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${legacy_missing[@]}" >/dev/null
    restore_policy
    trap - EXIT
    # Belt and braces: a maintainer script that bypasses policy-rc.d may have started them
    # anyway. Stop the services (and keep systemd from starting them at boot), then end any
    # daemon they left behind.
    for service in tomcat10 lighttpd; do
      if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
        $sudo systemctl disable --now "$service" >/dev/null 2>&1 || true
      elif [[ -x "/etc/init.d/$service" ]]; then
        $sudo "/etc/init.d/$service" stop >/dev/null 2>&1 || true
      fi
    done
    # Only the system services' processes: the Debian lighttpd runs /etc/lighttpd/lighttpd.conf
    # and Tomcat runs with catalina.base=/var/lib/tomcat10; tests' own servers use a tempdir.
    for pattern in '^/usr/sbin/lighttpd .*-f /etc/lighttpd/lighttpd.conf' \
      'catalina.base=/var/lib/tomcat10'; do
      for pid in $(pgrep -f "$pattern" 2>/dev/null || true); do
        $sudo kill "$pid" 2>/dev/null || true
      done
    done
  fi
fi

if [[ $want_oidc -eq 1 ]] && [[ ! -d tests/oidc/node_modules ]]; then
  echo "installing the OpenID provider fixture's npm packages (npm ci in tests/oidc) ..." >&2
  (cd tests/oidc && npm ci --no-audit --no-fund --loglevel=error)
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

# PyJWT with PyJWKClient (2.0 and later) and the cryptography module it needs for EdDSA and
# ES256, for the system's Python (a pyenv or venv python3 on PATH may lack them).
if [[ $want_python_jwt -eq 1 ]] \
  && ! /usr/bin/python3 -c 'import cryptography, jwt; jwt.PyJWKClient' >/dev/null 2>&1; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "missing: PyJWT and cryptography for /usr/bin/python3; install them" >&2
    exit 1
  fi
  echo "installing python3-jwt python3-cryptography ..." >&2
  apt_update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-jwt python3-cryptography \
    >/dev/null
fi

# jose, exactly as the lock file pins it.
if [[ $want_node -eq 1 ]] && [[ ! -d tests/verifiers/node/node_modules/jose ]]; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "missing: node and npm (Node 18 or later) for the jose verifier" >&2
    exit 1
  fi
  echo "installing jose for tests/verifiers/node (npm ci) ..." >&2
  (cd tests/verifiers/node && npm ci --no-audit --no-fund >/dev/null)
fi
