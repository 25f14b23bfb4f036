// Claude requests that wait for an answer: start (or resume) a session, list
// past conversations, load one. A start carries a `clientRef` that the agent
// echoes in its reply (sessions other clients start are announced on the
// same socket); history and load replies go only to the asker, so each of
// those waits for the first fitting reply, or for an error that carries no
// session id (how the agent reports a failed `claude.*` request).

import { ProtocolError, type WorkspaceClient } from "../client";
import type { ClientMessage, ConversationInfo, PermissionMode, ServerMessage, SessionInfo } from "../protocol";

export type { ConversationInfo };

type Client = Pick<WorkspaceClient, "send" | "onMessage" | "newRef">;

const TIMEOUT_MS = 30_000;

function request<T>(client: Client, msg: ClientMessage, pick: (m: ServerMessage) => T | undefined, what: string, errorCodes?: Set<string>): Promise<T> {
  return new Promise((resolve, reject) => {
    const stop = client.onMessage((m) => {
      const refused = m.type === "error" && ("clientRef" in msg ? m.clientRef === msg.clientRef : !m.id && (!errorCodes || errorCodes.has(m.code)));
      if (refused) {
        done();
        reject(new ProtocolError(m.code, m.message));
        return;
      }
      const v = pick(m);
      if (v !== undefined) {
        done();
        resolve(v);
      }
    });
    const timer = setTimeout(() => {
      stop();
      reject(new ProtocolError("timeout", `no answer from the workspace ${what}`));
    }, TIMEOUT_MS);
    function done(): void {
      clearTimeout(timer);
      stop();
    }
    client.send(msg);
  });
}


/**
 * Sessions started here to resume a conversation, by session id. The CLI
 * names its conversation only once the first prompt is sent, so this is how
 * a resumed session's pane can show the earlier messages right away.
 */
const resumed = new Map<string, string>();

export function resumedConversation(sessionId: string): string | undefined {
  return resumed.get(sessionId);
}

export async function startClaude(client: Client, opts: { resume?: string; model?: string; permissionMode?: PermissionMode } = {}): Promise<SessionInfo> {
  const clientRef = client.newRef();
  const info = await request(
    client,
    { type: "claude.start", ...opts, clientRef },
    (m) => (m.type === "session.created" && m.clientRef === clientRef ? m.info : undefined),
    "starting Claude",
  );
  if (opts.resume) resumed.set(info.id, opts.resume);
  return info;
}

export function listConversations(client: Client): Promise<ConversationInfo[]> {
  return request(
    client,
    { type: "claude.history" },
    (m) => (m.type === "claude.history" ? m.conversations : undefined),
    "listing conversations",
    new Set(["internal"]),
  );
}

export function loadTranscript(client: Client, conversationId: string): Promise<unknown[]> {
  return request(
    client,
    { type: "claude.load", conversationId },
    (m) => (m.type === "claude.transcript" && m.conversationId === conversationId ? m.entries : undefined),
    "loading the conversation",
    new Set(["no_such_session", "internal", "invalid_field"]),
  );
}
