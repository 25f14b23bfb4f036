// Generated from the `api` crate by api/src/typescript.rs. Do not edit:
// DISPATCH_WRITE_GENERATED=1 cargo test -p dispatch-api --lib typescript

/**
 * Stable error codes sent in `error` messages and REST error bodies.
 *
 * Clients match on these, so a code is never renamed; new ones may be added.
 */
export type ErrorCode = "bad_message" | "unknown_type" | "bad_frame" | "too_large" | "invalid_field" | "no_such_session" | "session_ended" | "wrong_session_type" | "session_limit" | "rate_limited" | "path_outside_workspace" | "spawn_failed" | "claude_unavailable" | "no_such_request" | "budget_exhausted" | "unauthorized" | "forbidden" | "no_such_workspace" | "already_exists" | "unavailable" | "internal";

/**
 * A session's id: 1 to 64 characters of `[A-Za-z0-9_-]`, unique in its workspace.
 *
 * Validated on construction and on deserialisation, so code holding one never
 * needs to check it again (it is safe in file names and frame headers).
 */
export type SessionId = string;

export type SessionKind = "terminal" | "claude";

/**
 * How a session stands, as listed by `session.list` and `GET /sessions`.
 */
export type SessionInfo = { id: SessionId, type: SessionKind, title: string, 
/**
 * Working directory, relative to the workspace root.
 */
cwd: string, 
/**
 * Unix time in milliseconds.
 */
created: number, 
/**
 * Unix time in milliseconds; absent while the session runs.
 */
ended?: number, exitCode?: number, 
/**
 * Why it ended when that was not the process exiting by itself
 * ("stopped", "agent restarted", "crashed: ...").
 */
endReason?: string, 
/**
 * Bytes of output produced so far (the offset the next byte will have).
 */
offset: number, 
/**
 * Oldest offset still readable by `session.attach`.
 */
oldestOffset: number, 
/**
 * Clients attached right now.
 */
attached: number, cols?: number, rows?: number, 
/**
 * A Claude session's conversation (Claude Code's session id), so a
 * client can tell that a conversation is already open.
 */
conversationId?: string, 
/**
 * A running terminal's foreground program, when it is not the shell
 * itself (what a tab shows when the program sets no title).
 */
foreground?: string, };

/**
 * How Claude Code asks before using tools (its --permission-mode).
 */
export type PermissionMode = "default" | "acceptEdits" | "plan" | "auto" | "dontAsk" | "bypassPermissions";

/**
 * Messages from a client (browser, CLI, test) to the agent.
 */
export type ClientMessage = { "type": "terminal.start", 
/**
 * Working directory relative to the workspace root (default: the root).
 */
workspacePath?: string, 
/**
 * Program to run (default: the user's shell).
 */
shell?: string, env?: { [key in string]: string }, cols: number, rows: number, title?: string, 
/**
 * Chosen by the client, echoed in the reply to this request only
 * (`session.created` or `error`), so a client can tell its reply
 * from other clients' sessions announced meanwhile.
 */
clientRef?: string, } | { "type": "terminal.write", id: SessionId, data: string, } | { "type": "terminal.resize", id: SessionId, cols: number, rows: number, } | { "type": "claude.start", 
/**
 * Claude Code session id of a past conversation to continue.
 */
resume?: string, model?: string, permissionMode?: PermissionMode, workspacePath?: string, 
/**
 * As in `terminal.start`.
 */
clientRef?: string, } | { "type": "claude.send", id: SessionId, input: string, } | { "type": "claude.permission", id: SessionId, requestId: string, allow: boolean, 
/**
 * Replacement tool input when allowing (edited by the user).
 */
updatedInput?: unknown, 
/**
 * Why, when denying; shown to the model.
 */
message?: string, 
/**
 * Allow this tool for the rest of the session without asking.
 */
remember?: boolean, } | { "type": "claude.interrupt", id: SessionId, } | { "type": "claude.history", } | { "type": "claude.load", conversationId: string, } | { "type": "session.attach", id: SessionId, since?: number, } | { "type": "session.detach", id: SessionId, } | { "type": "session.stop", id: SessionId, } | { "type": "session.list", } | { "type": "session.read", id: SessionId, from: number, to: number, } | { "type": "session.rename", id: SessionId, title: string, } | { "type": "claude.configure", id: SessionId, permissionMode?: PermissionMode, model?: string, };

/**
 * How an attach begins.
 */
export type AttachMode = "replay" | "snapshot";

/**
 * One event of a Claude session, as the CLI printed it, in a small envelope
 * that lets clients route it without parsing `raw`.
 */
export type ClaudeEvent = { 
/**
 * The CLI's `type` field (`system`, `assistant`, `user`, `result`,
 * `stream_event`, `control_request`, ...).
 */
type: string, subtype?: string, 
/**
 * Claude Code's own session id (the conversation id), when the event has one.
 */
sessionId?: string, requestId?: string, 
/**
 * Position of this event in the session's event log, for resuming.
 */
seq: number, raw: unknown, };

/**
 * A past Claude conversation found in the workspace's transcripts.
 */
export type ConversationInfo = { id: string, title: string, cwd: string, 
/**
 * Unix time in milliseconds of the last entry.
 */
updated: number, messages: number, };

/**
 * Messages from the agent to a client.
 */
export type ServerMessage = { "type": "hello", protocol: number, workspace: string, agentVersion: string, } | { "type": "session.created", id: SessionId, workspace: string, info: SessionInfo, 
/**
 * The request's `clientRef`, in the reply to the client that asked
 * (never in the announcement to other clients).
 */
clientRef?: string, } | { "type": "session.attached", id: SessionId, mode: AttachMode, 
/**
 * Offset of the first byte that follows (replay) or that the snapshot reflects.
 */
offset: number, 
/**
 * Set when `since` asked for bytes that are gone: the oldest offset still kept.
 */
lostBefore?: number, info: SessionInfo, } | { "type": "session.resync", id: SessionId, offset: number, } | { "type": "session.list", sessions: Array<SessionInfo>, } | { "type": "message.delta", id: SessionId, events: Array<ClaudeEvent>, } | { "type": "claude.permission.resolved", id: SessionId, requestId: string, allowed: boolean, reason: string, } | { "type": "claude.history", conversations: Array<ConversationInfo>, } | { "type": "claude.transcript", conversationId: string, entries: unknown[], } | { "type": "session.range", id: SessionId, from: number, to: number, oldest: number, end: number, } | { "type": "session.renamed", id: SessionId, title: string, } | { "type": "session.resized", id: SessionId, cols: number, rows: number, } | { "type": "session.ended", id: SessionId, exitCode: number | null, reason?: string, } | { "type": "error", code: ErrorCode, message: string, id?: string, 
/**
 * The failed request's `clientRef`.
 */
clientRef?: string, };

export type ApiError = { code: ErrorCode, message: string, };

/**
 * `GET /activity` on the agent: what the operator reads to decide idleness.
 */
export type Activity = { attachedClients: number, runningSessions: number, claudeTurnRunning: boolean, 
/**
 * Unix time in milliseconds of the last input or output in any session.
 */
lastActivity?: number, };

/**
 * Where a workspace stands, as the gateway reports it (the same names as the
 * `Workspace` resource's phase, so the UI treats both backends alike).
 */
export type WorkspacePhase = "Pending" | "Starting" | "Running" | "Suspended" | "Failed" | "Terminating" | "Stopped";

/**
 * A workspace as `GET /api/workspaces` lists it.
 */
export type WorkspaceInfo = { name: string, owner: string, phase: WorkspacePhase, 
/**
 * Unix time in milliseconds.
 */
created: number, lastAccessed?: number, 
/**
 * Human-readable progress or failure, when there is any.
 */
message?: string, };

/**
 * `POST /api/workspaces`.
 */
export type CreateWorkspace = { name: string, };

/**
 * `POST /api/login`.
 */
export type LoginRequest = { key: string, };

/**
 * `GET /api/me` and the body of a successful login.
 */
export type Me = { user: string, 
/**
 * Unix time in milliseconds when the login expires.
 */
expires: number, };

/**
 * What a Claude session is doing, from a person's point of view.
 */
export type ClaudeState = "Idle" | "Working" | "AwaitingApproval";

/**
 * One permission request that waits for a person.
 */
export type PendingApproval = { session: SessionId, requestId: string, tool: string, 
/**
 * The tool's input as the CLI gave it.
 */
input: unknown, 
/**
 * The CLI's own description of the request, when it gave one.
 */
description?: string, 
/**
 * Unix time in milliseconds when it was raised.
 */
raised: number, 
/**
 * Unix time in milliseconds when it is denied unless answered.
 */
deadline: number, };

/**
 * How a request ended (kept a while so a watcher that polled late learns it).
 */
export type ResolvedApproval = { session: SessionId, requestId: string, tool: string, allowed: boolean, 
/**
 * `answered`, `remembered`, `timeout`, `cancelled`.
 */
reason: string, 
/**
 * Unix time in milliseconds.
 */
at: number, };

/**
 * One Claude session's state.
 */
export type ClaudeSessionStatus = { id: SessionId, title: string, running: boolean, state: ClaudeState, 
/**
 * Turns finished since the session started.
 */
turns: number, 
/**
 * Unix time in milliseconds when the last turn finished.
 */
lastTurnTime?: number, 
/**
 * What the CLI reported the session cost, in US dollars.
 */
costUsd: number, 
/**
 * The last turn's error text, if it ended in an error.
 */
lastError?: string, };

/**
 * A budget for Claude's cost in one workspace over a period.
 */
export type BudgetStatus = { limitUsd: number, 
/**
 * Spent in the current period.
 */
spentUsd: number, periodSecs: number, 
/**
 * Unix time in milliseconds when the current period began.
 */
periodStart: number, 
/**
 * `ok`, `warning` (80 % or more) or `exhausted` (new turns refused).
 */
level: string, };

/**
 * `GET /claude/status` on the agent.
 */
export type ClaudeStatus = { 
/**
 * Grows whenever anything here changes; `?since=<version>` waits for a
 * newer one.
 */
version: number, state: ClaudeState, sessions: Array<ClaudeSessionStatus>, 
/**
 * At most [`MAX_PENDING_LISTED`], oldest first.
 */
pending: Array<PendingApproval>, 
/**
 * How many are pending in all.
 */
pendingCount: number, 
/**
 * Recently resolved requests, newest last.
 */
resolved: Array<ResolvedApproval>, 
/**
 * Unix time in milliseconds of the last finished turn in any session.
 */
lastTurnTime?: number, costUsd: number, budget?: BudgetStatus, };

/**
 * A person's answer to one request (agent and gateway alike).
 */
export type ApprovalAnswer = { allow: boolean, 
/**
 * Why, when denying; the model reads it.
 */
message?: string, 
/**
 * Allow this tool for the rest of the session ("Always").
 */
remember: boolean, };

/**
 * One workspace's Claude state in `GET /api/approvals`.
 */
export type WorkspaceClaude = { workspace: string, status: ClaudeStatus, };

/**
 * `GET /api/approvals`: the caller's workspaces whose agents run, with
 * their pending requests.
 */
export type Inbox = { workspaces: Array<WorkspaceClaude>, };

/** Version of the wire protocol; the agent announces it in `hello`. */
export const PROTOCOL_VERSION = 1;

/** Most bytes one `session.read` returns; a longer range is cut to this. */
export const MAX_READ_BYTES = 262144;

/** Longest `clientRef` accepted (it is echoed back). */
export const MAX_CLIENT_REF = 128;

/** Longest session id; ids are 1 to this many characters of [A-Za-z0-9_-]. */
export const MAX_SESSION_ID_LEN = 64;

/** Every `type` a client may send. */
export const CLIENT_MESSAGE_TYPES = ["terminal.start", "terminal.write", "terminal.resize", "claude.start", "claude.send", "claude.permission", "claude.interrupt", "claude.history", "claude.load", "session.attach", "session.detach", "session.stop", "session.list", "session.read", "session.rename", "claude.configure"] as const;

/** The first byte of a binary frame (api/src/frame.rs). */
export const FrameKind = { Output: 1, Snapshot: 2, Input: 3, Range: 4 } as const;
