//! The web UI's copy of this crate's wire contract is generated, never
//! written by hand: `web/src/lib/generated/protocol.ts` must be exactly what
//! [`generate`] returns, or `cargo test -p dispatch-api` fails. To regenerate
//! after changing a type here:
//!
//! ```text
//! DISPATCH_WRITE_GENERATED=1 cargo test -p dispatch-api --lib typescript
//! ```
//!
//! Only tests derive `ts_rs::TS` (a dev-dependency), so the crates that use
//! `api` never compile ts-rs.

use std::fmt::Write as _;
use std::path::PathBuf;

use ts_rs::{Config, TS};

use crate::approvals::{
    ApprovalAnswer, BudgetStatus, ClaudeSessionStatus, ClaudeState, ClaudeStatus, Inbox,
    PendingApproval, ResolvedApproval, WorkspaceClaude,
};
use crate::error::ErrorCode;
use crate::frame::FrameKind;
use crate::protocol::{
    AttachMode, CLIENT_MESSAGE_TYPES, ClaudeEvent, ClientMessage, ConversationInfo, MAX_CLIENT_REF,
    MAX_READ_BYTES, PermissionMode, ServerMessage,
};
use crate::rest::{
    Activity, ApiError, CreateWorkspace, LoginRequest, Me, WorkspaceInfo, WorkspacePhase,
};
use crate::session::{MAX_SESSION_ID_LEN, SessionId, SessionInfo, SessionKind};

/// Where the generated file lives, relative to the repository root.
pub const TS_PATH: &str = "web/src/lib/generated/protocol.ts";

fn declare<T: TS + ?Sized>(cfg: &Config, out: &mut String) {
    out.push('\n');
    if let Some(docs) = T::docs() {
        out.push_str(&docs);
    }
    out.push_str("export ");
    out.push_str(&T::decl(cfg));
    out.push('\n');
}

/// The whole generated TypeScript module.
pub fn generate() -> String {
    // Offsets and times are u64/i64 in Rust; as JSON numbers they stay far
    // below 2^53, and the UI does arithmetic on them.
    let cfg = Config::new().with_large_int("number");
    let mut out = String::from(
        "// Generated from the `api` crate by api/src/typescript.rs. Do not edit:\n\
         // DISPATCH_WRITE_GENERATED=1 cargo test -p dispatch-api --lib typescript\n",
    );
    declare::<ErrorCode>(&cfg, &mut out);
    declare::<SessionId>(&cfg, &mut out);
    declare::<SessionKind>(&cfg, &mut out);
    declare::<SessionInfo>(&cfg, &mut out);
    declare::<PermissionMode>(&cfg, &mut out);
    declare::<ClientMessage>(&cfg, &mut out);
    declare::<AttachMode>(&cfg, &mut out);
    declare::<ClaudeEvent>(&cfg, &mut out);
    declare::<ConversationInfo>(&cfg, &mut out);
    declare::<ServerMessage>(&cfg, &mut out);
    declare::<ApiError>(&cfg, &mut out);
    declare::<Activity>(&cfg, &mut out);
    declare::<WorkspacePhase>(&cfg, &mut out);
    declare::<WorkspaceInfo>(&cfg, &mut out);
    declare::<CreateWorkspace>(&cfg, &mut out);
    declare::<LoginRequest>(&cfg, &mut out);
    declare::<Me>(&cfg, &mut out);
    declare::<ClaudeState>(&cfg, &mut out);
    declare::<PendingApproval>(&cfg, &mut out);
    declare::<ResolvedApproval>(&cfg, &mut out);
    declare::<ClaudeSessionStatus>(&cfg, &mut out);
    declare::<BudgetStatus>(&cfg, &mut out);
    declare::<ClaudeStatus>(&cfg, &mut out);
    declare::<ApprovalAnswer>(&cfg, &mut out);
    declare::<WorkspaceClaude>(&cfg, &mut out);
    declare::<Inbox>(&cfg, &mut out);
    constants(&mut out);
    out
}

/// The constants a client needs, with the Rust values.
fn constants(out: &mut String) {
    let types: Vec<String> = CLIENT_MESSAGE_TYPES
        .iter()
        .map(|t| format!("{t:?}"))
        .collect();
    let kinds: Vec<String> = [
        FrameKind::Output,
        FrameKind::Snapshot,
        FrameKind::Input,
        FrameKind::Range,
    ]
    .iter()
    .map(|k| format!("{k:?}: {}", *k as u8))
    .collect();
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        "\n/** Version of the wire protocol; the agent announces it in `hello`. */\n\
         export const PROTOCOL_VERSION = {};\n\
         \n/** Most bytes one `session.read` returns; a longer range is cut to this. */\n\
         export const MAX_READ_BYTES = {MAX_READ_BYTES};\n\
         \n/** Longest `clientRef` accepted (it is echoed back). */\n\
         export const MAX_CLIENT_REF = {MAX_CLIENT_REF};\n\
         \n/** Longest session id; ids are 1 to this many characters of [A-Za-z0-9_-]. */\n\
         export const MAX_SESSION_ID_LEN = {MAX_SESSION_ID_LEN};\n\
         \n/** Every `type` a client may send. */\n\
         export const CLIENT_MESSAGE_TYPES = [{}] as const;\n\
         \n/** The first byte of a binary frame (api/src/frame.rs). */\n\
         export const FrameKind = {{ {} }} as const;\n",
        crate::PROTOCOL_VERSION,
        types.join(", "),
        kinds.join(", "),
    );
}

#[test]
fn committed_typescript_matches_the_generated_one() {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "..", TS_PATH].iter().collect();
    let generated = generate();
    if std::env::var_os("DISPATCH_WRITE_GENERATED").is_some() {
        std::fs::write(&path, &generated).expect("write the generated TypeScript");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is stale: run `DISPATCH_WRITE_GENERATED=1 cargo test -p dispatch-api --lib typescript`",
        path.display()
    );
}
