// One WebSocket per workspace: reconnects with backoff, re-attaches every
// session from the last offset it received, and routes frames and messages
// to per-session sinks. No DOM here: the socket and timers are injected, so
// the whole state machine is unit-tested.

import { backoffDelay, DEFAULT_BACKOFF, type BackoffPolicy } from "./backoff";
import { decodeFrame, FrameKind, inputFrame } from "./frame";
import { OffsetTracker } from "./offsets";
import { parseServerMessage, type ClientMessage, type ServerMessage, type SessionInfo } from "./protocol";

/** The parts of the browser's WebSocket this client uses. */
export interface SocketLike {
  binaryType: string;
  readonly readyState: number;
  /** Bytes queued in the browser and not yet sent. */
  readonly bufferedAmount: number;
  send(data: string | Uint8Array<ArrayBuffer>): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
}

export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export type ConnState = "connecting" | "open" | "reconnecting" | "closed";

export interface StateEvent {
  state: ConnState;
  /** Failed attempts in a row (0 while open). */
  attempt: number;
  /** While reconnecting: when the next attempt starts (Date.now() based). */
  retryAt?: number;
}

/** Where one session's output goes (a terminal pane). */
export interface SessionSink {
  /** Clear the screen and state: a snapshot follows. */
  reset(): void;
  /** Show the bytes; call `done` once they are processed (that paces the stream). */
  write(bytes: Uint8Array, done: () => void): void;
  attached?(msg: Extract<ServerMessage, { type: "session.attached" }>): void;
  ended?(msg: Extract<ServerMessage, { type: "session.ended" }>): void;
  resync?(offset: number): void;
  error?(msg: Extract<ServerMessage, { type: "error" }>): void;
  /** Any other message naming this session (Claude events go here). */
  message?(msg: ServerMessage): void;
}

export interface ClientOptions {
  url: string;
  createSocket: (url: string) => SocketLike;
  timers?: Timers;
  backoff?: BackoffPolicy;
  random?: () => number;
  now?: () => number;
  /** Give up waiting for `hello` on an open socket after this long, and retry. */
  helloTimeoutMs?: number;
  /** Longest a request (start a terminal, list sessions) waits for its answer. */
  requestTimeoutMs?: number;
  /**
   * Flow control: a session whose sink has more than `flowHighBytes` written
   * but not yet processed is detached, and attached again from where it
   * stopped once the backlog is under `flowLowBytes`. A browser WebSocket
   * cannot push back, and xterm.js drops data past its own limit, so this
   * keeps a flood (`yes`, a huge `cat`) from growing memory or losing bytes.
   */
  flowHighBytes?: number;
  flowLowBytes?: number;
}

interface Attachment {
  sink: SessionSink;
  tracker: OffsetTracker;
  /** Bytes handed to the sink and not yet processed. */
  backlog: number;
  /** Detached for flow control until the backlog drains. */
  paused: boolean;
  /** Asked for the stream again after a gap; the `session.attached` reply clears it. */
  reattaching: boolean;
}

interface Pending<T> {
  resolve: (v: T) => void;
  reject: (e: Error) => void;
  timer: unknown;
  /** The connection (counted by hellos) the request goes out on. */
  generation: number;
}

/** Earlier output read with `session.read`. */
export interface RangeRead {
  from: number;
  to: number;
  oldest: number;
  end: number;
  bytes: Uint8Array;
}

/** A protocol error returned to a request. */
export class ProtocolError extends Error {
  constructor(
    public code: string,
    message: string,
  ) {
    super(message);
  }
}

const OPEN = 1;
/** Control messages kept while disconnected; more than this and the oldest go. */
const MAX_QUEUED = 64;

export class WorkspaceClient {
  private socket: SocketLike | null = null;
  private state: ConnState = "connecting";
  private attempt = 0;
  private retryTimer: unknown = null;
  private helloTimer: unknown = null;
  private retryAt: number | undefined;
  private closed = false;
  /** How often a session was paused for flow control (shown in the debug hook). */
  flowPauses = 0;
  /** Notable stream events (attach, pause, resume, resync, gap), newest last; for debugging. */
  readonly streamLog: string[] = [];
  /** How often the server skipped a session ahead to a snapshot (this client fell too far behind). */
  resyncs = 0;
  private lastEmitted: StateEvent | null = { state: "connecting", attempt: 0 };
  private queue: ClientMessage[] = [];
  private sessions = new Map<string, Attachment>();
  private stateListeners = new Set<(e: StateEvent) => void>();
  private messageListeners = new Set<(m: ServerMessage) => void>();
  /** Connections that reached `hello` so far; requests remember theirs. */
  private generation = 0;
  /** Terminal starts by their `clientRef`. */
  private pendingStarts = new Map<string, Pending<SessionInfo>>();
  private refs = 0;
  private pendingLists: Pending<SessionInfo[]>[] = [];
  /** `session.read` requests by session, oldest first; the `session.range` header waits here for its frame. */
  private pendingReads = new Map<string, { p: Pending<RangeRead>; header?: Extract<ServerMessage, { type: "session.range" }> }[]>();
  private readonly timers: Timers;
  private readonly opts: Required<Omit<ClientOptions, "timers">>;

  constructor(options: ClientOptions) {
    this.timers = options.timers ?? {
      setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
      clearTimeout: (h) => globalThis.clearTimeout(h as ReturnType<typeof setTimeout>),
    };
    this.opts = {
      url: options.url,
      createSocket: options.createSocket,
      backoff: options.backoff ?? DEFAULT_BACKOFF,
      random: options.random ?? Math.random,
      now: options.now ?? Date.now,
      helloTimeoutMs: options.helloTimeoutMs ?? 10_000,
      requestTimeoutMs: options.requestTimeoutMs ?? 15_000,
      flowHighBytes: options.flowHighBytes ?? 4 * 1024 * 1024,
      flowLowBytes: options.flowLowBytes ?? 512 * 1024,
    };
  }

  /** Opens the connection; call once. */
  start(): void {
    this.connect();
  }

  get connState(): StateEvent {
    return { state: this.state, attempt: this.attempt, retryAt: this.retryAt };
  }

  onState(cb: (e: StateEvent) => void): () => void {
    this.stateListeners.add(cb);
    cb(this.connState);
    return () => this.stateListeners.delete(cb);
  }

  /** Every server message, after the client has routed it. */
  onMessage(cb: (m: ServerMessage) => void): () => void {
    this.messageListeners.add(cb);
    return () => this.messageListeners.delete(cb);
  }

  /**
   * Streams a session's output into `sink`, now and after every reconnect.
   * Without `since` the server sends a snapshot of the current screen; with it,
   * exactly the bytes from that offset (the whole history of an ended session,
   * say, from its oldest offset).
   */
  attach(id: string, sink: SessionSink, since?: number): void {
    const tracker = new OffsetTracker();
    if (since !== undefined) tracker.next = since;
    this.sessions.set(id, { sink, tracker, backlog: 0, paused: false, reattaching: false });
    if (this.state === "open") this.sendNow({ type: "session.attach", id, ...sinceField(tracker) });
  }

  detach(id: string): void {
    if (!this.sessions.delete(id)) return;
    if (this.state === "open") this.sendNow({ type: "session.detach", id });
  }

  /** Offset of the next byte expected for a session (what a reconnect asks for). */
  offsetOf(id: string): number | null {
    return this.sessions.get(id)?.tracker.next ?? null;
  }

  /**
   * A Claude session's stream has no byte frames: its pane says which event
   * seq it needs next, so a reconnect replays only what it missed.
   */
  advance(id: string, next: number): void {
    const t = this.sessions.get(id)?.tracker;
    if (t && (t.next === null || next > t.next)) t.next = next;
  }

  /** Sends a control message now, or once connected (bounded queue). */
  /**
   * Open, and the socket still takes messages. After the server's close frame
   * the socket is closing (through a proxy that is slow to pass the TCP close,
   * such as kubectl port-forward, for up to seconds) before `onclose`; what is
   * sent meanwhile is lost, so it waits for the next connection instead.
   */
  private get live(): boolean {
    return this.state === "open" && this.socket?.readyState === OPEN;
  }

  send(msg: ClientMessage): void {
    if (this.live) {
      this.sendNow(msg);
      return;
    }
    this.queue.push(msg);
    if (this.queue.length > MAX_QUEUED) this.queue.shift();
  }

  /** Keystrokes as a binary Input frame. Dropped (returns false) while disconnected: typing blind into a shell is worse than typing again. */
  sendInput(id: string, data: string | Uint8Array): boolean {
    if (!this.live || !this.socket) return false;
    this.socket.send(inputFrame(id, data));
    return true;
  }

  /** Starts a terminal; resolves with its info once the server created it. */
  startTerminal(cols: number, rows: number, extra: { title?: string; workspacePath?: string } = {}): Promise<SessionInfo> {
    return new Promise((resolve, reject) => {
      // Sessions other clients start are announced on this socket too: the
      // reply to this request is the one that carries this ref.
      const clientRef = this.newRef();
      const p = this.pending(() => this.pendingStarts.delete(clientRef), resolve, reject, "starting a terminal");
      this.pendingStarts.set(clientRef, p);
      this.send({ type: "terminal.start", cols, rows, ...extra, clientRef });
    });
  }

  /** A `clientRef` unique on this client. */
  newRef(): string {
    this.refs += 1;
    return `r${this.refs}`;
  }

  /**
   * Reads earlier output of a session (`session.read`): resolves with the
   * bytes the agent has of `[from, to)` (from the oldest it keeps, at most
   * MAX_READ_BYTES) and where its output now starts and ends.
   */
  readRange(id: string, from: number, to: number): Promise<RangeRead> {
    return new Promise((resolve, reject) => {
      const list = this.pendingReads.get(id) ?? [];
      const entry: { p: Pending<RangeRead> } = {
        p: this.pending(() => {
          const l = this.pendingReads.get(id);
          if (l) this.pendingReads.set(id, l.filter((e) => e !== entry));
        }, resolve, reject, "reading earlier output"),
      };
      list.push(entry);
      this.pendingReads.set(id, list);
      this.send({ type: "session.read", id, from, to });
    });
  }

  listSessions(): Promise<SessionInfo[]> {
    return new Promise((resolve, reject) => {
      const p: Pending<SessionInfo[]> = this.pending(() => (this.pendingLists = this.pendingLists.filter((q) => q !== p)), resolve, reject, "listing sessions");
      this.pendingLists.push(p);
      this.send({ type: "session.list" });
    });
  }

  /** Closes for good (leaving the workspace view). */
  close(): void {
    this.closed = true;
    this.clearTimers();
    const s = this.socket;
    this.socket = null;
    if (s) {
      detachHandlers(s);
      s.close(1000, "closed by client");
    }
    for (const p of [...this.pendingStarts.values(), ...this.pendingLists, ...[...this.pendingReads.values()].flat().map((e) => e.p)]) {
      this.timers.clearTimeout(p.timer);
      p.reject(new ProtocolError("closed", "connection closed"));
    }
    this.pendingStarts.clear();
    this.pendingLists = [];
    this.pendingReads.clear();
    this.setState("closed");
  }

  /** Drops the current socket as a network failure would (tests, and a "retry now" button). */
  reconnectNow(): void {
    if (this.closed) return;
    if (this.retryTimer !== null) {
      this.timers.clearTimeout(this.retryTimer);
      this.retryTimer = null;
      this.connect();
      return;
    }
    this.socket?.close(4000, "reconnect requested");
  }

  /** A request waiting for its answer; `forget` drops it from its list when it times out. */
  private pending<T>(forget: () => void, resolve: (v: T) => void, reject: (e: Error) => void, what: string): Pending<T> {
    // Sent now on this connection, or queued for the next one.
    const generation = this.live ? this.generation : this.generation + 1;
    const p: Pending<T> = { resolve, reject, timer: null, generation };
    p.timer = this.timers.setTimeout(() => {
      forget();
      reject(new ProtocolError("timeout", `no answer from the workspace ${what}`));
    }, this.opts.requestTimeoutMs);
    return p;
  }

  /** Answers to requests sent on a lost connection never come: fail them now. */
  private failPending(generation: number): void {
    /** Rejects `p` if it went out on the lost connection; says whether it did. */
    const lost = <T>(p: Pending<T>): boolean => {
      if (p.generation > generation) return false;
      this.timers.clearTimeout(p.timer);
      p.reject(new ProtocolError("connection_lost", "the connection dropped before the workspace answered"));
      return true;
    };
    for (const [ref, p] of this.pendingStarts) if (lost(p)) this.pendingStarts.delete(ref);
    this.pendingLists = this.pendingLists.filter((p) => !lost(p));
    for (const [id, l] of this.pendingReads) this.pendingReads.set(id, l.filter((e) => !lost(e.p)));
  }

  private settle<T>(list: Pending<T>[], value: T): void {
    const p = list.shift();
    if (!p) return;
    this.timers.clearTimeout(p.timer);
    p.resolve(value);
  }

  private connect(): void {
    this.retryTimer = null;
    this.retryAt = undefined;
    this.setState(this.attempt === 0 && this.state === "connecting" ? "connecting" : "reconnecting");
    let s: SocketLike;
    try {
      s = this.opts.createSocket(this.opts.url);
    } catch {
      this.scheduleRetry();
      return;
    }
    this.socket = s;
    s.binaryType = "arraybuffer";
    s.onopen = () => {
      this.helloTimer = this.timers.setTimeout(() => s.close(4001, "no hello"), this.opts.helloTimeoutMs);
    };
    s.onmessage = (ev) => this.receive(ev.data);
    s.onerror = () => {
      /* a close event always follows */
    };
    s.onclose = () => {
      if (this.socket !== s) return;
      this.socket = null;
      if (this.state === "open") this.failPending(this.generation);
      if (this.helloTimer !== null) this.timers.clearTimeout(this.helloTimer);
      this.helloTimer = null;
      if (!this.closed) this.scheduleRetry();
    };
  }

  private scheduleRetry(): void {
    const delay = backoffDelay(this.attempt, this.opts.backoff, this.opts.random);
    this.attempt += 1;
    this.retryAt = this.opts.now() + delay;
    this.retryTimer = this.timers.setTimeout(() => this.connect(), delay);
    this.setState("reconnecting");
  }

  private receive(data: unknown): void {
    if (typeof data === "string") {
      const msg = parseServerMessage(data);
      if (msg) this.route(msg);
      return;
    }
    if (!(data instanceof ArrayBuffer) && !(data instanceof Uint8Array)) return;
    let frame;
    try {
      frame = decodeFrame(data);
    } catch {
      return; // a frame this client cannot read is dropped; the stream's offsets tell if bytes went missing
    }
    if (frame.kind === FrameKind.Range) {
      const l = this.pendingReads.get(frame.id);
      const e = l?.[0];
      if (!l || !e?.header) return;
      l.shift();
      this.timers.clearTimeout(e.p.timer);
      const h = e.header;
      // A copy: the socket's buffer is not kept alive by a long-lived history window.
      e.p.resolve({ from: h.from, to: h.to, oldest: h.oldest, end: h.end, bytes: frame.payload.slice() });
      return;
    }
    const a = this.sessions.get(frame.id);
    // Frames still in flight after a flow-control detach are dropped; the
    // tracker did not move, so the next attach asks for them again.
    if (!a || a.paused) return;
    if (frame.kind === FrameKind.Snapshot) {
      a.tracker.snapshot(frame.offset);
      a.sink.reset();
      if (frame.payload.length > 0) this.feed(frame.id, a, frame.payload);
    } else if (frame.kind === FrameKind.Output) {
      const next = a.tracker.next;
      if (next !== null && frame.offset > next) {
        // Bytes before this frame never arrived here: typically frames of an
        // attachment the server was still flushing when it was replaced.
        // Writing it would leave a hole, so drop it and ask for the stream
        // again from the first missing byte.
        if (!a.reattaching) {
          a.reattaching = true;
          this.note(`gap ${frame.id} ${next}..${frame.offset}: attach again`);
          this.sendNow({ type: "session.attach", id: frame.id, since: next });
        }
        return;
      }
      const r = a.tracker.output(frame.offset, frame.payload);
      if (r.bytes.length > 0) this.feed(frame.id, a, r.bytes);
    }
  }

  private note(line: string): void {
    this.streamLog.push(line);
    if (this.streamLog.length > 200) this.streamLog.shift();
  }

  private feed(id: string, a: Attachment, bytes: Uint8Array): void {
    const n = bytes.length;
    a.backlog += n;
    a.sink.write(bytes, () => this.processed(id, a, n));
    if (!a.paused && a.backlog > this.opts.flowHighBytes) {
      a.paused = true;
      this.flowPauses += 1;
      this.note(`pause ${id} at ${a.tracker.next} backlog ${a.backlog}`);
      this.sendNow({ type: "session.detach", id });
    }
  }

  private processed(id: string, a: Attachment, n: number): void {
    a.backlog -= n;
    if (!a.paused || a.backlog > this.opts.flowLowBytes || this.sessions.get(id) !== a) return;
    a.paused = false;
    this.note(`resume ${id} from ${a.tracker.next}`);
    // While disconnected, the next hello attaches it.
    if (this.state === "open") this.sendNow({ type: "session.attach", id, ...sinceField(a.tracker) });
  }

  /** Bytes written to a session's sink and not yet processed (flow control). */
  backlogOf(id: string): number {
    return this.sessions.get(id)?.backlog ?? 0;
  }

  private route(msg: ServerMessage): void {
    switch (msg.type) {
      case "hello":
        this.onHello();
        break;
      case "session.created": {
        const p = msg.clientRef === undefined ? undefined : this.pendingStarts.get(msg.clientRef);
        if (p && msg.clientRef !== undefined) {
          this.pendingStarts.delete(msg.clientRef);
          this.timers.clearTimeout(p.timer);
          p.resolve(msg.info);
        }
        break;
      }
      case "session.list":
        this.settle(this.pendingLists, msg.sessions);
        break;
      case "session.range": {
        const e = this.pendingReads.get(msg.id)?.find((x) => !x.header);
        if (e) e.header = msg;
        break;
      }
      case "session.attached": {
        this.note(`attached ${msg.id} ${msg.mode} at ${msg.offset}${msg.lostBefore !== undefined ? ` lostBefore ${msg.lostBefore}` : ""}`);
        const a = this.sessions.get(msg.id);
        if (a) a.reattaching = false;
        if (a && msg.mode === "replay") a.tracker.startAt(msg.offset);
        a?.sink.attached?.(msg);
        break;
      }
      case "session.resync":
        this.resyncs += 1;
        this.note(`resync ${msg.id} at ${msg.offset}`);
        this.sessions.get(msg.id)?.sink.resync?.(msg.offset);
        break;
      case "session.ended":
        this.sessions.get(msg.id)?.sink.ended?.(msg);
        break;
      case "error": {
        // A refused read: its answer never comes.
        const reads = msg.id ? this.pendingReads.get(msg.id) : undefined;
        const failed = reads?.find((x) => !x.header);
        if (failed && reads) {
          reads.splice(reads.indexOf(failed), 1);
          this.timers.clearTimeout(failed.p.timer);
          failed.p.reject(new ProtocolError(msg.code, msg.message));
          break;
        }
        const a = msg.id ? this.sessions.get(msg.id) : undefined;
        if (a) {
          a.reattaching = false;
          a.sink.error?.(msg);
        }
        else if (msg.clientRef !== undefined) {
          const p = this.pendingStarts.get(msg.clientRef);
          if (p) {
            this.pendingStarts.delete(msg.clientRef);
            this.timers.clearTimeout(p.timer);
            p.reject(new ProtocolError(msg.code, msg.message));
          }
        }
        break;
      }
      default:
        if ("id" in msg && typeof msg.id === "string") this.sessions.get(msg.id)?.sink.message?.(msg);
    }
    for (const l of this.messageListeners) l(msg);
  }

  private onHello(): void {
    if (this.helloTimer !== null) this.timers.clearTimeout(this.helloTimer);
    this.helloTimer = null;
    this.attempt = 0;
    this.generation += 1;
    this.setState("open");
    for (const [id, a] of this.sessions) {
      a.reattaching = false;
      if (!a.paused) this.sendNow({ type: "session.attach", id, ...sinceField(a.tracker) });
    }
    const queued = this.queue;
    this.queue = [];
    for (const m of queued) this.sendNow(m);
  }

  private sendNow(msg: ClientMessage): void {
    if (this.socket && this.socket.readyState === OPEN) this.socket.send(JSON.stringify(msg));
  }

  private setState(state: ConnState): void {
    this.state = state;
    const e = this.connState;
    const prev = this.lastEmitted;
    if (prev && prev.state === e.state && prev.attempt === e.attempt && prev.retryAt === e.retryAt) return;
    this.lastEmitted = e;
    for (const l of this.stateListeners) l(e);
  }

  private clearTimers(): void {
    for (const t of [this.retryTimer, this.helloTimer]) if (t !== null) this.timers.clearTimeout(t);
    this.retryTimer = null;
    this.helloTimer = null;
  }
}

function sinceField(t: OffsetTracker): { since?: number } {
  const since = t.since();
  return since === undefined ? {} : { since };
}

function detachHandlers(s: SocketLike): void {
  s.onopen = null;
  s.onclose = null;
  s.onerror = null;
  s.onmessage = null;
}

/** The workspace's WebSocket URL on the page's own origin (the gateway checks Origin against Host). */
export function workspaceSocketUrl(loc: { protocol: string; host: string }, workspace: string): string {
  const scheme = loc.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${loc.host}/api/workspaces/${encodeURIComponent(workspace)}/ws`;
}

/**
 * The browser's WebSocket as a SocketLike. It has every member; only its
 * handler parameter types are narrower (Event subclasses), which the client
 * never relies on.
 */
export function browserSocket(url: string): SocketLike {
  return new WebSocket(url) as unknown as SocketLike;
}
