import { describe, expect, it } from "vitest";
import { plainLine, ScrollbackWindow, splitLines } from "../src/lib/scrollback";

const enc = new TextEncoder();

/** The output of `seq 1 n` as bytes. */
function seq(n: number): Uint8Array {
  let s = "";
  for (let i = 1; i <= n; i++) s += `${i}\n`;
  return enc.encode(s);
}

/** Serves reads as the agent would: clipped to [oldest, end). */
function reader(out: Uint8Array, oldest = 0) {
  return (r: { from: number; to: number }) => {
    const from = Math.max(r.from, oldest);
    return { from, bytes: out.subarray(from, Math.max(from, r.to)) };
  };
}

describe("scrollback lines", () => {
  it("reads lines as a person sees them", () => {
    expect(plainLine("\x1b[32mgreen\x1b[0m done\r")).toBe("green done");
    expect(plainLine("50%\r100%")).toBe("100%");
    expect(plainLine("abc\rX")).toBe("Xbc");
    expect(plainLine("ab\bc")).toBe("ac");
    expect(plainLine("\x1b]0;title\x07prompt$ ")).toBe("prompt$ ");
    const { starts, lines } = splitLines(enc.encode("a\nbb\nc"), 100);
    expect(lines).toEqual(["a", "bb", "c"]);
    expect(starts).toEqual([100, 102, 105]);
  });
});

describe("scrollback window", () => {
  it("pages back from the end to the first byte, with no line lost or doubled", () => {
    const out = seq(100_000);
    const read = reader(out);
    const w = new ScrollbackWindow(1_000_000, 4096);
    w.reset(out.length, 0, out.length);
    let pages = 0;
    for (let want = w.wantEarlier(); want; want = w.wantEarlier()) {
      const r = read(want);
      w.addEarlier(r.from, r.bytes, 0, out.length);
      pages += 1;
    }
    expect(pages).toBeGreaterThan(100);
    expect(w.atStart).toBe(true);
    expect(w.lines.length).toBe(100_000);
    expect(w.lines.every((l, i) => l === String(i + 1))).toBe(true);
  });

  it("keeps at most maxLines, trimming the far end, and pages it back in", () => {
    const out = seq(50_000);
    const read = reader(out);
    const w = new ScrollbackWindow(2_000, 4096);
    w.reset(out.length, 0, out.length);
    while (!w.atStart) {
      const r = read(w.wantEarlier()!);
      w.addEarlier(r.from, r.bytes, 0, out.length);
      expect(w.lines.length).toBeLessThanOrEqual(2_000);
    }
    expect(w.lines[0]).toBe("1");
    expect(w.lines.at(-1)).toBe("2000");
    expect(w.atEnd).toBe(false);
    // and down again: contiguous, bounded, up to the end
    let removed = 0;
    for (let want = w.wantLater(); want; want = w.wantLater()) {
      const r = read(want);
      removed += w.addLater(r.from, r.bytes, 0, out.length);
      expect(w.lines.length).toBeLessThanOrEqual(2_000);
      const first = Number(w.lines[0]);
      expect(w.lines.every((l, i) => Number(l) === first + i)).toBe(true);
    }
    expect(removed).toBe(48_000);
    expect(w.lines.at(-1)).toBe("50000");
  });

  it("jumps to the first kept byte and reads forwards", () => {
    const out = seq(10_000);
    const oldest = 1000; // the agent dropped the first 1000 bytes: mid-line
    const read = reader(out, oldest);
    const w = new ScrollbackWindow(100_000, 1024);
    w.reset(oldest, oldest, out.length);
    for (let want = w.wantLater(); want; want = w.wantLater()) {
      const r = read(want);
      w.addLater(r.from, r.bytes, oldest, out.length);
    }
    expect(w.starts[0]).toBe(oldest);
    expect(w.lines.at(-1)).toBe("10000");
    // the lines after the first (partial) one follow each other
    const rest = w.lines.slice(1).map(Number);
    expect(rest.every((n, i) => i === 0 || n === rest[i - 1] + 1)).toBe(true);
  });

  it("a line without its newline at the end is read again once the output grows", () => {
    const w = new ScrollbackWindow(100, 1024);
    const first = enc.encode("a\nprom");
    w.reset(0, 0, first.length);
    w.addLater(0, first, 0, first.length);
    expect(w.lines).toEqual(["a", "prom"]);
    const grown = enc.encode("a\nprompt$ ls\nb\n");
    w.liveEnd = grown.length;
    const want = w.wantLater()!;
    expect(want.from).toBe(2);
    w.addLater(want.from, grown.subarray(want.from, want.to), 0, grown.length);
    expect(w.lines).toEqual(["a", "prompt$ ls", "b"]);
  });

  it("ignores a page that no longer fits (the window was reset meanwhile)", () => {
    const w = new ScrollbackWindow();
    w.reset(100, 0, 100);
    expect(w.addEarlier(0, new Uint8Array(10), 0, 100)).toBe(0);
    expect(w.lines).toEqual([]);
  });
});
