// What the agent's errors mean to a person. The agent's messages are for
// logs and scripts (they name sessions and conversations by id); the UI
// says what happened and what to do, with no raw ids or codes.

export interface ErrorLike {
  code: string;
  message: string;
}

const BY_CODE: Record<string, string> = {
  session_limit: "This workspace runs as many sessions as it may. Stop one and try again.",
  rate_limited: "Too much input at once; it was not all sent. Try again in a moment.",
  no_such_session: "That session is no longer there.",
  session_ended: "That session has ended.",
  path_outside_workspace: "That folder is outside the workspace.",
  spawn_failed: "The program could not be started.",
  timeout: "The workspace did not answer in time. Check the connection and try again.",
  connection_lost: "The connection dropped before the workspace answered. Try again.",
  already_exists: "That is already open.",
  unavailable: "The workspace is not reachable right now.",
  too_large: "That was too large to send.",
};

/** A sentence for a person about `e`. */
export function humanError(e: ErrorLike): string {
  if (e.code === "claude_unavailable") return stripIds(e.message);
  if (e.code === "no_such_session" && /conversation/i.test(e.message)) return "That conversation is no longer in this workspace.";
  return BY_CODE[e.code] ?? stripIds(e.message);
}

/** Drops session and conversation ids (and the words that introduce them) from a message. */
export function stripIds(message: string): string {
  return message
    .replace(/\s*\(?\b(session|conversation)\s+"?[tc]?[0-9a-f]{8,}(?:-[0-9a-f]{4,}){0,4}"?\)?/gi, " $1")
    .replace(/\s*\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b/gi, "")
    .replace(/\s+([.,;:])/g, "$1")
    .replace(/\s{2,}/g, " ")
    .trim();
}

/** Claude is unavailable because it has no login (not because the CLI is missing). */
export function isNotLoggedIn(e: ErrorLike): boolean {
  return e.code === "claude_unavailable" && /not logged in|no credentials/i.test(e.message);
}
