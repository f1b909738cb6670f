# sessiongate container image.
#
#   docker build -t sessiongate .
#   docker run -v /srv/sessiongate:/etc/sessiongate:ro -p 8080:8080 sessiongate
#
# Every build step lives in scripts/image.sh, which CI also runs on the host
# (scripts/image-check.sh checks the layout and every path this file names): keep this file a
# thin wrapper around it. deploy/README.md explains the volume, the ports and the upgrade.

# Keep in step with the toolchain CI builds with (scripts/image-check.sh warns when they differ).
ARG RUST_VERSION=1.95
# glibc, libgcc, ca-certificates and tzdata; no shell, no package manager. For a shell to debug
# with, build with --build-arg RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:debug.
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12

FROM rust:${RUST_VERSION}-bookworm AS builder
# cmake builds the zlib-ng that Pingora links statically.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    scripts/image.sh build && scripts/image.sh stage /rootfs

FROM ${RUNTIME_IMAGE}
COPY --from=builder /rootfs/ /
# sessiongate (10001:10001), from the /etc/passwd and /etc/group staged above.
USER 10001:10001
# The configuration: sessiongate.toml and the secret files it names (relative paths resolve
# against this directory), readable by uid 10001. Mount it read-only.
VOLUME ["/etc/sessiongate"]
# 8080: the public listener ([server] listen). 9091: the admin listener (/metrics, /healthz,
# /readyz, admin API); it answers outside the container only with admin_listen = "0.0.0.0:9091",
# and must then never be published on a public address.
EXPOSE 8080 9091
# SIGTERM drains in-flight requests and flushes pending renewals; allow it the time it needs
# (docker run --stop-timeout, compose stop_grace_period: at least 2 x shutdown_grace + 5s).
STOPSIGNAL SIGTERM
# GET http://127.0.0.1:9091/healthz from inside the container (no curl needed); works with
# admin_listen on 127.0.0.1:9091 or 0.0.0.0:9091.
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
  CMD ["/usr/local/bin/sessiongate", "--healthcheck", "127.0.0.1:9091"]
ENTRYPOINT ["/usr/local/bin/sessiongate"]
CMD ["--config", "/etc/sessiongate/sessiongate.toml"]
