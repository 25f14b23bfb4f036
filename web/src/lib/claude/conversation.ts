// Turns a Claude session's event stream (`message.delta` events, see
// agent/src/claude/mod.rs "What a client sees") into a conversation model:
// prompts, assistant messages with streaming text and tool-use blocks paired
// with their results, permission requests and their fate, and usage and cost
// per turn. Pure and synchronous: the pane renders the state, the tests feed
// it recorded events.
//
// Every event carries `seq`, numbered from 0 without gaps by the agent. A
// reconnect or a replaced attachment replays events the client may already
// have, so an event whose seq is below `nextSeq` is dropped: nothing is shown
// twice.

import type { ClaudeEvent } from "../protocol";

export interface TextBlock {
  kind: "text" | "thinking";
  text: string;
  /** Set once the complete `assistant` message confirmed this block. */
  final: boolean;
}

export interface ToolResult {
  text: string;
  isError: boolean;
}

export type PermissionStatus = "pending" | "allowed" | "denied" | "cancelled";

export interface PermissionRequest {
  requestId: string;
  toolName: string;
  input: unknown;
  description?: string;
  toolUseId?: string;
  status: PermissionStatus;
  /** Why it stopped being pending: answered, remembered, timeout, cancelled. */
  reason?: string;
}

export interface ToolBlock {
  kind: "tool";
  toolUseId: string;
  name: string;
  /** The input once known (parsed); while streaming, what parsed so far or null. */
  input: unknown;
  /** Raw JSON while it streams in (`input_json_delta`). */
  partialJson: string;
  final: boolean;
  result?: ToolResult;
  /** The permission request this tool call raised, by request id. */
  permissionId?: string;
}

export type Block = TextBlock | ToolBlock;

export interface Usage {
  inputTokens: number;
  outputTokens: number;
  cacheReadTokens: number;
  cacheCreationTokens: number;
}

export type Item =
  | { kind: "user"; key: string; text: string; queued?: boolean }
  | { kind: "assistant"; key: string; blocks: Block[]; streaming: boolean; error?: boolean; model?: string }
  | {
      kind: "result";
      key: string;
      isError: boolean;
      subtype: string;
      text: string;
      durationMs?: number;
      numTurns?: number;
      usage?: Usage;
      /** This turn's cost in USD, when the CLI said (or it follows from the running total). */
      costUsd?: number;
      apiErrorStatus?: number;
      /** The user interrupted this turn. */
      interrupted?: boolean;
    }
  | { kind: "notice"; key: string; level: "info" | "warn" | "error"; text: string };

export interface ConversationState {
  /** Every event with a lower seq has been applied. */
  nextSeq: number;
  items: Item[];
  permissions: Record<string, PermissionRequest>;
  /** Request ids in the order they were raised. */
  permissionOrder: string[];
  turnRunning: boolean;
  conversationId?: string;
  model?: string;
  cwd?: string;
  permissionMode?: string;
  /** The CLI's running total for this process (`total_cost_usd` of the last result). */
  totalCostUsd?: number;
  lastUsage?: Usage;
  ended?: { exitCode?: number | null; reason?: string };
  /** The last lines the CLI wrote to stderr (shown when it crashes). */
  stderr: string[];
  /** Prompts sent from here and not yet echoed back by the CLI. */
  pendingPrompts: string[];
  /** Where in `items` each pending prompt was sent (a slash command is never echoed: it goes there). */
  pendingAt: number[];
  /** Past messages of a resumed conversation, loaded from its transcript. */
  earlier: Item[];
  /** Streaming bookkeeping: the message being streamed and its block slots by stream index. */
  streamMessage?: string;
  streamSlots: Record<number, number>;
  /** Counter for keys of items that have no id of their own. */
  keyCounter: number;
  /** The CLI reported an interruption; the turn's result follows. */
  interrupted: boolean;
}

const MAX_STDERR_LINES = 30;

export function initialState(): ConversationState {
  return {
    nextSeq: 0,
    items: [],
    permissions: {},
    permissionOrder: [],
    turnRunning: false,
    stderr: [],
    pendingPrompts: [],
    pendingAt: [],
    earlier: [],
    streamSlots: {},
    keyCounter: 0,
    interrupted: false,
  };
}

type Obj = Record<string, unknown>;

function obj(v: unknown): Obj | undefined {
  return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Obj) : undefined;
}
function str(v: unknown): string | undefined {
  return typeof v === "string" ? v : undefined;
}
function num(v: unknown): number | undefined {
  return typeof v === "number" && Number.isFinite(v) ? v : undefined;
}

function newKey(s: ConversationState, prefix: string): string {
  s.keyCounter += 1;
  return `${prefix}-${s.keyCounter}`;
}

function notice(s: ConversationState, level: "info" | "warn" | "error", text: string): void {
  s.items.push({ kind: "notice", key: newKey(s, "n"), level, text });
}

/** Text of a `user` message's content: a string, or its text blocks joined. */
function userText(content: unknown): string | null {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return null;
  const texts = content.map(obj).filter((b) => b?.type === "text").map((b) => str(b?.text) ?? "");
  return texts.length > 0 ? texts.join("\n") : null;
}

/** A tool_result block's content as text: a string or a list of text (and image) blocks. */
export function toolResultText(content: unknown): string {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) {
    return content
      .map((b) => {
        const o = obj(b);
        if (o?.type === "text") return str(o.text) ?? "";
        if (o?.type === "image") return "[image]";
        return JSON.stringify(b);
      })
      .join("\n");
  }
  return content === undefined || content === null ? "" : JSON.stringify(content);
}

function assistantItem(s: ConversationState, id: string, model?: string): Extract<Item, { kind: "assistant" }> {
  for (let i = s.items.length - 1; i >= 0; i--) {
    const it = s.items[i];
    if (it.kind === "assistant" && it.key === id) return it;
  }
  const it: Extract<Item, { kind: "assistant" }> = { kind: "assistant", key: id, blocks: [], streaming: false, model };
  s.items.push(it);
  return it;
}

function findTool(s: ConversationState, toolUseId: string): ToolBlock | undefined {
  for (let i = s.items.length - 1; i >= 0; i--) {
    const it = s.items[i];
    if (it.kind !== "assistant") continue;
    for (const b of it.blocks) if (b.kind === "tool" && b.toolUseId === toolUseId) return b;
  }
  return undefined;
}

/** Merges a complete message's content blocks into the item the deltas built (or a new one). */
function mergeAssistant(s: ConversationState, item: Extract<Item, { kind: "assistant" }>, content: unknown[]): void {
  for (const raw of content) {
    const c = obj(raw);
    if (!c) continue;
    const type = str(c.type);
    if (type === "tool_use") {
      const id = str(c.id) ?? newKey(s, "tool");
      const existing = item.blocks.find((b): b is ToolBlock => b.kind === "tool" && b.toolUseId === id);
      if (existing) {
        existing.input = c.input ?? existing.input;
        existing.name = str(c.name) ?? existing.name;
        existing.final = true;
      } else {
        item.blocks.push({ kind: "tool", toolUseId: id, name: str(c.name) ?? "tool", input: c.input ?? {}, partialJson: "", final: true });
      }
      const tool = existing ?? (item.blocks[item.blocks.length - 1] as ToolBlock);
      tool.permissionId ??= s.permissionOrder.find((rid) => s.permissions[rid].toolUseId === id);
    } else if (type === "text" || type === "thinking") {
      const text = type === "text" ? str(c.text) ?? "" : str(c.thinking) ?? "";
      const open = item.blocks.find((b): b is TextBlock => b.kind === type && !b.final);
      if (open) {
        open.text = text;
        open.final = true;
      } else item.blocks.push({ kind: type, text, final: true });
    }
  }
}

function readUsage(u: unknown): Usage | undefined {
  const o = obj(u);
  if (!o) return undefined;
  return {
    inputTokens: num(o.input_tokens) ?? 0,
    outputTokens: num(o.output_tokens) ?? 0,
    cacheReadTokens: num(o.cache_read_input_tokens) ?? 0,
    cacheCreationTokens: num(o.cache_creation_input_tokens) ?? 0,
  };
}

/** This turn's cost: the CLI's per-turn model usage when given, else the growth of its running total. */
function turnCost(raw: Obj, previousTotal: number | undefined): number | undefined {
  const since = obj(raw.model_usage_since_last_result);
  if (since) {
    let sum = 0;
    let any = false;
    for (const m of Object.values(since)) {
      const c = num(obj(m)?.costUSD);
      if (c !== undefined) {
        sum += c;
        any = true;
      }
    }
    if (any) return sum;
  }
  const total = num(raw.total_cost_usd);
  if (total === undefined) return undefined;
  return previousTotal !== undefined && total >= previousTotal ? total - previousTotal : total;
}

function applyStreamEvent(s: ConversationState, raw: Obj): void {
  const ev = obj(raw.event);
  if (!ev) return;
  const type = str(ev.type);
  s.turnRunning = true;
  if (type === "message_start") {
    const m = obj(ev.message);
    const id = str(m?.id) ?? str(raw.api_message_id) ?? newKey(s, "msg");
    const item = assistantItem(s, id, str(m?.model));
    item.streaming = true;
    s.streamMessage = id;
    s.streamSlots = {};
    return;
  }
  const id = str(raw.api_message_id) ?? s.streamMessage;
  if (!id) return;
  const item = assistantItem(s, id);
  const index = num(ev.index) ?? 0;
  if (type === "content_block_start") {
    const cb = obj(ev.content_block);
    const kind = str(cb?.type);
    if (kind === "text" || kind === "thinking") {
      item.blocks.push({ kind, text: str(cb?.text) ?? str(cb?.thinking) ?? "", final: false });
      s.streamSlots[index] = item.blocks.length - 1;
    } else if (kind === "tool_use") {
      const toolUseId = str(cb?.id) ?? newKey(s, "tool");
      let at = item.blocks.findIndex((b) => b.kind === "tool" && b.toolUseId === toolUseId);
      if (at < 0) {
        item.blocks.push({ kind: "tool", toolUseId, name: str(cb?.name) ?? "tool", input: null, partialJson: "", final: false });
        at = item.blocks.length - 1;
      }
      s.streamSlots[index] = at;
    }
  } else if (type === "content_block_delta") {
    const d = obj(ev.delta);
    const block = item.blocks[s.streamSlots[index] ?? -1];
    if (!d || !block || block.final) return;
    if (block.kind === "tool" && d.type === "input_json_delta") {
      block.partialJson += str(d.partial_json) ?? "";
      try {
        block.input = JSON.parse(block.partialJson);
      } catch {
        // incomplete JSON: keep what parsed last
      }
    } else if (block.kind === "text" && d.type === "text_delta") block.text += str(d.text) ?? "";
    else if (block.kind === "thinking" && d.type === "thinking_delta") block.text += str(d.thinking) ?? "";
  } else if (type === "message_stop") {
    item.streaming = false;
    s.streamMessage = undefined;
  }
}

function applyUser(s: ConversationState, raw: Obj): void {
  if (raw.isMeta === true) return;
  const message = obj(raw.message);
  const content = message?.content;
  if (Array.isArray(content) && content.some((b) => obj(b)?.type === "tool_result")) {
    for (const b of content) {
      const o = obj(b);
      if (o?.type !== "tool_result") continue;
      const id = str(o.tool_use_id);
      const tool = id ? findTool(s, id) : undefined;
      const result = { text: toolResultText(o.content), isError: o.is_error === true };
      if (tool) tool.result = result;
      else notice(s, result.isError ? "error" : "info", `Tool result: ${result.text}`);
    }
    return;
  }
  const text = userText(content);
  if (text === null) return;
  // What a local command printed (a model change, a slash command): the CLI's words, not the user's.
  const local = /^\s*<local-command-(stdout|stderr)>([\s\S]*)<\/local-command-\1>\s*$/.exec(text);
  if (local) {
    if (local[2].trim()) notice(s, local[1] === "stderr" ? "warn" : "info", local[2].trim());
    return;
  }
  // The CLI's own note that the user interrupted, not something the user typed.
  if (text.startsWith("[Request interrupted by user")) {
    s.interrupted = true;
    notice(s, "info", "Interrupted.");
    return;
  }
  const i = s.pendingPrompts.indexOf(text);
  if (i >= 0) {
    s.pendingPrompts.splice(i, 1);
    s.pendingAt.splice(i, 1);
  }
  s.items.push({ kind: "user", key: str(raw.uuid) ?? newKey(s, "u"), text });
}

/**
 * The CLI answers a slash command (`/model`, `/cost`) without echoing it:
 * at the end of its turn, the command goes into the conversation where it
 * was sent, above its answer, instead of staying queued below everything.
 */
function settleSlashCommand(s: ConversationState): void {
  if (s.pendingPrompts.length === 0 || !s.pendingPrompts[0].trimStart().startsWith("/")) return;
  const text = s.pendingPrompts.shift() ?? "";
  const at = Math.min(s.pendingAt.shift() ?? s.items.length, s.items.length);
  s.items.splice(at, 0, { kind: "user", key: newKey(s, "u"), text });
}

function applyResult(s: ConversationState, raw: Obj, subtype: string): void {
  settleSlashCommand(s);
  const interrupted = s.interrupted;
  s.interrupted = false;
  // An interrupted turn ends as error_during_execution; the notice already said why.
  const isError = !interrupted && (raw.is_error === true || (subtype !== "success" && subtype !== ""));
  const total = num(raw.total_cost_usd);
  const usage = readUsage(raw.usage);
  let text = interrupted ? "" : str(raw.result) ?? (Array.isArray(raw.errors) ? raw.errors.map(String).join("\n") : "");
  // An API failure arrives first as a synthetic assistant message with the same text: say it once.
  const last = s.items[s.items.length - 1];
  if (isError && last?.kind === "assistant" && last.error && last.blocks.some((b) => b.kind === "text" && b.text.trim() === text.trim())) text = "";
  s.items.push({
    kind: "result",
    key: str(raw.uuid) ?? newKey(s, "r"),
    isError,
    subtype,
    text,
    durationMs: num(raw.duration_ms),
    numTurns: num(raw.num_turns),
    usage,
    costUsd: turnCost(raw, s.totalCostUsd),
    apiErrorStatus: num(raw.api_error_status),
    interrupted,
  });
  if (total !== undefined) s.totalCostUsd = total;
  if (usage) s.lastUsage = usage;
  s.turnRunning = false;
  // A turn that ended leaves no message streaming.
  for (const it of s.items) if (it.kind === "assistant") it.streaming = false;
}

function settlePermission(s: ConversationState, requestId: string, status: PermissionStatus, reason?: string): void {
  const p = s.permissions[requestId];
  if (!p || p.status !== "pending") return;
  p.status = status;
  p.reason = reason;
}

/** Applies one event. Events already applied (seq below `nextSeq`) change nothing. */
export function applyEvent(s: ConversationState, e: ClaudeEvent): void {
  if (e.seq < s.nextSeq) return;
  s.nextSeq = e.seq + 1;
  const raw = obj(e.raw) ?? {};
  // Sub-agent traffic (a Task tool's own conversation) stays out of the main thread.
  if (raw.parent_tool_use_id !== undefined && raw.parent_tool_use_id !== null) return;
  const subtype = e.subtype ?? str(raw.subtype) ?? "";
  switch (e.type) {
    case "system":
      if (subtype === "init") {
        s.conversationId = e.sessionId ?? str(raw.session_id) ?? s.conversationId;
        s.model = str(raw.model) ?? s.model;
        s.cwd = str(raw.cwd) ?? s.cwd;
        s.permissionMode = str(raw.permissionMode) ?? s.permissionMode;
      } else if (subtype === "status") {
        if (raw.status === "requesting") s.turnRunning = true;
      } else if (subtype === "api_retry") {
        const status = num(raw.error_status);
        const delay = num(raw.retry_delay_ms);
        notice(
          s,
          "warn",
          `API request failed${status ? ` (${status})` : ""}; retrying${raw.attempt !== undefined ? ` (attempt ${raw.attempt}${raw.max_retries !== undefined ? ` of ${raw.max_retries}` : ""})` : ""}${delay !== undefined ? ` in ${(delay / 1000).toFixed(1)} s` : ""}`,
        );
      }
      break;
    case "stream_event":
      applyStreamEvent(s, raw);
      break;
    case "assistant": {
      const m = obj(raw.message);
      const id = str(m?.id) ?? newKey(s, "msg");
      const item = assistantItem(s, id, str(m?.model));
      if (Array.isArray(m?.content)) mergeAssistant(s, item, m.content);
      if (raw.error !== undefined && raw.error !== null) item.error = true;
      break;
    }
    case "user":
      applyUser(s, raw);
      break;
    case "result":
      applyResult(s, raw, subtype);
      break;
    case "control_request": {
      const req = obj(raw.request);
      if (subtype !== "can_use_tool" || !e.requestId || !req) break;
      if (s.permissions[e.requestId]) break;
      const p: PermissionRequest = {
        requestId: e.requestId,
        toolName: str(req.display_name) ?? str(req.tool_name) ?? "tool",
        input: req.input ?? {},
        description: str(req.description),
        toolUseId: str(req.tool_use_id),
        status: "pending",
      };
      s.permissions[e.requestId] = p;
      s.permissionOrder.push(e.requestId);
      const tool = p.toolUseId ? findTool(s, p.toolUseId) : undefined;
      if (tool) tool.permissionId = e.requestId;
      break;
    }
    case "control_response": {
      // The CLI confirms a change made in a running session (claude.configure).
      const r = obj(raw.response);
      const mode = str(obj(r?.response)?.mode);
      if (r?.subtype === "success" && mode) s.permissionMode = mode;
      else if (r?.subtype === "error" && str(r.request_id)?.startsWith("dispatch-mode")) {
        notice(s, "warn", `The permission mode was not changed: ${str(r.error) ?? "refused"}.`);
      }
      break;
    }
    case "control_cancel_request": {
      const rid = e.requestId ?? str(raw.request_id);
      if (rid) settlePermission(s, rid, "cancelled", "cancelled");
      break;
    }
    case "dispatch":
      if (subtype === "permission_resolved") {
        const rid = e.requestId ?? str(raw.request_id);
        if (rid) permissionResolved(s, rid, raw.allowed === true, str(raw.reason) ?? "answered");
      } else if (subtype === "stderr") {
        const text = str(raw.text);
        if (text) {
          s.stderr.push(...text.split("\n").filter((l) => l.trim() !== ""));
          if (s.stderr.length > MAX_STDERR_LINES) s.stderr.splice(0, s.stderr.length - MAX_STDERR_LINES);
        }
      } else if (subtype === "line_dropped") {
        notice(s, "warn", `The CLI printed a line too large to show (${num(raw.bytes) ?? "?"} bytes); it was left out.`);
      } else if (subtype === "budget") {
        // The agent's budget crossed 80 % (warning) or 100 % (new turns refused).
        const text = str(raw.text);
        if (text) notice(s, raw.level === "exhausted" ? "error" : "warn", text);
      }
      break;
    default:
      break;
  }
}

export function applyEvents(s: ConversationState, events: ClaudeEvent[]): void {
  for (const e of events) applyEvent(s, e);
}

/** `claude.permission.resolved` (or its `dispatch/permission_resolved` event). */
export function permissionResolved(s: ConversationState, requestId: string, allowed: boolean, reason: string): void {
  const status: PermissionStatus = reason === "cancelled" ? "cancelled" : allowed ? "allowed" : "denied";
  settlePermission(s, requestId, status, reason);
}

/** A prompt was sent from this client: shown as queued until the CLI echoes it. */
export function promptSent(s: ConversationState, text: string): void {
  s.pendingPrompts.push(text);
  s.pendingAt.push(s.items.length);
  s.turnRunning = true;
}

/** `session.attached`: tell when older events were lost. */
export function attached(s: ConversationState, offset: number, lostBefore?: number): void {
  // Asked for events that are gone, or a fresh pane whose replay starts past the first event.
  const gone = lostBefore ?? (s.nextSeq === 0 && offset > 0 ? offset : undefined);
  if (gone !== undefined && s.nextSeq < gone) {
    notice(s, "warn", `Earlier events of this session are no longer kept (before #${gone}).`);
  }
  if (offset > s.nextSeq) s.nextSeq = offset;
}

export function sessionEnded(s: ConversationState, exitCode?: number | null, reason?: string): void {
  s.ended = { exitCode, reason };
  s.turnRunning = false;
  s.streamMessage = undefined;
  for (const it of s.items) if (it.kind === "assistant") it.streaming = false;
  for (const rid of s.permissionOrder) settlePermission(s, rid, "cancelled", "session ended");
  s.pendingPrompts = [];
  s.pendingAt = [];
}

/** The prompt a failed turn answered, to send again (Retry); undefined when none. */
export function promptBefore(items: Item[], resultKey: string): string | undefined {
  const i = items.findIndex((it) => it.key === resultKey);
  for (let j = i - 1; j >= 0; j--) {
    const it = items[j];
    if (it.kind === "user") return it.text;
    if (it.kind === "result") return undefined;
  }
  return undefined;
}

/** Permission requests still waiting for an answer, oldest first. */
export function pendingPermissions(s: ConversationState): PermissionRequest[] {
  return s.permissionOrder.map((id) => s.permissions[id]).filter((p) => p.status === "pending");
}

/**
 * Items of a transcript (`claude.transcript` entries: the CLI's JSONL lines
 * of type user, assistant, system), for showing a past conversation.
 * `before` (ms) keeps only entries written before then: a resumed session
 * shows its earlier part from the transcript and the rest from its events.
 */
export function transcriptItems(entries: unknown[], before?: number): Item[] {
  const s = initialState();
  let seq = 0;
  for (const entry of entries) {
    const o = obj(entry);
    if (!o) continue;
    if (before !== undefined) {
      const t = Date.parse(str(o.timestamp) ?? "");
      if (!Number.isFinite(t) || t >= before) continue;
    }
    const type = str(o.type);
    if (type === "user" || type === "assistant") applyEvent(s, { type, seq: seq++, raw: o });
  }
  return s.items;
}

/** A short line saying what a tool call does (the command, the file, the pattern). */
export function toolSummary(name: string, input: unknown): string {
  const i = obj(input);
  if (!i) return "";
  for (const k of ["command", "file_path", "path", "pattern", "url", "query", "description", "prompt"]) {
    const v = str(i[k]);
    if (v) return v.length > 200 ? `${v.slice(0, 200)}…` : v;
  }
  return name === "TodoWrite" ? "update the to-do list" : "";
}

export function formatCost(usd: number): string {
  return usd < 0.01 ? `$${usd.toFixed(4)}` : `$${usd.toFixed(2)}`;
}

export function formatTokens(n: number): string {
  return n >= 10_000 ? `${(n / 1000).toFixed(1)}k` : n.toLocaleString("en-US");
}
