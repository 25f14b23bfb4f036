# The workspace image: the agent, a shell and common tools, and the Claude Code CLI.
#
# Built from the repository root, e.g. `docker build -f docker/agent.Dockerfile .`: the
# agent is compiled in the `binaries-source` stage and the CLI installed from npm.
# scripts/build-images.sh builds this same file without Docker or a registry: BASE is a
# Debian root filesystem made by debootstrap, and BINARIES=prebuilt takes the agent (from
# the project's cargo build) and tools/claude's node_modules from a `prebuilt/` directory
# in the build context instead (only the stages that the final one needs are built).
ARG BASE=debian:bookworm-slim
ARG BINARIES=source

FROM rust:1-bookworm AS binaries-source
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    cargo build --release --locked -p dispatch-agent \
 && mkdir -p /out && cp target/release/dispatch-agent /out/dispatch-agent

FROM node:20-bookworm-slim AS claude-source
WORKDIR /opt/claude
COPY tools/claude/package.json tools/claude/package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

FROM scratch AS binaries-prebuilt
COPY prebuilt/dispatch-agent /out/dispatch-agent

FROM scratch AS claude-prebuilt
COPY prebuilt/claude /opt/claude

FROM binaries-${BINARIES} AS binaries
FROM claude-${BINARIES} AS claude

FROM ${BASE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends bash ca-certificates git less procps vim-tiny curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 1000 --create-home --shell /bin/bash dispatch
COPY --from=claude /opt/claude /opt/claude
COPY --from=binaries /out/dispatch-agent /usr/local/bin/dispatch-agent
ENV PATH=/opt/claude/node_modules/.bin:$PATH \
    DISPATCH_CLAUDE_BIN=/opt/claude/node_modules/.bin/claude \
    DISPATCH_AGENT_LISTEN=0.0.0.0:8080 \
    DISPATCH_WORKSPACE=/workspace \
    SHELL=/bin/bash
USER 1000:1000
WORKDIR /workspace
EXPOSE 8080
# The holder keeps the terminals (their PTYs) across crashes of the agent, which it
# restarts; the container's main process, it gets the kubelet's SIGTERM and stops the agent.
ENTRYPOINT ["/usr/local/bin/dispatch-agent", "--hold"]
