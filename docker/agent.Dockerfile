# The workspace image: the agent, a shell and common tools, and the Claude Code CLI.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    cargo build --release --locked -p dispatch-agent && cp target/release/dispatch-agent /dispatch-agent

FROM node:20-bookworm-slim AS claude
WORKDIR /opt/claude
COPY tools/claude/package.json tools/claude/package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends bash ca-certificates git less procps vim-tiny curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 1000 --create-home --shell /bin/bash dispatch
COPY --from=claude /opt/claude /opt/claude
COPY --from=build /dispatch-agent /usr/local/bin/dispatch-agent
ENV PATH=/opt/claude/node_modules/.bin:$PATH \
    DISPATCH_CLAUDE_BIN=/opt/claude/node_modules/.bin/claude \
    DISPATCH_AGENT_LISTEN=0.0.0.0:8080 \
    DISPATCH_WORKSPACE=/workspace \
    SHELL=/bin/bash
USER 1000:1000
WORKDIR /workspace
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/dispatch-agent"]
