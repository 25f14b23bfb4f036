// Scrollback without an end: a window of lines over a byte range of a
// session's output, paged from the agent (`session.read`) as the reader
// scrolls, back to the first byte the agent keeps. The live terminal keeps
// its own 10,000 lines; this window holds at most `maxLines` more, so a tab
// stays small however long the output is.
//
// Pages are cut at line starts: a page read backwards drops the bytes before
// its first newline (the tail of a line that began earlier, read whole with
// the next page); a page read forwards keeps only up to its last newline.
// Each line remembers the byte offset it starts at, so the window can be
// trimmed at either end and paged again from exactly there.

import stripAnsi from "strip-ansi";

export interface Range {
  from: number;
  to: number;
}

const NL = 0x0a;
const utf8 = new TextDecoder();

/** One line of terminal output as plain text: escape sequences removed, carriage returns and backspaces applied. */
export function plainLine(raw: string): string {
  let s = stripAnsi(raw);
  if (s.endsWith("\r")) s = s.slice(0, -1);
  // A carriage return starts the line over (progress bars): what was written last shows.
  const cr = s.lastIndexOf("\r");
  if (cr >= 0) {
    const tail = s.slice(cr + 1);
    const before = s.slice(0, cr).split("\r").pop() ?? "";
    s = tail + before.slice(tail.length);
  }
  if (s.includes("\b")) {
    const out: string[] = [];
    for (const c of s) {
      if (c === "\b") out.pop();
      else out.push(c);
    }
    s = out.join("");
  }
  // Other control characters (bell, shift-in/out) draw nothing.
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\x00-\x08\x0b-\x1f\x7f]/g, "");
}

/** Splits `bytes` (output from `base`) into lines with their start offsets. A trailing part without a newline is a line too. */
export function splitLines(bytes: Uint8Array, base: number): { starts: number[]; lines: string[] } {
  const starts: number[] = [];
  const lines: string[] = [];
  let at = 0;
  while (at < bytes.length) {
    let nl = bytes.indexOf(NL, at);
    if (nl < 0) nl = bytes.length;
    starts.push(base + at);
    lines.push(plainLine(utf8.decode(bytes.subarray(at, nl))));
    at = nl + 1;
  }
  return { starts, lines };
}

export class ScrollbackWindow {
  /** Byte offset of the first line in the window. */
  start = 0;
  /** Byte offset just past the window. */
  end = 0;
  /** The oldest byte the agent keeps, as it last said. */
  oldest = 0;
  /** The end of the output, as the agent last said. */
  liveEnd = 0;
  lines: string[] = [];
  /** Byte offset each line starts at. */
  starts: number[] = [];
  /** The last line had no newline yet (the end of the output then). */
  private openLast = false;

  constructor(
    readonly maxLines = 20_000,
    readonly pageBytes = 128 * 1024,
  ) {}

  /** An empty window at `at` (the live end, or the oldest byte), before paging from there. */
  reset(at: number, oldest: number, liveEnd: number): void {
    this.start = at;
    this.end = at;
    this.oldest = oldest;
    this.liveEnd = Math.max(liveEnd, at);
    this.lines = [];
    this.starts = [];
    this.openLast = false;
  }

  /** The first byte the agent keeps is in the window. */
  get atStart(): boolean {
    return this.start <= this.oldest;
  }

  /** The window reaches the end of the output. */
  get atEnd(): boolean {
    return this.end >= this.liveEnd;
  }

  /** The range to read to extend the window upwards; null at the start. */
  wantEarlier(): Range | null {
    if (this.atStart) return null;
    return { from: Math.max(this.oldest, this.start - this.pageBytes), to: this.start };
  }

  /** The range to read to extend the window downwards; null at the end. */
  wantLater(): Range | null {
    if (this.atEnd) return null;
    // A last line without its newline is read again, whole.
    const from = this.openLast ? this.starts[this.starts.length - 1] : this.end;
    return { from, to: Math.min(this.liveEnd, from + this.pageBytes) };
  }

  private learn(oldest: number, liveEnd: number): void {
    this.oldest = oldest;
    this.liveEnd = Math.max(this.liveEnd, liveEnd);
  }

  /**
   * Bytes read for `wantEarlier`, starting at `from`. Returns how many lines
   * were added at the top (to keep the reader's place). Lines past
   * `maxLines` are dropped at the bottom.
   */
  addEarlier(from: number, bytes: Uint8Array, oldest: number, liveEnd: number): number {
    this.learn(oldest, liveEnd);
    if (from + bytes.length !== this.start) return 0; // not the page asked for (a reset came between)
    let cut = Math.max(0, this.oldest - from);
    if (from + cut > this.oldest) {
      // The bytes before the first newline belong to a line that started earlier.
      const nl = bytes.indexOf(NL, cut);
      if (nl >= 0 && nl + 1 < bytes.length) cut = nl + 1;
    }
    const { starts, lines } = splitLines(bytes.subarray(cut), from + cut);
    if (this.lines.length === 0) {
      this.end = from + bytes.length;
      this.openLast = bytes.length > 0 && bytes[bytes.length - 1] !== NL;
    }
    this.start = from + cut;
    this.lines = lines.concat(this.lines);
    this.starts = starts.concat(this.starts);
    if (this.lines.length > this.maxLines) {
      this.end = this.starts[this.maxLines];
      this.lines.length = this.maxLines;
      this.starts.length = this.maxLines;
      this.openLast = false;
    }
    return lines.length;
  }

  /**
   * Bytes read for `wantLater`, starting at `from`. Returns how many lines
   * were removed at the top (to keep the reader's place).
   */
  addLater(from: number, bytes: Uint8Array, oldest: number, liveEnd: number): number {
    this.learn(oldest, liveEnd);
    const want = this.wantLater();
    if (!want || from !== want.from) return 0;
    let keep = bytes.length;
    if (from + bytes.length < this.liveEnd) {
      // Up to the last newline; the rest comes whole with the next page.
      const nl = bytes.lastIndexOf(NL);
      if (nl >= 0) keep = nl + 1;
    }
    if (this.openLast) {
      this.lines.pop();
      this.starts.pop();
    }
    const { starts, lines } = splitLines(bytes.subarray(0, keep), from);
    if (this.lines.length === 0) this.start = from;
    this.lines = this.lines.concat(lines);
    this.starts = this.starts.concat(starts);
    this.end = from + keep;
    this.openLast = keep > 0 && bytes[keep - 1] !== NL;
    const over = this.lines.length - this.maxLines;
    if (over > 0) {
      this.lines = this.lines.slice(over);
      this.starts = this.starts.slice(over);
      this.start = this.starts[0];
      return over;
    }
    return 0;
  }
}
