// Binary WebSocket frames, the hot path for terminal bytes (api/src/frame.rs):
//   [kind u8][idlen u8][id: idlen ASCII bytes][offset u64 BE][payload]

import { FrameKind, MAX_SESSION_ID_LEN } from "./generated/protocol";

// The kind byte's values come from api/src/frame.rs (generated); the codec
// below is checked against the Rust one by the shared vectors in
// api/tests/vectors/frames.json.
export { FrameKind, MAX_SESSION_ID_LEN };
export type FrameKind = (typeof FrameKind)[keyof typeof FrameKind];

export interface Frame {
  kind: FrameKind;
  id: string;
  /** Offsets stay far below 2^53 in practice; larger ones are rejected on decode. */
  offset: number;
  payload: Uint8Array;
}

export class FrameError extends Error {}

const SESSION_ID = new RegExp(`^[A-Za-z0-9_-]{1,${MAX_SESSION_ID_LEN}}$`);

export function isValidSessionId(id: string): boolean {
  return SESSION_ID.test(id);
}

export function headerLen(idLen: number): number {
  return 2 + idLen + 8;
}

const KINDS = new Set<number>(Object.values(FrameKind));

function isFrameKind(b: number): b is FrameKind {
  return KINDS.has(b);
}

/** Decodes a frame; the payload is a view into `buf`, not a copy. */
export function decodeFrame(data: ArrayBuffer | Uint8Array): Frame {
  const buf = data instanceof Uint8Array ? data : new Uint8Array(data);
  if (buf.length < 2) throw new FrameError(`frame is ${buf.length} bytes, shorter than its header`);
  const kind = buf[0];
  if (!isFrameKind(kind)) {
    throw new FrameError(`unknown frame kind ${kind}`);
  }
  const n = buf[1];
  if (buf.length < headerLen(n)) throw new FrameError(`frame is ${buf.length} bytes, shorter than its header`);
  let id = "";
  for (let i = 0; i < n; i++) id += String.fromCharCode(buf[2 + i]);
  if (!isValidSessionId(id)) throw new FrameError("session id in frame is not valid");
  const view = new DataView(buf.buffer, buf.byteOffset + 2 + n, 8);
  const big = view.getBigUint64(0, false);
  if (big > BigInt(Number.MAX_SAFE_INTEGER)) throw new FrameError("frame offset out of range");
  return { kind, id, offset: Number(big), payload: buf.subarray(headerLen(n)) };
}

export function encodeFrame(kind: FrameKind, id: string, offset: number, payload: Uint8Array): Uint8Array<ArrayBuffer> {
  if (!isValidSessionId(id)) throw new FrameError("session id is not valid");
  if (!Number.isSafeInteger(offset) || offset < 0) throw new FrameError("offset out of range");
  const out = new Uint8Array(headerLen(id.length) + payload.length);
  out[0] = kind;
  out[1] = id.length;
  for (let i = 0; i < id.length; i++) out[2 + i] = id.charCodeAt(i);
  new DataView(out.buffer, 2 + id.length, 8).setBigUint64(0, BigInt(offset), false);
  out.set(payload, headerLen(id.length));
  return out;
}

const utf8 = new TextEncoder();

/** An Input frame carrying keystrokes typed as text. */
export function inputFrame(id: string, data: string | Uint8Array): Uint8Array<ArrayBuffer> {
  return encodeFrame(FrameKind.Input, id, 0, typeof data === "string" ? utf8.encode(data) : data);
}

/** xterm's onBinary hands over a string whose char codes are raw bytes (mouse reports). */
export function binaryStringToBytes(s: string): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i) & 0xff;
  return out;
}
