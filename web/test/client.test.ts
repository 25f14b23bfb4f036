import { beforeEach, describe, expect, it } from "vitest";
import { WorkspaceClient, workspaceSocketUrl, type SessionSink, type StateEvent } from "../src/lib/client";
import { decodeFrame, FrameKind } from "../src/lib/frame";
import { FakeSocket, FakeTimers } from "./fakes";

class RecordingSink implements SessionSink {
  screen = "";
  resets = 0;
  events: string[] = [];
  reset(): void {
    this.resets++;
    this.screen = "";
  }
  /** Manual processing, to play a slow terminal; by default everything is processed at once. */
  manual = false;
  queued: (() => void)[] = [];
  write(bytes: Uint8Array, done: () => void): void {
    this.screen += new TextDecoder().decode(bytes);
    if (this.manual) this.queued.push(done);
    else done();
  }
  process(n = Infinity): void {
    while (n-- > 0 && this.queued.length > 0) this.queued.shift()!();
  }
  attached(m: { mode: string; offset: number; lostBefore?: number }): void {
    this.events.push(`attached ${m.mode} ${m.offset}${m.lostBefore !== undefined ? ` lost<${m.lostBefore}` : ""}`);
  }
  ended(m: { exitCode?: number | null }): void {
    this.events.push(`ended ${m.exitCode}`);
  }
  error(m: { code: string }): void {
    this.events.push(`error ${m.code}`);
  }
}

const info = (id: string) => ({ id, type: "terminal", title: "sh", cwd: ".", created: 0, offset: 0, oldestOffset: 0, attached: 1 });

describe("WorkspaceClient", () => {
  let sockets: FakeSocket[];
  let timers: FakeTimers;
  let states: StateEvent[];
  let client: WorkspaceClient;
  const last = () => sockets[sockets.length - 1];

  beforeEach(() => {
    sockets = [];
    timers = new FakeTimers();
    states = [];
    client = new WorkspaceClient({
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
      flowHighBytes: 10,
      flowLowBytes: 4,
    });
    client.onState((e) => states.push(e));
    client.start();
  });

  it("attaches without since on a fresh load and writes the snapshot", () => {
    const sink = new RecordingSink();
    client.attach("t1", sink);
    last().open();
    expect(last().binaryType).toBe("arraybuffer");
    expect(last().messages()).toEqual([]); // nothing before hello
    last().hello();
    expect(client.connState.state).toBe("open");
    expect(last().messages()).toEqual([{ type: "session.attach", id: "t1" }]);
    last().json({ type: "session.attached", id: "t1", mode: "snapshot", offset: 50, info: info("t1") });
    last().frame(FrameKind.Snapshot, "t1", 50, "$ screen");
    last().frame(FrameKind.Output, "t1", 50, " more");
    expect(sink.screen).toBe("$ screen more");
    expect(sink.resets).toBe(1);
    expect(client.offsetOf("t1")).toBe(55);
  });

  it("reconnects with growing backoff and resumes from the last offset without loss or duplicates", () => {
    const sink = new RecordingSink();
    client.attach("t1", sink);
    last().open();
    last().hello();
    last().frame(FrameKind.Snapshot, "t1", 0, "");
    last().frame(FrameKind.Output, "t1", 0, "one\r\n");
    last().drop();
    expect(client.connState.state).toBe("reconnecting");
    expect(sockets.length).toBe(1);
    timers.advance(74);
    expect(sockets.length).toBe(1);
    timers.advance(1); // 100 * (0.5 + 0.5*0.5) = 75
    expect(sockets.length).toBe(2);
    last().drop(); // refused: next delay doubles
    timers.advance(149);
    expect(sockets.length).toBe(2);
    timers.advance(1);
    expect(sockets.length).toBe(3);
    expect(states.map((s) => `${s.state}${s.attempt}${s.retryAt ?? ""}`)).toEqual(["connecting0", "open0", "reconnecting175", "reconnecting1", "reconnecting2225", "reconnecting2"]);
    last().open();
    last().hello();
    expect(client.connState).toMatchObject({ state: "open", attempt: 0 });
    expect(last().messages()).toEqual([{ type: "session.attach", id: "t1", since: 5 }]);
    last().json({ type: "session.attached", id: "t1", mode: "replay", offset: 5, info: info("t1") });
    // a server that resends an overlapping chunk: only the new tail is written
    last().frame(FrameKind.Output, "t1", 2, "e\r\ntwo\r\n");
    expect(sink.screen).toBe("one\r\ntwo\r\n");
    expect(sink.events).toEqual(["attached replay 5"]);
  });

  it("moves past bytes the server no longer has and says so", () => {
    const sink = new RecordingSink();
    client.attach("t1", sink, 0);
    last().open();
    last().hello();
    expect(last().messages()).toEqual([{ type: "session.attach", id: "t1", since: 0 }]);
    last().json({ type: "session.attached", id: "t1", mode: "replay", offset: 900, lostBefore: 900, info: info("t1") });
    last().frame(FrameKind.Output, "t1", 900, "tail");
    expect(sink.events).toEqual(["attached replay 900 lost<900"]);
    expect(sink.screen).toBe("tail");
    expect(client.offsetOf("t1")).toBe(904);
  });

  it("caps the backoff", () => {
    client.attach("t1", new RecordingSink());
    for (let i = 0; i < 20; i++) {
      last().drop();
      timers.advance(1000);
    }
    expect(sockets.length).toBe(21);
  });

  it("retries when the socket opens but no hello arrives", () => {
    last().open();
    timers.advance(10_000);
    expect(sockets[0].closedWith).toBe(4001);
    expect(client.connState.state).toBe("reconnecting");
  });

  it("handles resync: reset, then the snapshot, then live output", () => {
    const sink = new RecordingSink();
    client.attach("t1", sink);
    last().open();
    last().hello();
    last().frame(FrameKind.Snapshot, "t1", 0, "old");
    last().json({ type: "session.resync", id: "t1", offset: 4000 });
    last().frame(FrameKind.Snapshot, "t1", 4000, "new screen");
    last().frame(FrameKind.Output, "t1", 4000, "!");
    expect(sink.screen).toBe("new screen!");
    expect(sink.resets).toBe(2);
  });

  it("routes frames by session and ignores unknown sessions and junk", () => {
    const a = new RecordingSink();
    const b = new RecordingSink();
    client.attach("a", a);
    client.attach("b", b);
    last().open();
    last().hello();
    last().frame(FrameKind.Snapshot, "a", 0, "");
    last().frame(FrameKind.Snapshot, "b", 0, "");
    last().frame(FrameKind.Output, "a", 0, "AAA");
    last().frame(FrameKind.Output, "b", 0, "BB");
    last().frame(FrameKind.Output, "zzz", 0, "??");
    last().onmessage?.({ data: new Uint8Array([9, 9, 9]).buffer });
    last().onmessage?.({ data: "{not json" });
    expect(a.screen).toBe("AAA");
    expect(b.screen).toBe("BB");
  });

  it("sends keystrokes as binary input frames only while connected", () => {
    client.attach("t1", new RecordingSink());
    expect(client.sendInput("t1", "ls\r")).toBe(false);
    last().open();
    last().hello();
    expect(client.sendInput("t1", "ls\r")).toBe(true);
    const bin = last().sent.filter((s) => typeof s !== "string") as Uint8Array[];
    expect(bin.length).toBe(1);
    const f = decodeFrame(bin[0]);
    expect(f.kind).toBe(FrameKind.Input);
    expect(f.id).toBe("t1");
    expect(new TextDecoder().decode(f.payload)).toBe("ls\r");
  });

  it("starts a terminal and resolves with its info; queues it until connected", async () => {
    const p = client.startTerminal(100, 30);
    last().open();
    last().hello();
    expect(last().messages()).toEqual([{ type: "terminal.start", cols: 100, rows: 30, clientRef: "r1" }]);
    // another client's terminal, announced first, is not the answer
    last().json({ type: "session.created", id: "t8", workspace: "w", info: info("t8") });
    last().json({ type: "session.created", id: "t9", workspace: "w", info: info("t9"), clientRef: "r1" });
    await expect(p).resolves.toMatchObject({ id: "t9" });
  });

  it("matches simultaneous starts to their replies, whatever the order", async () => {
    last().open();
    last().hello();
    const a = client.startTerminal(80, 24);
    const b = client.startTerminal(80, 24);
    const refs = last().messages().map((m) => (m as { clientRef?: string }).clientRef);
    expect(new Set(refs).size).toBe(2);
    last().json({ type: "session.created", id: "tb", workspace: "w", info: info("tb"), clientRef: refs[1] });
    last().json({ type: "session.created", id: "ta", workspace: "w", info: info("ta"), clientRef: refs[0] });
    await expect(a).resolves.toMatchObject({ id: "ta" });
    await expect(b).resolves.toMatchObject({ id: "tb" });
  });

  it("a start asked while the socket is closing waits for the next connection", async () => {
    last().open();
    last().hello();
    // The server's close frame came; the socket closes (through a slow proxy,
    // for up to seconds), and whatever is sent meanwhile is lost.
    last().readyState = 2;
    const p = client.startTerminal(80, 24);
    expect(last().messages()).toEqual([]);
    last().drop(1012);
    timers.advance(1000);
    last().open();
    last().hello();
    expect(last().messages()).toEqual([{ type: "terminal.start", cols: 80, rows: 24, clientRef: "r1" }]);
    last().json({ type: "session.created", id: "t2", workspace: "w", info: info("t2"), clientRef: "r1" });
    await expect(p).resolves.toMatchObject({ id: "t2" });
  });

  it("rejects a terminal start the server refuses", async () => {
    last().open();
    last().hello();
    const p = client.startTerminal(80, 24);
    last().json({ type: "error", code: "session_limit", message: "too many sessions", clientRef: "r1" });
    await expect(p).rejects.toMatchObject({ code: "session_limit" });
  });

  it("reads earlier output apart from the live stream", async () => {
    const sink = new RecordingSink();
    client.attach("t1", sink, 0);
    last().open();
    last().hello();
    last().json({ type: "session.attached", id: "t1", mode: "replay", offset: 0, info: info("t1") });
    last().frame(FrameKind.Output, "t1", 0, "live-0\n");
    const p = client.readRange("t1", 0, 5);
    expect(last().messages().at(-1)).toEqual({ type: "session.read", id: "t1", from: 0, to: 5 });
    last().json({ type: "session.range", id: "t1", from: 0, to: 5, oldest: 0, end: 7 });
    last().frame(FrameKind.Range, "t1", 0, "live-");
    const r = await p;
    expect(new TextDecoder().decode(r.bytes)).toBe("live-");
    expect(r).toMatchObject({ from: 0, to: 5, oldest: 0, end: 7 });
    // the live stream did not move, and the range did not reach the terminal
    expect(client.offsetOf("t1")).toBe(7);
    expect(sink.screen).toBe("live-0\n");
    // a refused read fails, and does not reach the pane as an error
    const q = client.readRange("t1", 0, 99);
    last().json({ type: "error", code: "invalid_field", message: "past the end", id: "t1" });
    await expect(q).rejects.toMatchObject({ code: "invalid_field" });
    expect(sink.events.filter((e) => e.startsWith("error"))).toEqual([]);
  });

  it("times out requests that get no answer", async () => {
    last().open();
    last().hello();
    const p = client.listSessions();
    timers.advance(15_000);
    await expect(p).rejects.toMatchObject({ code: "timeout" });
  });

  it("passes session errors and endings to the session's sink", () => {
    const sink = new RecordingSink();
    client.attach("t1", sink);
    last().open();
    last().hello();
    last().json({ type: "error", code: "rate_limited", message: "slow down", id: "t1" });
    last().json({ type: "session.ended", id: "t1", exitCode: 130 });
    expect(sink.events).toEqual(["error rate_limited", "ended 130"]);
  });

  it("stops for good on close and sends detach for a closed tab", () => {
    client.attach("t1", new RecordingSink());
    last().open();
    last().hello();
    client.detach("t1");
    expect(last().messages().pop()).toEqual({ type: "session.detach", id: "t1" });
    client.close();
    timers.advance(60_000);
    expect(sockets.length).toBe(1);
    expect(client.connState.state).toBe("closed");
  });

  it("detaches a session whose terminal falls behind and resumes it where it stopped", () => {
    const sink = new RecordingSink();
    sink.manual = true;
    client.attach("t1", sink);
    last().open();
    last().hello();
    last().frame(FrameKind.Snapshot, "t1", 0, "");
    last().frame(FrameKind.Output, "t1", 0, "012345");
    expect(client.backlogOf("t1")).toBe(6);
    last().frame(FrameKind.Output, "t1", 6, "6789ab"); // 12 > high water mark 10
    expect(last().messages().pop()).toEqual({ type: "session.detach", id: "t1" });
    last().frame(FrameKind.Output, "t1", 12, "cdef"); // in flight: dropped, asked for again later
    expect(sink.screen).toBe("0123456789ab");
    sink.process(1); // backlog 6: still above the low mark
    expect(last().messages().pop()).toEqual({ type: "session.detach", id: "t1" });
    sink.process(1); // backlog 0
    expect(last().messages().pop()).toEqual({ type: "session.attach", id: "t1", since: 12 });
    last().frame(FrameKind.Output, "t1", 12, "cdef");
    expect(sink.screen).toBe("0123456789abcdef");
    expect(client.offsetOf("t1")).toBe(16);
  });

  it("a paused session is attached after a reconnect only once it drained", () => {
    const sink = new RecordingSink();
    sink.manual = true;
    client.attach("t1", sink);
    last().open();
    last().hello();
    last().frame(FrameKind.Snapshot, "t1", 0, "");
    last().frame(FrameKind.Output, "t1", 0, "0123456789ab");
    last().drop();
    timers.advance(1000);
    last().open();
    last().hello();
    expect(last().messages()).toEqual([]);
    sink.process();
    expect(last().messages()).toEqual([{ type: "session.attach", id: "t1", since: 12 }]);
  });

  it("never writes past a hole: drops the frame and asks again from the first missing byte", () => {
    const sink = new RecordingSink();
    client.attach("t1", sink);
    last().open();
    last().hello();
    last().frame(FrameKind.Snapshot, "t1", 0, "");
    last().frame(FrameKind.Output, "t1", 0, "ab");
    last().frame(FrameKind.Output, "t1", 5, "fg"); // 2..5 missing
    last().frame(FrameKind.Output, "t1", 7, "hi"); // still missing: no second request
    expect(sink.screen).toBe("ab");
    expect(last().messages().filter((m) => m.type === "session.attach")).toEqual([
      { type: "session.attach", id: "t1" },
      { type: "session.attach", id: "t1", since: 2 },
    ]);
    last().json({ type: "session.attached", id: "t1", mode: "replay", offset: 2, info: info("t1") });
    last().frame(FrameKind.Output, "t1", 2, "cdefghi");
    expect(sink.screen).toBe("abcdefghi");
  });

  it("fails requests whose connection dropped, keeps those queued for the next one", async () => {
    last().open();
    last().hello();
    const lost = client.listSessions();
    last().drop();
    await expect(lost).rejects.toMatchObject({ code: "connection_lost" });
    const queued = client.listSessions(); // asked while disconnected
    timers.advance(1000);
    last().drop(); // a failed attempt that never said hello
    timers.advance(1000);
    last().open();
    last().hello();
    expect(last().messages()).toEqual([{ type: "session.list" }]);
    last().json({ type: "session.list", sessions: [info("t1")] });
    await expect(queued).resolves.toHaveLength(1);
  });

  it("builds the socket URL on the page's origin", () => {
    expect(workspaceSocketUrl({ protocol: "https:", host: "x.dev" }, "my-ws")).toBe("wss://x.dev/api/workspaces/my-ws/ws");
    expect(workspaceSocketUrl({ protocol: "http:", host: "127.0.0.1:8787" }, "a")).toBe("ws://127.0.0.1:8787/api/workspaces/a/ws");
  });
});
