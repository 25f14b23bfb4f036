// The golden frames shared with the Rust codec (api/tests/vectors/frames.json,
// checked there by api/tests/frame_vectors.rs): the same bytes encode and
// decode alike on both sides, and the same bad frames are refused.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { decodeFrame, encodeFrame, FrameError, FrameKind } from "../src/lib/frame";

interface Good { name: string; kind: number; id: string; offset: string; payload: string; bytes: string; jsError?: string }
interface Bad { name: string; bytes: string; error: string }

const vectors = JSON.parse(
  readFileSync(new URL("../../api/tests/vectors/frames.json", import.meta.url), "utf8"),
) as { frames: Good[]; invalid: Bad[] };

function fromHex(s: string): Uint8Array {
  return new Uint8Array((s.match(/../g) ?? []).map((b) => parseInt(b, 16)));
}

function toHex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

const KINDS = new Set<number>(Object.values(FrameKind));

describe("golden frame vectors", () => {
  it("covers every kind", () => {
    expect(new Set(vectors.frames.map((g) => g.kind))).toEqual(KINDS);
  });

  for (const g of vectors.frames) {
    it(`encodes and decodes: ${g.name}`, () => {
      if (!KINDS.has(g.kind)) throw new Error(`no frame kind ${g.kind}`);
      const kind = g.kind as FrameKind;
      const bytes = fromHex(g.bytes);
      if (g.jsError !== undefined) {
        expect(() => decodeFrame(bytes)).toThrow(new FrameError(g.jsError));
        return;
      }
      const offset = Number(g.offset);
      expect(Number.isSafeInteger(offset)).toBe(true);
      expect(toHex(encodeFrame(kind, g.id, offset, fromHex(g.payload)))).toBe(g.bytes);
      const f = decodeFrame(bytes);
      expect(f.kind).toBe(g.kind);
      expect(f.id).toBe(g.id);
      expect(f.offset).toBe(offset);
      expect(toHex(f.payload)).toBe(g.payload);
    });
  }

  for (const b of vectors.invalid) {
    it(`refuses: ${b.name}`, () => {
      expect(() => decodeFrame(fromHex(b.bytes))).toThrow(new FrameError(b.error));
    });
  }
});
