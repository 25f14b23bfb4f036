import { describe, expect, it } from "vitest";
import { age, emptyInbox, inputText, items, pendingCount, sessionState, stateLabel, titleWith, type Inbox } from "../src/lib/approvals";
import { applyEvent, initialState } from "../src/lib/claude/conversation";
import { parseRoute, routeHash } from "../src/lib/route";

function status(ws: string, pending: Array<{ session: string; id: string; raised: number }>, state: "Idle" | "Working" | "AwaitingApproval" = "Idle") {
  return {
    workspace: ws,
    status: {
      version: 1,
      state,
      sessions: [{ id: "c1", title: "fix the tests", running: true, state, turns: 0, costUsd: 0 }],
      pending: pending.map((p) => ({ session: p.session, requestId: p.id, tool: "Bash", input: { command: `echo ${p.id}` }, raised: p.raised, deadline: p.raised + 600_000 })),
      pendingCount: pending.length,
      resolved: [],
      costUsd: 0,
    },
  };
}

describe("the inbox", () => {
  const inbox: Inbox = {
    workspaces: [status("demo", [{ session: "c1", id: "r2", raised: 20 }, { session: "c2", id: "r3", raised: 30 }], "AwaitingApproval"), status("other", [{ session: "c1", id: "r1", raised: 10 }])],
  };

  it("lists every request oldest first with its workspace and session title", () => {
    const list = items(inbox);
    expect(list.map((i) => [i.workspace, i.requestId])).toEqual([
      ["other", "r1"],
      ["demo", "r2"],
      ["demo", "r3"],
    ]);
    expect(list[1].sessionTitle).toBe("fix the tests");
    expect(list[2].sessionTitle).toBe("c2");
    expect(items(emptyInbox())).toEqual([]);
  });

  it("counts in all, per workspace and per session", () => {
    expect(pendingCount(inbox)).toBe(3);
    expect(pendingCount(inbox, "demo")).toBe(2);
    expect(pendingCount(inbox, "demo", "c2")).toBe(1);
    expect(pendingCount(inbox, "nope")).toBe(0);
    expect(sessionState(inbox, "demo", "c1")).toBe("AwaitingApproval");
    expect(sessionState(inbox, "demo", "zz")).toBeUndefined();
    expect(stateLabel("AwaitingApproval")).toBe("waiting for you");
  });

  it("puts the count in the title and says ages and inputs plainly", () => {
    expect(titleWith(2, "demo · Dispatch")).toBe("(2) demo · Dispatch");
    expect(titleWith(0, "Dispatch")).toBe("Dispatch");
    expect(age(0, 12_400)).toBe("12 s");
    expect(age(0, 185_000)).toBe("3 min");
    expect(age(0, 7_300_000)).toBe("2 h");
    expect(age(10, 0)).toBe("0 s");
    expect(inputText("Bash", { command: "ls -la" })).toBe("ls -la");
    expect(inputText("Write", { file_path: "a", content: "b" })).toBe('{\n  "file_path": "a",\n  "content": "b"\n}');
  });

  it("has a route of its own", () => {
    expect(parseRoute("#/inbox")).toEqual({ page: "inbox" });
    expect(routeHash({ page: "inbox" })).toBe("#/inbox");
  });

  it("shows the budget's warnings in the pane", () => {
    const s = initialState();
    const ev = (seq: number, level: string, text: string) => ({ type: "dispatch", subtype: "budget", seq, raw: { type: "dispatch", subtype: "budget", level, text } });
    applyEvent(s, ev(0, "warning", "Claude has used $0.80 of $1.00"));
    applyEvent(s, ev(1, "exhausted", "used up"));
    expect(s.items).toMatchObject([
      { kind: "notice", level: "warn", text: "Claude has used $0.80 of $1.00" },
      { kind: "notice", level: "error", text: "used up" },
    ]);
  });
});
