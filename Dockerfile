# syntax=docker/dockerfile:1
# prescale: a static-ish release binary on a distroless, non-root base.
#   docker build -t prescale:dev .
# The image runs as UID 65532 (distroless "nonroot"), needs no writable root filesystem and no capabilities.

FROM rust:1-slim-bookworm AS build
# make: the jemalloc allocator is built from its C sources.
RUN apt-get update && apt-get install -y --no-install-recommends make && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Sources only; target/ and other build output are excluded by .dockerignore.
COPY Cargo.toml Cargo.lock rustfmt.toml build.rs ./
# The KEDA external scaler's contract, compiled by build.rs (protox: no protoc needed).
COPY proto ./proto
COPY src ./src
COPY benches ./benches
# Cache the registry and target directory between builds; copy the binary out of the cache mount.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin prescale \
 && install -D -m 0755 target/release/prescale /out/prescale

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="prescale" \
      org.opencontainers.image.description="Predictive autoscaler for Kubernetes serving external.metrics.k8s.io" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/prescale /usr/local/bin/prescale
USER 65532:65532
# 6443: external.metrics.k8s.io over TLS; 8080: admin (probes, /metrics, SRE endpoints); 9443: the KEDA external
# scaler (gRPC over TLS) when --keda-addr is set.
EXPOSE 6443 8080 9443
ENTRYPOINT ["/usr/local/bin/prescale"]
CMD ["serve"]
