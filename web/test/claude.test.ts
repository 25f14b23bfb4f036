import { describe, expect, it } from "vitest";
import {
  applyEvent,
  applyEvents,
  attached,
  initialState,
  pendingPermissions,
  permissionResolved,
  promptBefore,
  promptSent,
  sessionEnded,
  toolSummary,
  transcriptItems,
  type ConversationState,
  type Item,
  type ToolBlock,
} from "../src/lib/claude/conversation";
import type { ClaudeEvent } from "../src/lib/protocol";
// Events recorded from the real Claude Code CLI driven by the agent against
// the scripted model server: a text answer with a code block, then a Bash
// tool call that asked for permission, was allowed, ran, and a closing text.
import recorded from "./fixtures/claude-events.json";

const events = recorded as ClaudeEvent[];

type Assistant = Extract<Item, { kind: "assistant" }>;

function assistants(s: ConversationState): Assistant[] {
  return s.items.filter((i): i is Assistant => i.kind === "assistant");
}

function texts(s: ConversationState): string[] {
  return assistants(s).flatMap((a) => a.blocks.filter((b) => b.kind === "text").map((b) => (b as { text: string }).text));
}

function tools(s: ConversationState): ToolBlock[] {
  return assistants(s).flatMap((a) => a.blocks.filter((b): b is ToolBlock => b.kind === "tool"));
}

/** The recorded events up to (not including) the first one matching `stop`. */
function until(stop: (e: ClaudeEvent) => boolean): ClaudeEvent[] {
  const i = events.findIndex(stop);
  return i < 0 ? events : events.slice(0, i);
}

let seq = 1000;
function ev(type: string, raw: Record<string, unknown>, extra: Partial<ClaudeEvent> = {}): ClaudeEvent {
  return { type, seq: seq++, raw: { type, ...raw }, ...extra };
}

describe("Claude conversation reducer", () => {
  it("builds streaming text from deltas before the complete message arrives", () => {
    const s = initialState();
    // up to the first complete `assistant` event: only deltas so far
    applyEvents(s, until((e) => e.type === "assistant"));
    const [a] = assistants(s);
    expect(a.streaming).toBe(true);
    expect(a.blocks).toHaveLength(1);
    expect(a.blocks[0]).toMatchObject({ kind: "text", final: false });
    expect(texts(s)[0]).toBe("Hello! Here is some **bold** and code:\n\n```rust\nfn main() {}\n```\n");
    expect(s.turnRunning).toBe(true);
    expect(s.items[0]).toMatchObject({ kind: "user", text: "Say hello" });
    expect(s.conversationId).toBe("d2aade3e-6e72-4ad8-a412-65d9fe3dbb88");
    expect(s.model).toBe("claude-opus-5-5");
  });

  it("replaces the deltas by the complete message, without doubling the text", () => {
    const s = initialState();
    applyEvents(s, until((e) => e.type === "result"));
    const [a] = assistants(s);
    expect(a.blocks).toHaveLength(1);
    expect(a.blocks[0]).toMatchObject({ kind: "text", final: true });
    expect(a.streaming).toBe(false);
  });

  it("pairs a tool_use with its tool_result and its permission request", () => {
    const s = initialState();
    applyEvents(s, until((e) => e.type === "control_request"));
    let [tool] = tools(s);
    expect(tool).toMatchObject({ name: "Bash", toolUseId: "toolu_scripted_1" });
    expect(tool.input).toEqual({ command: "touch made.txt", description: "Make a file" });
    expect(tool.result).toBeUndefined();

    applyEvents(s, events);
    [tool] = tools(s);
    expect(tool.result).toEqual({ text: "(Bash completed with no output)", isError: false });
    expect(tool.permissionId).toBe("72e05035-178f-48d6-8b10-5d6ea57ce377");
    expect(s.permissions[tool.permissionId!].status).toBe("allowed");
    expect(texts(s)).toEqual(["Hello! Here is some **bold** and code:\n\n```rust\nfn main() {}\n```\n", "Done."]);
  });

  it("streams tool input JSON as it arrives", () => {
    const s = initialState();
    applyEvents(s, until((e) => e.type === "stream_event" && JSON.stringify(e.raw).includes('on\\":\\"Make a file')));
    const [tool] = tools(s);
    expect(tool.final).toBe(false);
    expect(tool.partialJson).toBe('{"command":"touch made.txt","descripti');
    expect(tool.input).toBeNull();
  });

  it("carries a permission request from pending to resolved", () => {
    const s = initialState();
    applyEvents(s, until((e) => e.type === "dispatch"));
    const pending = pendingPermissions(s);
    expect(pending).toHaveLength(1);
    expect(pending[0]).toMatchObject({ toolName: "Bash", status: "pending", input: { command: "touch made.txt", description: "Make a file" } });
    // the server's claude.permission.resolved and the logged event agree; either settles it once
    permissionResolved(s, pending[0].requestId, true, "answered");
    expect(pendingPermissions(s)).toHaveLength(0);
    applyEvents(s, events);
    expect(s.permissions[pending[0].requestId]).toMatchObject({ status: "allowed", reason: "answered" });
  });

  it("denies, cancels, and cancels what is pending when the session ends", () => {
    const s = initialState();
    const req = (id: string) => ev("control_request", { request: { subtype: "can_use_tool", tool_name: "Bash", input: { command: "rm -rf x" } } }, { subtype: "can_use_tool", requestId: id });
    applyEvents(s, [req("r1"), req("r2"), req("r3")]);
    expect(pendingPermissions(s).map((p) => p.requestId)).toEqual(["r1", "r2", "r3"]);
    permissionResolved(s, "r1", false, "answered");
    applyEvent(s, ev("control_cancel_request", { request_id: "r2" }, { requestId: "r2" }));
    expect(s.permissions.r1.status).toBe("denied");
    expect(s.permissions.r2.status).toBe("cancelled");
    expect(pendingPermissions(s).map((p) => p.requestId)).toEqual(["r3"]);
    sessionEnded(s, 1, "crashed");
    expect(s.permissions.r3.status).toBe("cancelled");
    expect(s.turnRunning).toBe(false);
    // a late answer does not revive a settled request
    permissionResolved(s, "r1", true, "answered");
    expect(s.permissions.r1.status).toBe("denied");
  });

  it("drops events it already has (dedupe by seq): a replay after reconnect shows nothing twice", () => {
    const once = initialState();
    applyEvents(once, events);
    const twice = initialState();
    const half = Math.floor(events.length / 2);
    applyEvents(twice, events.slice(0, half));
    // the reconnect replays from an earlier seq, overlapping what arrived
    applyEvents(twice, events.slice(5));
    applyEvents(twice, events);
    expect(twice.items).toEqual(once.items);
    expect(twice.nextSeq).toBe(events[events.length - 1].seq + 1);
    expect(twice.items.filter((i) => i.kind === "user")).toHaveLength(2);
    expect(assistants(twice)).toHaveLength(3);
  });

  it("notes lost events and skips ahead on attach", () => {
    const s = initialState();
    attached(s, 40, 40);
    expect(s.nextSeq).toBe(40);
    expect(s.items[0]).toMatchObject({ kind: "notice", level: "warn" });
    applyEvents(s, events);
    expect(s.items.filter((i) => i.kind === "user")).toHaveLength(0);
    // a fresh pane whose replay starts late says so too; a reconnect that continues does not
    const fresh = initialState();
    attached(fresh, 12);
    expect(fresh.items).toHaveLength(1);
    const going = initialState();
    applyEvents(going, events.slice(0, 5));
    attached(going, 5);
    expect(going.items.filter((i) => i.kind === "notice")).toHaveLength(0);
  });

  it("reports usage and cost from result events", () => {
    const s = initialState();
    applyEvents(s, events);
    const results = s.items.filter((i): i is Extract<Item, { kind: "result" }> => i.kind === "result");
    expect(results).toHaveLength(2);
    expect(results[1]).toMatchObject({ isError: false, numTurns: 2, text: "Done." });
    expect(results[1].usage).toEqual({ inputTokens: 27031, outputTokens: 16, cacheReadTokens: 0, cacheCreationTokens: 0 });
    expect(results[1].costUsd).toBeCloseTo(0.108444, 6);
    expect(s.totalCostUsd).toBeCloseTo(0.162536, 6);
    expect(s.turnRunning).toBe(false);
  });

  it("shows API errors: an error result and a synthetic assistant message", () => {
    const s = initialState();
    applyEvent(s, ev("assistant", { error: "server_error", message: { id: "m-err", model: "<synthetic>", content: [{ type: "text", text: "API Error: 529 overloaded" }] } }));
    applyEvent(s, ev("result", { is_error: true, result: "API Error: 529 overloaded", api_error_status: 529 }, { subtype: "success" }));
    expect(assistants(s)[0].error).toBe(true);
    // said once: the result does not repeat the message's text
    expect(s.items[1]).toMatchObject({ kind: "result", isError: true, apiErrorStatus: 529, text: "" });
    applyEvent(s, ev("result", { is_error: true, result: "Reached the maximum number of turns" }, { subtype: "error_max_turns" }));
    expect(s.items[2]).toMatchObject({ isError: true, text: "Reached the maximum number of turns" });
  });

  it("shows an interruption as such, not as a prompt or an error", () => {
    const s = initialState();
    applyEvent(s, ev("user", { message: { role: "user", content: [{ type: "text", text: "[Request interrupted by user]" }] } }));
    applyEvent(s, ev("result", { is_error: true, result: "[ede_diagnostic] result_type=user", total_cost_usd: 0.5 }, { subtype: "error_during_execution" }));
    expect(s.items.map((i) => i.kind)).toEqual(["notice", "result"]);
    expect(s.items[1]).toMatchObject({ isError: false, interrupted: true, text: "" });
    // the next turn's failure is an error again
    applyEvent(s, ev("result", { is_error: true, result: "API Error: 500" }, { subtype: "success" }));
    expect(s.items[2]).toMatchObject({ isError: true, interrupted: false });
  });

  it("keeps a sent prompt queued until the CLI echoes it", () => {
    const s = initialState();
    promptSent(s, "Say hello");
    expect(s.pendingPrompts).toEqual(["Say hello"]);
    applyEvents(s, events.slice(0, 3));
    expect(s.pendingPrompts).toEqual([]);
    expect(s.items.filter((i) => i.kind === "user")).toHaveLength(1);
  });

  it("puts a slash command, which the CLI never echoes, above its answer once the turn ends", () => {
    const s = initialState();
    applyEvent(s, ev("assistant", { message: { id: "m0", content: [{ type: "text", text: "Earlier answer" }] } }));
    promptSent(s, "/model");
    // the CLI's reply to /model: a synthetic message and a result, no user echo
    applyEvent(s, ev("assistant", { message: { id: "m1", model: "<synthetic>", content: [{ type: "text", text: "Usage: /model <name>." }] } }));
    applyEvent(s, ev("result", { is_error: false, result: "Usage: /model <name>." }, { subtype: "success" }));
    expect(s.pendingPrompts).toEqual([]);
    expect(s.items.map((i) => i.kind)).toEqual(["assistant", "user", "assistant", "result"]);
    expect(s.items[1]).toMatchObject({ kind: "user", text: "/model" });
  });

  it("follows the permission mode the CLI confirms, and says when it refused", () => {
    const s = initialState();
    applyEvent(s, ev("system", { session_id: "c", model: "m", permissionMode: "default" }, { subtype: "init" }));
    applyEvent(s, ev("control_response", { response: { subtype: "success", request_id: "dispatch-mode-1", response: { mode: "plan" } } }));
    expect(s.permissionMode).toBe("plan");
    applyEvent(s, ev("control_response", { response: { subtype: "error", request_id: "dispatch-mode-2", error: "bypass_disabled" } }));
    expect(s.permissionMode).toBe("plan");
    expect(s.items.at(-1)).toMatchObject({ kind: "notice", level: "warn" });
  });

  it("shows what a local command printed as a notice, not as the user's words", () => {
    const s = initialState();
    applyEvent(s, ev("user", { message: { role: "user", content: "<local-command-stdout>Set model to `haiku`</local-command-stdout>" } }));
    applyEvent(s, ev("user", { message: { role: "user", content: "<local-command-stderr>bad model</local-command-stderr>" } }));
    expect(s.items).toMatchObject([
      { kind: "notice", level: "info", text: "Set model to `haiku`" },
      { kind: "notice", level: "warn", text: "bad model" },
    ]);
  });

  it("finds the prompt a failed turn answered, for Retry", () => {
    const s = initialState();
    applyEvent(s, ev("user", { message: { role: "user", content: "Are you there?" } }));
    applyEvent(s, ev("result", { is_error: true, result: "API Error: 529", api_error_status: 529 }, { subtype: "success" }));
    const failed = s.items.at(-1)!;
    expect(promptBefore(s.items, failed.key)).toBe("Are you there?");
    applyEvent(s, ev("result", { is_error: true, result: "again" }, { subtype: "success" }));
    expect(promptBefore(s.items, s.items.at(-1)!.key)).toBeUndefined();
  });

  it("hydrates a transcript, keeping only what came before a time", () => {
    const entries = [
      { type: "user", timestamp: "2026-01-01T00:00:00Z", uuid: "u1", message: { role: "user", content: "First" } },
      { type: "assistant", timestamp: "2026-01-01T00:00:01Z", uuid: "a1", message: { id: "m1", role: "assistant", content: [{ type: "text", text: "One" }] } },
      { type: "assistant", timestamp: "2026-01-01T00:00:02Z", uuid: "a2", message: { id: "m1", role: "assistant", content: [{ type: "tool_use", id: "t1", name: "Read", input: { file_path: "a.txt" } }] } },
      { type: "user", timestamp: "2026-01-01T00:00:03Z", uuid: "u2", message: { role: "user", content: [{ type: "tool_result", tool_use_id: "t1", content: [{ type: "text", text: "contents" }] }] } },
      { type: "user", isMeta: true, timestamp: "2026-01-01T00:00:03Z", uuid: "u3", message: { role: "user", content: "<caveat>" } },
      { type: "user", timestamp: "2026-01-02T00:00:00Z", uuid: "u4", message: { role: "user", content: "Later" } },
    ];
    const all = transcriptItems(entries);
    expect(all.map((i) => i.kind)).toEqual(["user", "assistant", "user"]);
    const a = all[1] as Assistant;
    expect(a.blocks.map((b) => b.kind)).toEqual(["text", "tool"]);
    expect((a.blocks[1] as ToolBlock).result).toEqual({ text: "contents", isError: false });
    const before = transcriptItems(entries, Date.parse("2026-01-01T12:00:00Z"));
    expect(before.map((i) => i.kind)).toEqual(["user", "assistant"]);
  });

  it("keeps sub-agent traffic out of the main thread and collects stderr", () => {
    const s = initialState();
    applyEvent(s, ev("assistant", { parent_tool_use_id: "t9", message: { id: "sub", content: [{ type: "text", text: "inner" }] } }));
    applyEvent(s, ev("dispatch", { text: "warning: one\nwarning: two\n" }, { subtype: "stderr" }));
    expect(s.items).toHaveLength(0);
    expect(s.stderr).toEqual(["warning: one", "warning: two"]);
  });

  it("summarises tool input", () => {
    expect(toolSummary("Bash", { command: "ls -la" })).toBe("ls -la");
    expect(toolSummary("Read", { file_path: "/w/a.txt" })).toBe("/w/a.txt");
    expect(toolSummary("X", null)).toBe("");
  });
});
