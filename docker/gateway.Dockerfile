# The gateway: one binary and the web UI's build, on distroless.
#
# Built from the repository root, e.g. `docker build -f docker/gateway.Dockerfile .`.
# scripts/build-images.sh builds this same file without Docker or a registry: BASE is a
# Debian root filesystem made by debootstrap, and BINARIES=prebuilt takes the gateway (from
# the project's cargo build) and web/dist from a `prebuilt/` directory in the build context.
ARG BASE=gcr.io/distroless/cc-debian12:nonroot
ARG BINARIES=source

FROM node:20-bookworm-slim AS web-source
WORKDIR /src/web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY web .
COPY api /src/api
RUN npm run build

FROM rust:1-bookworm AS binaries-source
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    cargo build --release --locked -p dispatch-gateway \
 && mkdir -p /out && cp target/release/dispatch-gateway /out/dispatch-gateway

FROM scratch AS binaries-prebuilt
COPY prebuilt/dispatch-gateway /out/dispatch-gateway

FROM scratch AS web-prebuilt
COPY prebuilt/web-dist /src/web/dist

FROM binaries-${BINARIES} AS binaries
FROM web-${BINARIES} AS web

FROM ${BASE}
COPY --from=binaries /out/dispatch-gateway /usr/local/bin/dispatch-gateway
COPY --from=web /src/web/dist /usr/share/dispatch/web
ENV DISPATCH_WEB_DIR=/usr/share/dispatch/web \
    DISPATCH_LISTEN=0.0.0.0:8787
USER 65532:65532
EXPOSE 8787
ENTRYPOINT ["/usr/local/bin/dispatch-gateway"]
