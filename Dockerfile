# syntax=docker/dockerfile:1
# One Dockerfile for every function of covid-realtime: the FUNCTION build
# argument names the workspace binary (ingest, grpc-writer, redis-sub,
# aggregate, dashboard-api). knative/docker-bake.hcl builds them all:
#   docker buildx bake -f knative/docker-bake.hcl
#   docker buildx build --build-arg FUNCTION=grpc-writer -t dev.local/covid-realtime/grpc-writer:0.1.0 .
# Needs BuildKit (default in Docker 23+, and in buildx) for the cache mounts.

ARG FUNCTION=ingest
# dashboard-api serves the browser page: ASSETS=dashboard copies the built page
# into its image; every other function gets an empty directory (ASSETS=none).
ARG ASSETS=none

# ---- build: the Rust workspace, one binary, the dist profile (fat LTO, stripped)
FROM rust:1.95-bookworm AS build
ARG FUNCTION
# proto/ is compiled by protox (pure Rust, in the events crate's build script):
# the image needs no protoc and no system include files.
WORKDIR /src
COPY . .
# The registry and target caches survive between builds (and between the five
# functions: they share every dependency). The binary is copied out of the
# cache mount, which does not outlive this step.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --locked --profile dist --bin "$FUNCTION" \
 && install -D -m 0755 "target/dist/$FUNCTION" /out/function

# ---- the dashboard page, only when ASSETS=dashboard (BuildKit skips unused stages)
FROM node:22-bookworm-slim AS assets-dashboard
WORKDIR /dashboard
COPY dashboard/ ./
RUN --mount=type=cache,target=/root/.npm \
    npm ci --no-audit --no-fund && npm run build \
 && mkdir -p /out && cp -r dist /out/dashboard

# No page: an empty directory, made in the build stage that runs anyway.
FROM build AS assets-none
RUN mkdir -p /out/dashboard

FROM assets-${ASSETS} AS assets

# ---- runtime: glibc, libgcc and CA certificates, nothing else; no shell
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
ARG FUNCTION
LABEL org.opencontainers.image.title="covid-realtime-${FUNCTION}" \
      org.opencontainers.image.source="covid-realtime" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/function /usr/local/bin/function
COPY --from=assets /out/dashboard /srv/dashboard
# Numeric, so Kubernetes' runAsNonRoot can verify it (65532 = distroless nonroot).
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/function"]
