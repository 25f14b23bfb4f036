// Claude's permission requests across the user's workspaces, as the gateway's
// inbox reports them (GET /api/approvals, SSE /api/approvals/events). Pure
// helpers over the generated types; the live store is approvals.svelte.ts.

import type { ClaudeState, Inbox, PendingApproval } from "./generated/protocol";

export type { ApprovalAnswer, ClaudeState, ClaudeStatus, Inbox, PendingApproval } from "./generated/protocol";

/** A pending request with the workspace it waits in. */
export interface InboxItem extends PendingApproval {
  workspace: string;
  /** The session's title, when the status lists it. */
  sessionTitle: string;
}

export const emptyInbox = (): Inbox => ({ workspaces: [] });

/** Every pending request, oldest first. */
export function items(inbox: Inbox): InboxItem[] {
  const out: InboxItem[] = [];
  for (const w of inbox.workspaces) {
    for (const p of w.status.pending) {
      const s = w.status.sessions.find((x) => x.id === p.session);
      out.push({ ...p, workspace: w.workspace, sessionTitle: s?.title ?? p.session });
    }
  }
  return out.sort((a, b) => a.raised - b.raised);
}

/** How many requests wait: in all, or in one workspace, or one session. */
export function pendingCount(inbox: Inbox, workspace?: string, session?: string): number {
  let n = 0;
  for (const w of inbox.workspaces) {
    if (workspace !== undefined && w.workspace !== workspace) continue;
    if (session === undefined) n += w.status.pendingCount;
    else n += w.status.pending.filter((p) => p.session === session).length;
  }
  return n;
}

/** A Claude session's state, when its workspace is watched and it runs. */
export function sessionState(inbox: Inbox, workspace: string, session: string): ClaudeState | undefined {
  return inbox.workspaces.find((w) => w.workspace === workspace)?.status.sessions.find((s) => s.id === session)?.state;
}

export function stateLabel(s: ClaudeState): string {
  switch (s) {
    case "AwaitingApproval":
      return "waiting for you";
    case "Working":
      return "working";
    case "Idle":
      return "idle";
  }
}

/** The page title with the count in front: "(2) demo · Dispatch". */
export function titleWith(count: number, base: string): string {
  return count > 0 ? `(${count}) ${base}` : base;
}

/** "12 s", "3 min", "2 h" since `from`. */
export function age(from: number, now: number): string {
  const s = Math.max(0, Math.floor((now - from) / 1000));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  return `${Math.floor(s / 3600)} h`;
}

/** The tool input a person reads: the command for Bash, else JSON. */
export function inputText(tool: string, input: unknown): string {
  if (tool === "Bash" && input && typeof input === "object" && typeof (input as { command?: unknown }).command === "string") {
    return (input as { command: string }).command;
  }
  return JSON.stringify(input, null, 2) ?? "";
}
