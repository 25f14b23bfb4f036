// One open workspace: its connection, its sessions, the tabs and which one is
// active, the names shown on the tabs, and what the view should say (missing,
// failed, reconnecting, Claude needs a login). WorkspaceView renders this and
// keeps only what is about the page itself (menus, the rename field, focus).
// Everything outside (the REST API, the socket, storage, the URL, toasts,
// the clock) comes in through `WorkspaceEnv`, so tests drive it with fakes.

import { ApiError } from "./api";
import { startClaude } from "./claude/requests";
import { ProtocolError, type StateEvent, type WorkspaceClient } from "./client";
import { humanError, isNotLoggedIn, type ErrorLike } from "./messages";
import { nextForeground, parseIdList, rememberRenamed, tabTitle, type Foreground, type ProgramTitle } from "./names";
import type { ServerMessage, SessionInfo, SessionKind } from "./protocol";
import type { DispatchDebug } from "./testhook";
import type { ToastKind } from "./toasts.svelte";

export interface Tab {
  id: string;
  kind: SessionKind;
  /** Opened to read an ended session: replay from this offset, read-only. */
  historyFrom?: number;
}

export type WorkspaceStatus = "opening" | "ready" | "missing" | "failed";

export interface WorkspaceEnv {
  /** Asks the gateway to start the workspace's agent (`POST .../open`). */
  openWorkspace(name: string): Promise<unknown>;
  /** Whether the login still holds (`GET /api/me`); rejects with a 401 when not. */
  me(): Promise<unknown>;
  /** The connection to the workspace's agent, not started yet. */
  createClient(): WorkspaceClient;
  /** Where the names of renamed sessions are kept (none: kept for this page only). */
  storage: Pick<Storage, "getItem" | "setItem"> | null;
  notify(text: string, kind: ToastKind): void;
  onUnauthorized(): void;
  /** The active tab changed: the URL names it. */
  showSession(id: string | null): void;
  /** A new terminal's size until its pane measures itself. */
  estimateSize(): { cols: number; rows: number };
  /** Whether the page is in view (a hidden page reads no session lists). */
  visible(): boolean;
  now(): number;
  hook: DispatchDebug;
}

/** How often the session list is read again for the tabs' program names. */
export const FOREGROUND_POLL_MS = 3000;

function isActive(s: SessionInfo): boolean {
  return s.ended === undefined;
}

/** "running", "exit 3", "ended · stopped". */
export function exitLabel(s: SessionInfo): string {
  if (s.ended === undefined) return "running";
  const code = s.exitCode === undefined || s.exitCode === null ? "ended" : `exit ${s.exitCode}`;
  return s.endReason ? `${code} · ${s.endReason}` : code;
}

/** How long ago `ms` was, as a person says it. */
export function ago(ms: number, now: number): string {
  const d = Math.max(0, now - ms);
  if (d < 60_000) return "just now";
  if (d < 3_600_000) return `${Math.floor(d / 60_000)} min ago`;
  if (d < 86_400_000) return `${Math.floor(d / 3_600_000)} h ago`;
  return new Date(ms).toLocaleString();
}

export class WorkspaceModel {
  status = $state<WorkspaceStatus>("opening");
  failure = $state("");
  client = $state<WorkspaceClient | null>(null);
  conn = $state<StateEvent>({ state: "connecting", attempt: 0 });
  sessions = $state<SessionInfo[]>([]);
  tabs = $state<Tab[]>([]);
  activeId = $state<string | null>(null);
  /** What each terminal's program calls itself (OSC 0/2 titles), by session. */
  programTitles = $state<Record<string, ProgramTitle>>({});
  /** Each terminal's foreground program, as the session list last said. */
  foregrounds = $state<Record<string, Foreground>>({});
  /** Sessions the user named: their name beats the program's title. Kept per workspace. */
  renamed = $state<string[]>([]);
  /** Claude cannot start for want of a login: how to give it one. */
  claudeHelp = $state<string | null>(null);
  starting = $state(false);
  /** Why the server dropped the connection, when it said so. */
  dropReason = $state<string | null>(null);
  /** The first session list arrived: until then "no sessions" cannot be told from "not loaded". */
  listed = $state(false);
  now = $state(0);

  readonly byId = $derived(new Map(this.sessions.map((s) => [s.id, s])));
  readonly activeInfo = $derived(this.activeId ? this.byId.get(this.activeId) : undefined);
  readonly endedCount = $derived(this.sessions.filter((s) => !isActive(s)).length);

  private firstList = true;
  private lastPoll = 0;
  private probing = false;
  private closed = false;
  private readonly renamedKey: string;

  constructor(
    readonly name: string,
    private readonly env: WorkspaceEnv,
    /** The session the URL names, opened once the list arrives. */
    private readonly wanted?: string,
    /** Created on this page just now: open it with a terminal running. */
    private readonly fresh = false,
  ) {
    this.renamedKey = `dispatchRenamed:${name}`;
    this.renamed = this.loadRenamed();
    this.now = env.now();
    env.hook.states = [];
    env.hook.listed = false;
  }

  /** The name a tab shows for session `id`. */
  label(s: SessionInfo | undefined, id: string): string {
    return tabTitle(s, this.programTitles[id], this.renamed.includes(id), this.foregrounds[id]);
  }

  /** Opens the workspace and connects; the list of sessions follows. */
  async open(): Promise<void> {
    try {
      await this.env.openWorkspace(this.name);
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) return this.env.onUnauthorized();
      if (e instanceof ApiError && (e.status === 404 || e.code === "no_such_workspace")) this.status = "missing";
      else {
        this.status = "failed";
        this.failure = (e as Error).message;
      }
      return;
    }
    if (this.closed) return;
    const c = this.env.createClient();
    c.onState((e) => this.onState(c, e));
    c.onMessage((m) => this.onMessage(m));
    this.client = c;
    const hook = this.env.hook;
    hook.dropConnection = () => c.reconnectNow();
    hook.flowPauses = () => c.flowPauses;
    hook.resyncs = () => c.resyncs;
    hook.streamLog = () => [...c.streamLog];
    this.status = "ready";
    c.start();
  }

  close(): void {
    this.closed = true;
    this.client?.close();
  }

  /** Once a second: the clock the view shows, and the tabs' program names. */
  tick(): void {
    this.now = this.env.now();
    if (this.listed && this.conn.state === "open" && this.env.visible() && this.now - this.lastPoll >= FOREGROUND_POLL_MS) {
      this.lastPoll = this.now;
      void this.refreshSessions(true);
    }
  }

  private onState(c: WorkspaceClient, e: StateEvent): void {
    this.conn = e;
    this.env.hook.states.push(e.state);
    if (e.state === "open") {
      this.dropReason = null;
      void this.refreshSessions();
    }
    // A socket that keeps failing may mean the login expired: the upgrade's 401 is invisible to scripts.
    if (e.state === "reconnecting" && e.attempt >= 3 && !this.probing) {
      this.probing = true;
      this.env.me().then(
        () => (this.probing = false),
        (err) => {
          this.probing = false;
          if (err instanceof ApiError && err.status === 401) {
            c.close();
            this.env.onUnauthorized();
          }
        },
      );
    }
  }

  private onMessage(m: ServerMessage): void {
    if (m.type === "session.created") this.upsert(m.info);
    else if (m.type === "session.renamed") {
      this.markRenamed(m.id);
      this.upsert({ id: m.id, title: m.title });
    } else if (m.type === "session.ended") {
      this.upsert({ id: m.id, ended: this.env.now(), exitCode: m.exitCode ?? undefined, endReason: m.reason });
    }
    // Errors that answer a request (they carry its clientRef) are the requester's to show.
    else if (m.type === "error" && !m.id && m.clientRef === undefined) {
      // "unavailable" comes with a dropped connection: the overlay says it.
      if (m.code === "unavailable") this.dropReason = m.message;
      else this.showError(m);
    }
  }

  /** Records what a session reported about itself (or a new session). */
  upsert(info: Partial<SessionInfo> & { id: string }): void {
    const i = this.sessions.findIndex((s) => s.id === info.id);
    if (i >= 0) this.sessions[i] = { ...this.sessions[i], ...info };
    else if (info.type) this.sessions.push(info as SessionInfo);
  }

  /** A terminal's program set its title. */
  setProgramTitle(id: string, title: string): void {
    this.programTitles[id] = { title, at: this.env.now() };
  }

  activate(id: string | null): void {
    this.activeId = id;
    this.env.hook.activeSession = id;
    this.env.showSession(id);
  }

  openTab(s: SessionInfo, focus = true): void {
    if (!this.tabs.some((t) => t.id === s.id)) {
      this.tabs.push(isActive(s) ? { id: s.id, kind: s.type } : { id: s.id, kind: s.type, historyFrom: s.oldestOffset });
    }
    if (focus) this.activate(s.id);
  }

  /** Closes the tab (the session keeps running); its neighbour becomes active. */
  closeTab(id: string): void {
    const i = this.tabs.findIndex((t) => t.id === id);
    if (i < 0) return;
    this.tabs.splice(i, 1);
    if (this.activeId === id) this.activate(this.tabs[Math.min(i, this.tabs.length - 1)]?.id ?? null);
  }

  /** The next (`dir` 1) or previous (-1) tab, wrapping around. */
  cycle(dir: number): void {
    if (this.tabs.length === 0) return;
    const i = this.tabs.findIndex((t) => t.id === this.activeId);
    this.activate(this.tabs[(i + dir + this.tabs.length) % this.tabs.length].id);
  }

  /** Gives session `id` the user's name for it, when that changes anything. */
  rename(id: string, title: string): void {
    const t = title.trim();
    if (!t || t === this.label(this.byId.get(id), id)) return;
    this.client?.send({ type: "session.rename", id, title: t });
  }

  stop(id: string): void {
    this.client?.send({ type: "session.stop", id });
  }

  /** `quiet`: a background refresh, which says nothing when it fails. */
  async refreshSessions(quiet = false): Promise<void> {
    if (!this.client) return;
    try {
      const list = await this.client.listSessions();
      this.sessions = list.sort((a, b) => a.created - b.created);
      const t = this.env.now();
      const fg: Record<string, Foreground> = {};
      for (const s of this.sessions) {
        const f = nextForeground(this.foregrounds[s.id], s.foreground, t);
        if (f) fg[s.id] = f;
      }
      this.foregrounds = fg;
    } catch (e) {
      // A dropped connection lists again once it is back.
      if (!quiet && !(e instanceof ProtocolError && e.code === "connection_lost")) {
        this.env.notify(`Could not list sessions. ${humanError(e as ErrorLike)}`, "error");
      }
      return;
    }
    if (this.firstList) {
      this.firstList = false;
      for (const s of this.sessions) if (isActive(s)) this.openTab(s, false);
      const wanted = this.wanted ? this.byId.get(this.wanted) : undefined;
      if (wanted) this.openTab(wanted);
      else this.activate(this.tabs[0]?.id ?? null);
      this.listed = true;
      this.env.hook.listed = true;
      if (this.fresh && this.sessions.length === 0) void this.newTerminal();
    }
  }

  async newTerminal(): Promise<void> {
    if (!this.client || this.starting) return;
    this.starting = true;
    try {
      const { cols, rows } = this.env.estimateSize();
      const info = await this.client.startTerminal(cols, rows);
      this.upsert(info);
      this.openTab(info);
    } catch (e) {
      this.env.notify(`Could not start a terminal. ${humanError(e as ErrorLike)}`, "error");
    } finally {
      this.starting = false;
    }
  }

  /** A session someone started here (the Claude launcher): list it and show it. */
  started(info: SessionInfo): void {
    this.upsert(info);
    this.openTab(info);
  }

  /**
   * Opens a past conversation: the tab that already has it, if one does;
   * else a new session resuming it.
   */
  async openConversation(conversationId: string): Promise<void> {
    if (!this.client) return;
    const find = () => this.sessions.find((s) => s.type === "claude" && isActive(s) && s.conversationId === conversationId);
    const open = find();
    if (open) return this.openTab(open);
    try {
      this.started(await startClaude(this.client, { resume: conversationId }));
    } catch (e) {
      const err = e as { code?: string; message: string };
      if (err.code === "already_exists") {
        // Opened meanwhile (another tab, another device): find it and go there.
        await this.refreshSessions();
        const there = find();
        if (there) return this.openTab(there);
      }
      this.showError({ code: err.code ?? "internal", message: err.message });
    }
  }

  showError(e: ErrorLike): void {
    if (isNotLoggedIn(e)) this.claudeHelp = humanError(e);
    else this.env.notify(humanError(e), "error");
  }

  /** A terminal with `claude` running in it: its login flow signs the workspace in. */
  async loginInTerminal(): Promise<void> {
    this.claudeHelp = null;
    await this.newTerminal();
    if (this.activeId) this.client?.sendInput(this.activeId, "claude\r");
  }

  private loadRenamed(): string[] {
    try {
      return parseIdList(this.env.storage?.getItem(this.renamedKey) ?? null);
    } catch {
      return [];
    }
  }

  private markRenamed(id: string): void {
    if (this.renamed.includes(id)) return;
    this.renamed = rememberRenamed(this.renamed, id);
    try {
      this.env.storage?.setItem(this.renamedKey, JSON.stringify(this.renamed));
    } catch {
      /* storage disabled: the name still holds on the server */
    }
  }
}
