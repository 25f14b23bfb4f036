// Where a session's output stream stands on this client, so that a reconnect
// asks for exactly the bytes it missed and a replay that overlaps what was
// already written is not written twice.

export interface Accepted {
  /** The bytes to write to the terminal (possibly a tail of the frame's payload, possibly empty). */
  bytes: Uint8Array;
  /** Set when the frame started past the expected offset: the bytes in between never arrived. */
  gap?: { from: number; to: number };
}

export class OffsetTracker {
  /** Offset of the next byte expected; null until a snapshot or attach fixes it. */
  next: number | null = null;

  /** A snapshot reflects the stream up to `offset`; live output continues from there. */
  snapshot(offset: number): void {
    this.next = offset;
  }

  /** The server announced the offset the replayed or live stream starts at. */
  startAt(offset: number): void {
    if (this.next === null || offset > this.next) this.next = offset;
  }

  /** An output frame arrived: returns what to write, dropping any part already written. */
  output(offset: number, payload: Uint8Array): Accepted {
    const end = offset + payload.length;
    if (this.next === null) {
      this.next = end;
      return { bytes: payload };
    }
    if (end <= this.next) return { bytes: payload.subarray(payload.length) };
    if (offset < this.next) {
      const bytes = payload.subarray(this.next - offset);
      this.next = end;
      return { bytes };
    }
    const gap = offset > this.next ? { from: this.next, to: offset } : undefined;
    this.next = end;
    return gap ? { bytes: payload, gap } : { bytes: payload };
  }

  /** What `session.attach` should carry as `since` (undefined: ask for a snapshot). */
  since(): number | undefined {
    return this.next ?? undefined;
  }
}
