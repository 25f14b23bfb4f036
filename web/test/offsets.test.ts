import { describe, expect, it } from "vitest";
import { OffsetTracker } from "../src/lib/offsets";

const bytes = (s: string) => new TextEncoder().encode(s);
const text = (b: Uint8Array) => new TextDecoder().decode(b);

describe("offset tracking", () => {
  it("follows contiguous output", () => {
    const t = new OffsetTracker();
    t.snapshot(10);
    expect(text(t.output(10, bytes("abc")).bytes)).toBe("abc");
    expect(text(t.output(13, bytes("de")).bytes)).toBe("de");
    expect(t.since()).toBe(15);
  });

  it("drops what a replay repeats and keeps the new tail", () => {
    const t = new OffsetTracker();
    t.snapshot(0);
    t.output(0, bytes("hello"));
    expect(t.output(0, bytes("hel")).bytes.length).toBe(0);
    expect(text(t.output(3, bytes("lo world")).bytes)).toBe(" world");
    expect(t.since()).toBe(11);
  });

  it("reports a gap when bytes are skipped", () => {
    const t = new OffsetTracker();
    t.snapshot(0);
    t.output(0, bytes("ab"));
    const r = t.output(5, bytes("xyz"));
    expect(r.gap).toEqual({ from: 2, to: 5 });
    expect(text(r.bytes)).toBe("xyz");
    expect(t.since()).toBe(8);
  });

  it("asks for a snapshot until it knows where it stands", () => {
    const t = new OffsetTracker();
    expect(t.since()).toBeUndefined();
    t.startAt(40);
    expect(t.since()).toBe(40);
  });

  it("moves forward when the server says older bytes are gone, never back", () => {
    const t = new OffsetTracker();
    t.next = 5;
    t.startAt(100); // lostBefore: replay starts at 100
    expect(t.since()).toBe(100);
    t.startAt(50);
    expect(t.since()).toBe(100);
  });

  it("a snapshot replaces the position (resync)", () => {
    const t = new OffsetTracker();
    t.snapshot(0);
    t.output(0, bytes("abc"));
    t.snapshot(1000);
    expect(t.output(999, bytes("xy")).bytes.length).toBe(1);
    expect(t.since()).toBe(1001);
  });
});
