# The gateway: one static-ish binary and the web UI's build, on distroless.
FROM node:20-bookworm-slim AS web
WORKDIR /src/web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY web .
COPY api /src/api
RUN npm run build

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    cargo build --release --locked -p dispatch-gateway && cp target/release/dispatch-gateway /dispatch-gateway

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /dispatch-gateway /usr/local/bin/dispatch-gateway
COPY --from=web /src/web/dist /usr/share/dispatch/web
ENV DISPATCH_WEB_DIR=/usr/share/dispatch/web \
    DISPATCH_LISTEN=0.0.0.0:8787
USER 65532:65532
EXPOSE 8787
ENTRYPOINT ["/usr/local/bin/dispatch-gateway"]
