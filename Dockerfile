# syntax=docker/dockerfile:1
# Builds any Ticketing service: docker build --build-arg SERVICE=auth .
# Dependencies are compiled in their own layer (cargo-chef), so a source change rebuilds
# only the workspace crates.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS chef
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /app

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
ARG SERVICE
COPY --from=planner /app/recipe.json recipe.json
RUN test -n "${SERVICE}" \
 && cargo chef cook --release --locked --recipe-path recipe.json --package "svc-${SERVICE}"
COPY . .
RUN cargo build --release --locked --package "svc-${SERVICE}" \
 && cp "target/release/svc-${SERVICE}" /app/service

# Distroless: glibc, CA certificates and tzdata only; no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
COPY --from=builder /app/service /usr/local/bin/service
USER 65532:65532
ENV PORT=3000 LOG_FORMAT=json
EXPOSE 3000
ENTRYPOINT ["/usr/local/bin/service"]
