// The wire protocol of api/src/protocol.rs, session.rs and rest.rs, in TypeScript.
// JSON text frames tagged by `type`, camelCase fields.

export type ErrorCode =
  | "bad_message" | "unknown_type" | "bad_frame" | "too_large" | "invalid_field"
  | "no_such_session" | "session_ended" | "wrong_session_type" | "session_limit"
  | "rate_limited" | "path_outside_workspace" | "spawn_failed" | "claude_unavailable"
  | "no_such_request" | "unauthorized" | "forbidden" | "no_such_workspace"
  | "already_exists" | "unavailable" | "internal";

export type SessionKind = "terminal" | "claude";

export interface SessionInfo {
  id: string;
  type: SessionKind;
  title: string;
  cwd: string;
  created: number;
  ended?: number;
  exitCode?: number;
  endReason?: string;
  offset: number;
  oldestOffset: number;
  attached: number;
  cols?: number;
  rows?: number;
  /** A Claude session's conversation (Claude Code's session id). */
  conversationId?: string;
  /** A running terminal's foreground program, when it is not the shell itself. */
  foreground?: string;
}

export type PermissionMode = "default" | "acceptEdits" | "plan" | "auto" | "dontAsk" | "bypassPermissions";

export type ClientMessage =
  | { type: "terminal.start"; workspacePath?: string; shell?: string; env?: Record<string, string>; cols: number; rows: number; title?: string; clientRef?: string }
  | { type: "terminal.write"; id: string; data: string }
  | { type: "terminal.resize"; id: string; cols: number; rows: number }
  | { type: "claude.start"; resume?: string; model?: string; permissionMode?: PermissionMode; workspacePath?: string; clientRef?: string }
  | { type: "claude.send"; id: string; input: string }
  | { type: "claude.permission"; id: string; requestId: string; allow: boolean; updatedInput?: unknown; message?: string; remember?: boolean }
  | { type: "claude.interrupt"; id: string }
  | { type: "claude.history" }
  | { type: "claude.load"; conversationId: string }
  | { type: "session.attach"; id: string; since?: number }
  | { type: "session.detach"; id: string }
  | { type: "session.stop"; id: string }
  | { type: "session.list" }
  /** Earlier output `[from, to)`; answered by `session.range` and a range frame (kind 4). At most MAX_READ_BYTES. */
  | { type: "session.read"; id: string; from: number; to: number }
  | { type: "session.rename"; id: string; title: string }
  | { type: "claude.configure"; id: string; permissionMode?: PermissionMode; model?: string };

/** Most bytes one `session.read` returns (api::protocol::MAX_READ_BYTES). */
export const MAX_READ_BYTES = 256 * 1024;

export interface ClaudeEvent {
  type: string;
  subtype?: string;
  sessionId?: string;
  requestId?: string;
  seq: number;
  raw: unknown;
}

export type ServerMessage =
  | { type: "hello"; protocol: number; workspace: string; agentVersion: string }
  /** `clientRef` only in the reply to the request that carried it; other clients' sessions are announced without. */
  | { type: "session.created"; id: string; workspace: string; info: SessionInfo; clientRef?: string }
  | { type: "session.attached"; id: string; mode: "replay" | "snapshot"; offset: number; lostBefore?: number; info: SessionInfo }
  | { type: "session.resync"; id: string; offset: number }
  | { type: "session.list"; sessions: SessionInfo[] }
  | { type: "message.delta"; id: string; events: ClaudeEvent[] }
  | { type: "claude.permission.resolved"; id: string; requestId: string; allowed: boolean; reason: string }
  | { type: "claude.history"; conversations: unknown[] }
  | { type: "claude.transcript"; conversationId: string; entries: unknown[] }
  | { type: "session.range"; id: string; from: number; to: number; oldest: number; end: number }
  | { type: "session.renamed"; id: string; title: string }
  | { type: "session.resized"; id: string; cols: number; rows: number }
  | { type: "session.ended"; id: string; exitCode?: number | null; reason?: string }
  | { type: "error"; code: ErrorCode | string; message: string; id?: string; clientRef?: string };

const SERVER_TYPES = new Set<string>([
  "hello", "session.created", "session.attached", "session.resync", "session.list",
  "message.delta", "claude.permission.resolved", "claude.history", "claude.transcript",
  "session.ended", "error", "session.range", "session.renamed", "session.resized",
]);

/**
 * Reads a text frame from the server. Returns null for anything that is not
 * an object with a known `type` (a newer server may send types this UI does
 * not know yet; those are ignored rather than fatal).
 */
export function parseServerMessage(text: string): ServerMessage | null {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) return null;
  const t = (v as { type?: unknown }).type;
  if (typeof t !== "string" || !SERVER_TYPES.has(t)) return null;
  return v as ServerMessage;
}

// REST shapes (api/src/rest.rs)

export type WorkspacePhase = "Pending" | "Starting" | "Running" | "Suspended" | "Failed" | "Terminating" | "Stopped";

export interface WorkspaceInfo {
  name: string;
  owner: string;
  phase: WorkspacePhase;
  created: number;
  lastAccessed?: number;
  message?: string;
}

export interface Me {
  user: string;
  expires: number;
}

export interface ApiErrorBody {
  code: ErrorCode | string;
  message: string;
}

export const PROTOCOL_VERSION = 1;
