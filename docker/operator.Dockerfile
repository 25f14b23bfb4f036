# The operator: one binary on distroless, non-root.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    cargo build --release --locked -p dispatch-operator && cp target/release/dispatch-operator /dispatch-operator

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /dispatch-operator /usr/local/bin/dispatch-operator
USER 65532:65532
EXPOSE 8081
ENTRYPOINT ["/usr/local/bin/dispatch-operator"]
