// The workspace model (lib/workspace.svelte.ts) driven as the view drives it,
// over a real WorkspaceClient on a fake socket the test plays the agent on.
import { describe, expect, it } from "vitest";
import { ApiError } from "../src/lib/api";
import { WorkspaceClient } from "../src/lib/client";
import type { SessionInfo } from "../src/lib/protocol";
import type { DispatchDebug } from "../src/lib/testhook";
import { FOREGROUND_POLL_MS, WorkspaceModel, type WorkspaceEnv } from "../src/lib/workspace.svelte";
import { FakeSocket, FakeTimers } from "./fakes";

/** Lets every promise that can settle now settle (setImmediate runs after the microtasks). */
const settled = () => new Promise<void>((r) => setImmediate(r));

function info(id: string, more: Partial<SessionInfo> = {}): SessionInfo {
  return { id, type: "terminal", title: "sh", cwd: ".", created: 0, offset: 0, oldestOffset: 0, attached: 0, ...more };
}

interface Options {
  wanted?: string;
  fresh?: boolean;
  openWorkspace?: () => Promise<unknown>;
  me?: () => Promise<unknown>;
  store?: Map<string, string>;
}

function setup(o: Options = {}) {
  const sockets: FakeSocket[] = [];
  const timers = new FakeTimers();
  timers.now = 1_000_000;
  const notes: string[] = [];
  const urls: (string | null)[] = [];
  const store = o.store ?? new Map<string, string>();
  const hook: DispatchDebug = { panes: new Map(), activeSession: null, states: [], listed: false };
  let unauthorized = 0;
  let visible = true;
  const env: WorkspaceEnv = {
    openWorkspace: o.openWorkspace ?? (async () => ({})),
    me: o.me ?? (async () => ({})),
    createClient: () =>
      new WorkspaceClient({
        url: "ws://h/api/workspaces/w/ws",
        createSocket: (u) => {
          const s = new FakeSocket(u);
          sockets.push(s);
          return s;
        },
        timers,
        random: () => 0.5,
        now: () => timers.now,
        backoff: { baseMs: 100, capMs: 1000, factor: 2, jitter: 0.5 },
      }),
    storage: { getItem: (k) => store.get(k) ?? null, setItem: (k, v) => void store.set(k, v) },
    notify: (text) => void notes.push(text),
    onUnauthorized: () => void unauthorized++,
    showSession: (id) => void urls.push(id),
    estimateSize: () => ({ cols: 100, rows: 30 }),
    visible: () => visible,
    now: () => timers.now,
    hook,
  };
  const ws = new WorkspaceModel("w", env, o.wanted, o.fresh);
  const socket = () => sockets[sockets.length - 1];
  const sent = (type: string) => socket().messages().filter((m) => m.type === type);
  return {
    ws,
    timers,
    notes,
    urls,
    store,
    hook,
    sockets,
    socket,
    sent,
    unauthorized: () => unauthorized,
    hide: () => void (visible = false),
    /** Opens the workspace, connects, and answers the first session list. */
    async connect(sessions: SessionInfo[]) {
      await ws.open();
      socket().open();
      socket().hello();
      socket().json({ type: "session.list", sessions });
      await settled();
    },
  };
}

describe("WorkspaceModel", () => {
  it("opens a tab per running session, oldest first, with the one the URL names active", async () => {
    const t = setup({ wanted: "t3" });
    expect(t.ws.status).toBe("opening");
    await t.connect([info("t1", { created: 2 }), info("t2", { created: 1, ended: 5, exitCode: 0 }), info("t3", { created: 3 })]);
    expect(t.ws.status).toBe("ready");
    expect(t.ws.conn.state).toBe("open");
    expect(t.ws.sessions.map((s) => s.id)).toEqual(["t2", "t1", "t3"]);
    expect(t.ws.tabs.map((x) => x.id)).toEqual(["t1", "t3"]);
    expect(t.ws.activeId).toBe("t3");
    expect(t.ws.activeInfo?.id).toBe("t3");
    expect(t.ws.endedCount).toBe(1);
    expect(t.urls.at(-1)).toBe("t3");
    expect(t.ws.listed).toBe(true);
    expect(t.hook.listed).toBe(true);
    expect(t.hook.states).toEqual(["connecting", "open"]);
  });

  it("makes the first tab active when the URL names none, and starts nothing in a workspace that is not new", async () => {
    const t = setup();
    await t.connect([info("a", { created: 1 }), info("b", { created: 2 })]);
    expect(t.ws.activeId).toBe("a");
    expect(t.sent("terminal.start")).toEqual([]);
  });

  it("starts a terminal in a new, empty workspace and opens it", async () => {
    const t = setup({ fresh: true });
    await t.connect([]);
    const [start] = t.sent("terminal.start");
    expect(start).toMatchObject({ cols: 100, rows: 30 });
    expect(t.ws.starting).toBe(true);
    t.socket().json({ type: "session.created", id: "n1", workspace: "w", info: info("n1"), clientRef: start.clientRef });
    await settled();
    expect(t.ws.tabs.map((x) => x.id)).toEqual(["n1"]);
    expect(t.ws.activeId).toBe("n1");
    expect(t.ws.starting).toBe(false);
  });

  it("says a workspace is missing, says why it failed, or hands a 401 over", async () => {
    const missing = setup({ openWorkspace: () => Promise.reject(new ApiError(404, "no_such_workspace", "no")) });
    await missing.ws.open();
    expect(missing.ws.status).toBe("missing");
    expect(missing.sockets).toEqual([]);

    const failed = setup({ openWorkspace: () => Promise.reject(new ApiError(500, "internal", "pod would not start")) });
    await failed.ws.open();
    expect(failed.ws.status).toBe("failed");
    expect(failed.ws.failure).toBe("pod would not start");

    const expired = setup({ openWorkspace: () => Promise.reject(new ApiError(401, "unauthorized", "log in")) });
    await expired.ws.open();
    expect(expired.unauthorized()).toBe(1);
    expect(expired.ws.status).toBe("opening");
  });

  it("follows what other clients do: new sessions, names, ends", async () => {
    const t = setup();
    await t.connect([info("t1")]);
    t.socket().json({ type: "session.created", id: "t9", workspace: "w", info: info("t9", { created: 9 }) });
    expect(t.ws.sessions.map((s) => s.id)).toEqual(["t1", "t9"]);
    expect(t.ws.tabs.map((x) => x.id)).toEqual(["t1"]);

    t.socket().json({ type: "session.renamed", id: "t1", title: "build" });
    expect(t.ws.byId.get("t1")?.title).toBe("build");
    expect(t.ws.label(t.ws.byId.get("t1"), "t1")).toBe("build");
    expect(JSON.parse(t.store.get("dispatchRenamed:w") ?? "[]")).toEqual(["t1"]);

    t.socket().json({ type: "session.ended", id: "t1", exitCode: 3 });
    expect(t.ws.byId.get("t1")).toMatchObject({ ended: t.timers.now, exitCode: 3 });
    expect(t.ws.endedCount).toBe(1);

    // The user's names outlive the page.
    const again = setup({ store: t.store });
    expect(again.ws.renamed).toEqual(["t1"]);
  });

  it("shows a dropped connection's reason on the overlay and other errors as toasts, leaving a request's own to it", async () => {
    const t = setup();
    await t.connect([]);
    t.socket().json({ type: "error", code: "unavailable", message: "agent restarting; retry" });
    expect(t.ws.dropReason).toBe("agent restarting; retry");
    t.socket().json({ type: "error", code: "session_limit", message: "16 sessions" });
    t.socket().json({ type: "error", code: "internal", message: "a request's", clientRef: "r9" });
    t.socket().json({ type: "error", code: "no_such_session", message: "a session's", id: "t1" });
    expect(t.notes).toEqual(["This workspace runs as many sessions as it may. Stop one and try again."]);

    t.socket().drop();
    t.timers.advance(1000);
    t.socket().open();
    t.socket().hello();
    expect(t.ws.dropReason).toBe(null);
  });

  it("closes a tab onto its neighbour and cycles through tabs both ways", async () => {
    const t = setup({ wanted: "b" });
    await t.connect([info("a", { created: 1 }), info("b", { created: 2 }), info("c", { created: 3 })]);
    t.ws.cycle(1);
    expect(t.ws.activeId).toBe("c");
    t.ws.cycle(1);
    expect(t.ws.activeId).toBe("a");
    t.ws.cycle(-1);
    expect(t.ws.activeId).toBe("c");
    t.ws.closeTab("c");
    expect(t.ws.activeId).toBe("b");
    t.ws.closeTab("a");
    expect(t.ws.activeId).toBe("b");
    t.ws.closeTab("b");
    expect(t.ws.activeId).toBe(null);
    expect(t.urls.at(-1)).toBe(null);
    // The sessions keep running; the list still has them.
    expect(t.ws.sessions).toHaveLength(3);
  });

  it("opens an ended session read-only from its oldest kept byte", async () => {
    const t = setup();
    await t.connect([info("old", { ended: 1, oldestOffset: 40 })]);
    expect(t.ws.tabs).toEqual([]);
    t.ws.openTab(t.ws.sessions[0]);
    expect(t.ws.tabs).toEqual([{ id: "old", kind: "terminal", historyFrom: 40 }]);
  });

  it("sends a rename only when the name changes", async () => {
    const t = setup();
    await t.connect([info("t1", { title: "sh" })]);
    t.ws.rename("t1", "   ");
    t.ws.rename("t1", " sh ");
    expect(t.sent("session.rename")).toEqual([]);
    t.ws.rename("t1", " build ");
    expect(t.sent("session.rename")).toEqual([{ type: "session.rename", id: "t1", title: "build" }]);
  });

  it("reads the list again every few seconds while connected and in view, for the tabs' program names", async () => {
    const t = setup();
    await t.connect([info("t1")]);
    const lists = () => t.sent("session.list").length;
    expect(lists()).toBe(1);
    t.timers.now += FOREGROUND_POLL_MS;
    t.ws.tick();
    expect(lists()).toBe(2);
    t.socket().json({ type: "session.list", sessions: [info("t1", { foreground: "vim" })] });
    await settled();
    expect(t.ws.foregrounds.t1).toEqual({ name: "vim", since: t.timers.now });
    expect(t.ws.label(t.ws.byId.get("t1"), "t1")).toBe("vim");

    t.timers.now += 1000;
    t.ws.tick();
    expect(lists()).toBe(2);
    expect(t.ws.now).toBe(t.timers.now);

    t.hide();
    t.timers.now += FOREGROUND_POLL_MS;
    t.ws.tick();
    expect(lists()).toBe(2);
  });

  it("goes to the tab that has a conversation open, else resumes it in a new session", async () => {
    const t = setup();
    await t.connect([info("t1", { created: 1 }), info("c1", { type: "claude", created: 2, conversationId: "conv-a" })]);
    await t.ws.openConversation("conv-a");
    expect(t.ws.activeId).toBe("c1");
    expect(t.sent("claude.start")).toEqual([]);

    const opening = t.ws.openConversation("conv-b");
    const [start] = t.sent("claude.start");
    expect(start).toMatchObject({ resume: "conv-b" });
    t.socket().json({ type: "session.created", id: "c2", workspace: "w", info: info("c2", { type: "claude", conversationId: "conv-b" }), clientRef: start.clientRef });
    await opening;
    expect(t.ws.tabs.map((x) => x.id)).toEqual(["t1", "c1", "c2"]);
    expect(t.ws.activeId).toBe("c2");
  });

  it("asks whether the login holds when the socket keeps failing, and hands a 401 over", async () => {
    let asked = 0;
    const t = setup({
      me: () => {
        asked++;
        return Promise.reject(new ApiError(401, "unauthorized", "log in"));
      },
    });
    await t.connect([]);
    const fail = async () => {
      t.socket().drop();
      t.timers.advance(1000);
      await settled();
    };
    await fail();
    await fail();
    // Two failures may be the network: the login is not asked about yet.
    expect(asked).toBe(0);
    expect(t.unauthorized()).toBe(0);
    await fail();
    expect(asked).toBe(1);
    expect(t.unauthorized()).toBe(1);
    expect(t.ws.conn.state).toBe("closed");
  });
});
