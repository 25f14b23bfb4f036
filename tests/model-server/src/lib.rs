//! A scripted stand-in for the Anthropic Messages API, on loopback only.
//!
//! The real Claude Code CLI talks to it (via `ANTHROPIC_BASE_URL`) as it
//! would to the real API: `POST /v1/messages?beta=true` answered with the
//! standard server-sent events. Each model call plays the next scripted
//! [`Turn`]: text, a `tool_use` (so the CLI runs a real tool and asks for
//! permission), or an HTTP error. Every request is recorded, so tests can
//! assert what the CLI sent (e.g. that a resumed conversation carries its
//! earlier messages). Usable in-process ([`ModelServer`]) or as the
//! `dispatch-model-server` binary.

pub mod script;
pub mod server;
pub mod sse;

pub use script::{ApiErrorTurn, ToolUse, Turn, Usage, parse_turns};
pub use server::{ModelServer, RecordedRequest};
