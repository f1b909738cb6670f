#!/usr/bin/env bash
# `docker build` where Docker cannot run: the Dockerfile's steps on the host, then checks that the
# image they would make is the one the Dockerfile describes. Run by CI so the Dockerfile cannot
# silently rot.
#
#   1. copy the build context (the repository less .dockerignore) to $CARGO_TARGET_DIR/image-context,
#      as `COPY . .` would; a file the build needs but .dockerignore drops fails here
#   2. scripts/image.sh build, then scripts/image.sh stage into a temporary root, from that copy
#   3. every path the Dockerfile names exists (COPY sources, the staged root, USER in the staged
#      /etc/passwd, VOLUME, ENTRYPOINT, HEALTHCHECK) and EXPOSE matches the example configuration
#   4. the staged binaries run: --version; only glibc and libgcc are linked (what the distroless
#      cc base provides); --check passes on the shipped example configuration, copied into a
#      stand-in for the volume with freshly generated secrets; --healthcheck answers 0 against a
#      running instance and 1 against a closed port
#
# The release build is the cost (minutes on 2 cores from scratch, seconds when cached).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh

target="${CARGO_TARGET_DIR:-target}"
[[ "$target" == /* ]] || target="$PWD/$target"
export CARGO_TARGET_DIR="$target"
context="$target/image-context"
work="$(mktemp -d)"
pid=""
cleanup() {
  [[ -n "$pid" ]] && kill "$pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

failed=0
ok() { echo "  ok    $*"; }
fail() {
  echo "  FAIL  $*"
  failed=$((failed + 1))
}

echo "== image: build context"
python3 scripts/image_check.py context . "$context"

echo "== image: scripts/image.sh build (release, --locked)"
start=$SECONDS
(cd "$context" && scripts/image.sh build)
echo "release build: $((SECONDS - start)) s"

root="$work/rootfs"
echo "== image: scripts/image.sh stage $root"
(cd "$context" && scripts/image.sh stage "$root")
(cd "$root" && find . -mindepth 1 | sort | sed 's|^\.|  |')

echo "== image: the Dockerfile against the staged root"
python3 scripts/image_check.py verify Dockerfile "$context" "$root" conf/production.toml || failed=$((failed + 1))

echo "== image: the staged binaries"
bin="$root/usr/local/bin/sessiongate"
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)"
if out="$("$bin" --version 2>&1)" && [[ "$out" == "sessiongate $version" ]]; then
  ok "sessiongate --version: $out"
else
  fail "sessiongate --version printed '$out', expected 'sessiongate $version'"
fi
if "$root/usr/local/bin/sessiongate-demo" --help >/dev/null 2>&1; then
  ok "sessiongate-demo --help"
else
  fail "sessiongate-demo --help"
fi
for b in sessiongate sessiongate-demo; do
  needed="$(readelf -d "$root/usr/local/bin/$b" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sort)"
  extra="$(grep -Ev '^(libc|libm|libgcc_s|libpthread|libdl|librt|ld-linux-x86-64|ld-linux-aarch64)\.so\.[0-9.]+$' <<<"$needed" || true)"
  if [[ -z "$extra" ]]; then
    ok "$b links only glibc and libgcc: $(tr '\n' ' ' <<<"$needed")"
  else
    fail "$b links libraries the distroless cc base lacks: $(tr '\n' ' ' <<<"$extra")"
  fi
done

# The operator's flow: the shipped example, copied into the volume, with secrets made for it.
volume="$work/etc-sessiongate"
mkdir -p "$volume/secrets"
cp "$root/usr/local/share/sessiongate/production.toml" "$volume/sessiongate.toml"
command -v openssl >/dev/null 2>&1 || scripts/deps.sh http
openssl genpkey -algorithm ed25519 -out "$volume/secrets/assertion-ed1.pem" 2>/dev/null
head -c 48 /dev/urandom | base64 >"$volume/secrets/cookie.key"
head -c 32 /dev/urandom | base64 >"$volume/secrets/admin.token"
head -c 24 /dev/urandom | base64 >"$volume/secrets/redis.pass"
if out="$("$bin" --check "$volume/sessiongate.toml" 2>&1)"; then
  ok "sessiongate --check on the shipped example (secrets generated): $out"
else
  fail "sessiongate --check on the shipped example:"
  printf '%s\n' "$out" | sed 's/^/          /'
fi

# The HEALTHCHECK command, against a running instance (memory store) and a closed port.
free_ports() {
  python3 -c 'import socket
s=[socket.socket() for _ in range(3)]
[x.bind(("127.0.0.1",0)) for x in s]
print(" ".join(str(x.getsockname()[1]) for x in s))'
}
read -r public admin closed < <(free_ports)
cat >"$work/health.toml" <<EOF
[server]
listen = ["127.0.0.1:$public"]
threads = 1
admin_listen = "127.0.0.1:$admin"
shutdown_grace = "1s"
[session]
cookie_name = "sid"
secure = false
[store]
kind = "memory"
[identity]
insecure_signing_key = "image-check-only-0123456789abcdef0123456789"
[[upstream]]
name = "app"
backends = ["127.0.0.1:$closed"]
health_check = "none"
[[route]]
upstream = "app"
EOF
help="$("$bin" --help 2>&1 || true)"
if [[ "$help" != *--healthcheck* ]]; then
  fail "sessiongate has no --healthcheck option, which the Dockerfile's HEALTHCHECK runs"
else
  "$bin" --config "$work/health.toml" 2>"$work/health.log" &
  pid=$!
  healthy=""
  for _ in $(seq 1 50); do
    if "$bin" --healthcheck "127.0.0.1:$admin" >/dev/null 2>&1; then
      healthy=yes
      break
    fi
    sleep 0.2
  done
  if [[ -n "$healthy" ]]; then
    ok "sessiongate --healthcheck 127.0.0.1:$admin exits 0 against a running instance"
  else
    fail "sessiongate --healthcheck never exited 0 against a running instance; its log:"
    sed 's/^/          /' "$work/health.log"
  fi
  if "$bin" --healthcheck "127.0.0.1:$closed" >/dev/null 2>&1; then
    fail "sessiongate --healthcheck exits 0 against a closed port"
  else
    rc=$?
    if [[ $rc -eq 1 ]]; then ok "sessiongate --healthcheck exits 1 against a closed port"; else fail "sessiongate --healthcheck exits $rc (expected 1) against a closed port"; fi
  fi
  kill -TERM "$pid"
  wait "$pid" || true
  pid=""
fi

if [[ $failed -ne 0 ]]; then
  echo "image check: $failed problem(s)"
  exit 1
fi
echo "image check: ok"
