import { describe, expect, it } from "vitest";
import { ProtocolError, WorkspaceClient, type SessionSink, type SocketLike } from "../src/lib/client";
import { listConversations, resumedConversation, startClaude } from "../src/lib/claude/requests";
import type { ServerMessage } from "../src/lib/protocol";

// A socket the test plays the agent on.
class Socket implements SocketLike {
  binaryType = "blob";
  readyState = 0;
  bufferedAmount = 0;
  sent: string[] = [];
  onopen: ((ev: unknown) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  send(data: string | Uint8Array<ArrayBuffer>): void {
    if (typeof data === "string") this.sent.push(data);
  }
  close(): void {
    this.drop();
  }
  up(): void {
    this.readyState = 1;
    this.onopen?.({});
    this.json({ type: "hello", protocol: 1, workspace: "w", agentVersion: "t" });
  }
  json(m: unknown): void {
    this.onmessage?.({ data: JSON.stringify(m) });
  }
  drop(): void {
    this.readyState = 3;
    this.onclose?.({ code: 1006, reason: "" });
  }
  messages(): Record<string, unknown>[] {
    return this.sent.map((s) => JSON.parse(s));
  }
}

function setup() {
  const sockets: Socket[] = [];
  const due: (() => void)[] = [];
  const client = new WorkspaceClient({
    url: "ws://x/ws",
    createSocket: () => {
      const s = new Socket();
      sockets.push(s);
      return s;
    },
    timers: { setTimeout: (fn) => due.push(fn), clearTimeout: () => {} },
    random: () => 0,
  });
  client.start();
  sockets[0].up();
  return { client, sockets, runTimers: () => due.splice(0).forEach((f) => f()) };
}

const info = { id: "c1", type: "claude", title: "Claude", cwd: ".", created: 1, offset: 0, oldestOffset: 0, attached: 1 } as const;

describe("Claude sessions on the workspace client", () => {
  it("re-attaches from the next event seq the pane needs", () => {
    const { client, sockets, runTimers } = setup();
    const got: ServerMessage[] = [];
    const sink: SessionSink = { reset() {}, write: (_b, done) => done(), message: (m) => got.push(m) };
    client.attach("c1", sink);
    expect(sockets[0].messages().at(-1)).toEqual({ type: "session.attach", id: "c1" });
    sockets[0].json({ type: "session.attached", id: "c1", mode: "replay", offset: 0, info });
    sockets[0].json({ type: "message.delta", id: "c1", events: [{ type: "system", seq: 0, raw: {} }] });
    expect(got).toHaveLength(1);
    client.advance("c1", 7);
    client.advance("c1", 3); // never backwards
    sockets[0].drop();
    runTimers();
    sockets[1].up();
    expect(sockets[1].messages()).toContainEqual({ type: "session.attach", id: "c1", since: 7 });
  });

  it("starts a session, and tells a refused start apart", async () => {
    const { client, sockets } = setup();
    const started = startClaude(client, { resume: "conv-1" });
    const sent = sockets[0].messages().at(-1) as { clientRef?: string };
    expect(sent).toMatchObject({ type: "claude.start", resume: "conv-1" });
    const ref = sent.clientRef;
    expect(ref).toBeTruthy();
    // sessions announced meanwhile (a terminal, another client's Claude) are not the answer
    sockets[0].json({ type: "session.created", id: "t1", workspace: "w", info: { ...info, id: "t1", type: "terminal" } });
    sockets[0].json({ type: "session.created", id: "c0", workspace: "w", info: { ...info, id: "c0" } });
    sockets[0].json({ type: "session.created", id: "c1", workspace: "w", info, clientRef: ref });
    await expect(started).resolves.toMatchObject({ id: "c1", type: "claude" });
    expect(resumedConversation("c1")).toBe("conv-1");

    const refused = startClaude(client);
    const ref2 = (sockets[0].messages().at(-1) as { clientRef?: string }).clientRef;
    expect(ref2).not.toBe(ref);
    // another request's error is not this one's
    sockets[0].json({ type: "error", code: "session_limit", message: "someone else's", clientRef: "other" });
    sockets[0].json({ type: "error", code: "claude_unavailable", message: "the Claude Code CLI was not found", clientRef: ref2 });
    await expect(refused).rejects.toEqual(new ProtocolError("claude_unavailable", "the Claude Code CLI was not found"));
  });

  it("lists past conversations", async () => {
    const { client, sockets } = setup();
    const list = listConversations(client);
    expect(sockets[0].messages().at(-1)).toEqual({ type: "claude.history" });
    const conversations = [{ id: "a", title: "Hi", cwd: ".", updated: 5, messages: 2 }];
    sockets[0].json({ type: "claude.history", conversations });
    await expect(list).resolves.toEqual(conversations);
  });
});
