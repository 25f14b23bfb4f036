import { describe, expect, it } from "vitest";
import { binaryStringToBytes, decodeFrame, encodeFrame, FrameError, FrameKind, inputFrame } from "../src/lib/frame";

describe("frame codec", () => {
  it("lays out bytes as api/src/frame.rs documents", () => {
    const bytes = encodeFrame(FrameKind.Output, "ab", 0x0102, new Uint8Array([104, 105]));
    expect(Array.from(bytes)).toEqual([1, 2, 97, 98, 0, 0, 0, 0, 0, 0, 1, 2, 104, 105]);
  });

  it("round-trips every kind, long ids and large offsets", () => {
    const id = "A".repeat(64);
    for (const kind of [FrameKind.Output, FrameKind.Snapshot, FrameKind.Input]) {
      const payload = new Uint8Array(300).map((_, i) => i & 0xff);
      const f = decodeFrame(encodeFrame(kind, id, 2 ** 40 + 7, payload));
      expect(f.kind).toBe(kind);
      expect(f.id).toBe(id);
      expect(f.offset).toBe(2 ** 40 + 7);
      expect(Array.from(f.payload)).toEqual(Array.from(payload));
    }
  });

  it("decodes from a view into a larger buffer", () => {
    const inner = encodeFrame(FrameKind.Output, "s1", 5, new Uint8Array([1, 2, 3]));
    const big = new Uint8Array(inner.length + 10);
    big.set(inner, 7);
    const f = decodeFrame(big.subarray(7, 7 + inner.length));
    expect(f.offset).toBe(5);
    expect(Array.from(f.payload)).toEqual([1, 2, 3]);
  });

  it("rejects short, unknown and badly named frames", () => {
    expect(() => decodeFrame(new Uint8Array([]))).toThrow(FrameError);
    expect(() => decodeFrame(new Uint8Array([1]))).toThrow(/shorter/);
    expect(() => decodeFrame(new Uint8Array([9, 1, 97, 0, 0, 0, 0, 0, 0, 0, 0]))).toThrow(/unknown frame kind 9/);
    expect(() => decodeFrame(new Uint8Array([1, 5, 97, 98]))).toThrow(/shorter/);
    expect(() => decodeFrame(new Uint8Array([1, 0, 0, 0, 0, 0, 0, 0, 0, 0]))).toThrow(/session id/);
    expect(() => decodeFrame(new Uint8Array([3, 1, 47, 0, 0, 0, 0, 0, 0, 0, 0]))).toThrow(/session id/);
    // offset beyond what a JS number holds exactly
    expect(() => decodeFrame(new Uint8Array([1, 1, 97, 255, 255, 255, 255, 255, 255, 255, 255]))).toThrow(/range/);
  });

  it("allows an empty payload", () => {
    const f = decodeFrame(encodeFrame(FrameKind.Input, "x", 0, new Uint8Array()));
    expect(f.payload.length).toBe(0);
  });

  it("refuses to encode bad ids or offsets", () => {
    expect(() => encodeFrame(FrameKind.Input, "../x", 0, new Uint8Array())).toThrow(FrameError);
    expect(() => encodeFrame(FrameKind.Input, "", 0, new Uint8Array())).toThrow(FrameError);
    expect(() => encodeFrame(FrameKind.Input, "x", -1, new Uint8Array())).toThrow(FrameError);
  });

  it("encodes typed text as UTF-8 input frames", () => {
    const f = decodeFrame(inputFrame("s", "é\r"));
    expect(f.kind).toBe(FrameKind.Input);
    expect(f.offset).toBe(0);
    expect(Array.from(f.payload)).toEqual([0xc3, 0xa9, 13]);
    expect(Array.from(binaryStringToBytes("\x1b[M\xff"))).toEqual([27, 91, 77, 255]);
  });
});
