#!/usr/bin/env bash
# The container image's build steps, in one place. The Dockerfile runs them in its builder stage,
# and CI runs them on the host (scripts/image-check.sh), so the image cannot silently rot.
#
#   scripts/image.sh build         cargo build --release --locked of the two binaries
#   scripts/image.sh stage ROOT    lay out the runtime filesystem under ROOT (from the build)
#   scripts/image.sh all ROOT      both
#
# The layout under ROOT is copied as is over the runtime base image (distroless cc: glibc,
# libgcc, ca-certificates, no shell):
#   /usr/local/bin/sessiongate, /usr/local/bin/sessiongate-demo
#   /usr/local/share/sessiongate/production.toml     example configuration (conf/production.toml)
#   /etc/sessiongate/                                the configuration volume, empty
#   /etc/passwd, /etc/group                          root, nobody and sessiongate (uid/gid 10001);
#                                                    they replace the base image's files
# Binaries come from $CARGO_TARGET_DIR/release (default target/release).
set -euo pipefail
cd "$(dirname "$0")/.."

# The image runs as this user; the Dockerfile's USER line says the same numbers.
SG_UID=10001
SG_GID=10001

usage() {
  echo "usage: scripts/image.sh build | stage ROOT | all ROOT" >&2
  exit 2
}

target_dir() {
  local dir="${CARGO_TARGET_DIR:-target}"
  [[ "$dir" == /* ]] || dir="$PWD/$dir"
  printf '%s\n' "$dir"
}

build() {
  cargo build --release --locked --bin sessiongate --bin sessiongate-demo
}

stage() {
  local root="$1" release
  release="$(target_dir)/release"
  for bin in sessiongate sessiongate-demo; do
    if [[ ! -x "$release/$bin" ]]; then
      echo "scripts/image.sh: $release/$bin is missing: run 'scripts/image.sh build' first" >&2
      exit 1
    fi
  done
  mkdir -p "$root"
  install -d -m 0755 "$root/usr/local/bin" "$root/usr/local/share/sessiongate" \
    "$root/etc" "$root/etc/sessiongate"
  install -m 0755 "$release/sessiongate" "$release/sessiongate-demo" "$root/usr/local/bin/"
  install -m 0644 conf/production.toml "$root/usr/local/share/sessiongate/production.toml"
  # Complete files, not additions: the runtime base (distroless) has no users worth keeping.
  cat >"$root/etc/passwd" <<EOF
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
sessiongate:x:$SG_UID:$SG_GID:sessiongate:/nonexistent:/sbin/nologin
EOF
  cat >"$root/etc/group" <<EOF
root:x:0:
nogroup:x:65534:
sessiongate:x:$SG_GID:
EOF
  chmod 0644 "$root/etc/passwd" "$root/etc/group"
}

case "${1:-}" in
  build) [[ $# -eq 1 ]] || usage; build ;;
  stage) [[ $# -eq 2 ]] || usage; stage "$2" ;;
  all) [[ $# -eq 2 ]] || usage; build; stage "$2" ;;
  *) usage ;;
esac
