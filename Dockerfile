# syntax=docker/dockerfile:1
# Builds every Ticketing service in one builder stage; each service's image is a target:
#   docker build --target auth -t ticketing-auth .
# Dependencies are compiled in their own layer (cargo-chef) that changes only with
# Cargo.lock, and the five services are compiled together once. An edit to one service
# leaves the other binaries byte-identical, so their images keep their digests and
# skaffold redeploys only the service that changed.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS chef
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /app

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /app/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json \
    -p svc-auth -p svc-tickets -p svc-orders -p svc-payments -p svc-expiration
COPY . .
RUN cargo build --release --locked \
    -p svc-auth -p svc-tickets -p svc-orders -p svc-payments -p svc-expiration \
 && mkdir -p /app/bin \
 && for s in auth tickets orders payments expiration; do cp "target/release/svc-$s" /app/bin/; done

# Distroless: glibc, CA certificates and tzdata only; no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
USER 65532:65532
# mimalloc returns freed pages to the kernel at once rather than on a later allocation,
# which an idle service never makes (bench/RESULTS.md: idle RSS, fifth pass).
ENV PORT=3000 LOG_FORMAT=json MIMALLOC_PURGE_DELAY=0
EXPOSE 3000
ENTRYPOINT ["/usr/local/bin/service"]

FROM runtime AS auth
COPY --from=builder /app/bin/svc-auth /usr/local/bin/service

FROM runtime AS tickets
COPY --from=builder /app/bin/svc-tickets /usr/local/bin/service

FROM runtime AS orders
COPY --from=builder /app/bin/svc-orders /usr/local/bin/service

FROM runtime AS payments
COPY --from=builder /app/bin/svc-payments /usr/local/bin/service

FROM runtime AS expiration
COPY --from=builder /app/bin/svc-expiration /usr/local/bin/service
