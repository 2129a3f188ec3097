# syntax=docker/dockerfile:1
# One image for both wasmfn binaries, from the repository root:
#   docker build -t ghcr.io/wasmfn/wasmfn:dev .
# - /usr/local/bin/wasmfn            the CLI and node runtime (`wasmfn serve --kubernetes`, the DaemonSet)
# - /usr/local/bin/wasmfn-operator   the Kubernetes operator (the Deployment)
# It runs as the non-root user 65532 (wasmfn), whose home /var/lib/wasmfn is the node's default data folder;
# on Kubernetes the node's data folder is a hostPath that an init container hands to that user.
#
# The cargo registry and target folder are BuildKit cache mounts shared with compiler-templates/Dockerfile,
# which runs the same `cargo build`: building one image after the other compiles the workspace once.

ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
# cmake: aws-lc-sys (rustls' crypto provider) may build with it.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,id=wasmfn-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=wasmfn-cargo-git,target=/usr/local/cargo/git \
    --mount=type=cache,id=wasmfn-target,target=/src/target,sharing=locked \
    cargo build --release --locked -p wasmfn-cli -p wasmfn-operator \
 && mkdir -p /out \
 && cp target/release/wasmfn target/release/wasmfn-operator /out/

FROM ${RUNTIME_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 65532 wasmfn \
 && useradd --system --uid 65532 --gid 65532 --home-dir /var/lib/wasmfn --no-create-home \
      --shell /usr/sbin/nologin wasmfn \
 && install -d -o 65532 -g 65532 -m 0750 /var/lib/wasmfn
COPY --from=build /out/wasmfn /out/wasmfn-operator /usr/local/bin/
LABEL org.opencontainers.image.title="wasmfn" \
      org.opencontainers.image.description="wasmfn: the node runtime (wasmfn serve) and the Kubernetes operator (wasmfn-operator)" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV WASMFN_LOG=info
# A numeric user, so that Kubernetes' runAsNonRoot can check it.
USER 65532:65532
WORKDIR /var/lib/wasmfn
# 8080: function ingress (node) or health and metrics (operator); 8081: the node's admin API.
EXPOSE 8080 8081
# No entrypoint: the manifests name the binary (`wasmfn serve …` or `wasmfn-operator …`).
CMD ["wasmfn", "--help"]
