# The operator: one binary on distroless, non-root.
#
# Built from the repository root, e.g. `docker build -f docker/operator.Dockerfile .`.
# scripts/build-images.sh builds this same file without Docker or a registry: BASE is a
# Debian root filesystem made by debootstrap, and BINARIES=prebuilt takes the operator from
# the project's cargo build, in a `prebuilt/` directory of the build context.
ARG BASE=gcr.io/distroless/cc-debian12:nonroot
ARG BINARIES=source

FROM rust:1-bookworm AS binaries-source
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    cargo build --release --locked -p dispatch-operator \
 && mkdir -p /out && cp target/release/dispatch-operator /out/dispatch-operator

FROM scratch AS binaries-prebuilt
COPY prebuilt/dispatch-operator /out/dispatch-operator

FROM binaries-${BINARIES} AS binaries

FROM ${BASE}
COPY --from=binaries /out/dispatch-operator /usr/local/bin/dispatch-operator
USER 65532:65532
EXPOSE 8081
ENTRYPOINT ["/usr/local/bin/dispatch-operator"]
