// Fakes for what WorkspaceClient takes from outside: the socket (the test
// plays the agent on it) and the timers (the test moves the clock).
import type { SocketLike } from "../src/lib/client";
import { encodeFrame } from "../src/lib/frame";

// A socket that records what the client sends and lets the test play the server.
export class FakeSocket implements SocketLike {
  binaryType = "blob";
  readyState = 0;
  bufferedAmount = 0;
  sent: (string | Uint8Array)[] = [];
  closedWith: number | undefined;
  onopen: ((ev: unknown) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  constructor(public url: string) {}
  send(data: string | Uint8Array<ArrayBuffer>): void {
    this.sent.push(typeof data === "string" ? data : data.slice());
  }
  close(code?: number): void {
    this.closedWith = code;
    this.drop(code ?? 1000);
  }
  // server side
  open(): void {
    this.readyState = 1;
    this.onopen?.({});
  }
  hello(): void {
    this.json({ type: "hello", protocol: 1, workspace: "w", agentVersion: "t" });
  }
  json(m: unknown): void {
    this.onmessage?.({ data: JSON.stringify(m) });
  }
  frame(kind: number, id: string, offset: number, text: string): void {
    const f = encodeFrame(kind as 1 | 2 | 3 | 4, id, offset, new TextEncoder().encode(text));
    this.onmessage?.({ data: f.buffer });
  }
  drop(code = 1006): void {
    this.readyState = 3;
    this.onclose?.({ code, reason: "" });
  }
  messages(): Record<string, unknown>[] {
    return this.sent.filter((s): s is string => typeof s === "string").map((s) => JSON.parse(s));
  }
}

export class FakeTimers {
  now = 0;
  private seq = 0;
  tasks = new Map<number, { at: number; fn: () => void }>();
  setTimeout = (fn: () => void, ms: number): unknown => {
    const id = ++this.seq;
    this.tasks.set(id, { at: this.now + ms, fn });
    return id;
  };
  clearTimeout = (h: unknown): void => {
    this.tasks.delete(h as number);
  };
  advance(ms: number): void {
    const until = this.now + ms;
    for (;;) {
      const due = [...this.tasks.entries()].filter(([, t]) => t.at <= until).sort((a, b) => a[1].at - b[1].at)[0];
      if (!due) break;
      this.tasks.delete(due[0]);
      this.now = due[1].at;
      due[1].fn();
    }
    this.now = until;
  }
}
