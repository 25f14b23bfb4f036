// The wire protocol of the `api` crate (protocol.rs, session.rs, error.rs,
// rest.rs): JSON text frames tagged by `type`, camelCase fields. The types are
// generated from the Rust ones into ./generated/protocol.ts (see
// api/src/typescript.rs); this module names them for the UI and adds what
// only a client needs.

import type { ApiError, ServerMessage } from "./generated/protocol";

export type {
  ClaudeEvent,
  ClientMessage,
  ConversationInfo,
  ErrorCode,
  Me,
  PermissionMode,
  ServerMessage,
  SessionInfo,
  SessionKind,
  WorkspaceInfo,
  WorkspacePhase,
} from "./generated/protocol";
export { MAX_READ_BYTES, PROTOCOL_VERSION } from "./generated/protocol";

/**
 * A REST error body. Codes are never renamed but new ones may be added, so a
 * client also meets codes it does not know.
 */
export type ApiErrorBody = Omit<ApiError, "code"> & { code: ApiError["code"] | (string & {}) };

// A Record over the union, so the compiler flags a server type missing here.
const SERVER_TYPE_NAMES: Record<ServerMessage["type"], true> = {
  hello: true,
  "session.created": true,
  "session.attached": true,
  "session.resync": true,
  "session.list": true,
  "message.delta": true,
  "claude.permission.resolved": true,
  "claude.history": true,
  "claude.transcript": true,
  "session.range": true,
  "session.renamed": true,
  "session.resized": true,
  "session.ended": true,
  error: true,
};
const SERVER_TYPES = new Set<string>(Object.keys(SERVER_TYPE_NAMES));

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
