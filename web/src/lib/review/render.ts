// A FileDiff drawn a window at a time. Every row (hunk header or line) has
// the same height, so the view knows where row N is without drawing the rows
// before it, and draws only what is in sight (plus a margin) as one HTML
// string. Syntax colours and word marks are computed for the rows drawn and
// kept: a 5,000-line diff costs what its first screen costs. Measured with
// scripts/bench-web-diff.sh; highlight.js over a whole 5,000-line file was
// the slow part (about 10x the rest), hence the blocks.
//
// Every piece of text in the HTML is escaped (by highlight.js or here).

import { lineWords, type FileDiff, type Hunk } from "./diff";
import { highlightLines, markChanged } from "./highlight";

/**
 * Lines highlighted together. A construct spanning a block edge (a long
 * comment) loses its colour past the edge; blocks keep a first screen cheap.
 */
const BLOCK = 200;

/** One row: a hunk's header (line -1) or one of its lines. */
export interface RowRef {
  hunk: number;
  line: number;
}

export class DiffRenderer {
  readonly rows: RowRef[] = [];
  private readonly blocks = new Map<string, { old: string[]; neu: string[]; oldAt: number[]; newAt: number[] }>();
  private readonly words = new Map<string, ReturnType<typeof lineWords>>();
  private readonly headers: boolean;

  constructor(
    readonly diff: FileDiff,
    private readonly language: string | undefined,
  ) {
    this.headers = diff.hunks.length > 1 || (diff.hunks[0]?.oldStart ?? 1) > 1;
    diff.hunks.forEach((h, hi) => {
      if (this.headers) this.rows.push({ hunk: hi, line: -1 });
      for (let li = 0; li < h.lines.length; li++) this.rows.push({ hunk: hi, line: li });
    });
  }

  /** HTML of rows [from, to). */
  html(from: number, to: number): string {
    let out = "";
    const end = Math.min(to, this.rows.length);
    for (let r = Math.max(0, from); r < end; r++) {
      const { hunk, line } = this.rows[r];
      const h = this.diff.hunks[hunk];
      out += line < 0 ? `<div class="hh">@@ −${h.oldStart} +${h.newStart} @@</div>` : this.lineHtml(hunk, h, line);
    }
    return out;
  }

  private lineHtml(hi: number, h: Hunk, li: number): string {
    const l = h.lines[li];
    const b = this.block(hi, h, Math.floor(li / BLOCK));
    const k = li % BLOCK;
    let html = l.kind === "del" ? b.old[b.oldAt[k]] : b.neu[b.newAt[k]];
    const key = `${hi}:${li}`;
    let words = this.words.get(key);
    if (words === undefined) {
      words = lineWords(h.lines, li);
      this.words.set(key, words);
    }
    if (words) html = markChanged(html, words);
    const sign = l.kind === "add" ? "+" : l.kind === "del" ? "−" : " ";
    return `<div class="l ${l.kind}"><span class="n">${l.oldNo ?? ""}</span><span class="n">${l.newNo ?? ""}</span><span class="s">${sign}</span><span class="c">${html || " "}</span></div>`;
  }

  /** The highlighted old and new sides of one block of a hunk's lines. */
  private block(hi: number, h: Hunk, bi: number): { old: string[]; neu: string[]; oldAt: number[]; newAt: number[] } {
    const key = `${hi}:${bi}`;
    const hit = this.blocks.get(key);
    if (hit) return hit;
    const lines = h.lines.slice(bi * BLOCK, (bi + 1) * BLOCK);
    const oldSide: string[] = [];
    const newSide: string[] = [];
    const oldAt: number[] = [];
    const newAt: number[] = [];
    for (const l of lines) {
      oldAt.push(oldSide.length);
      newAt.push(newSide.length);
      if (l.kind !== "add") oldSide.push(l.text);
      if (l.kind !== "del") newSide.push(l.text);
    }
    const b = { old: highlightLines(oldSide, this.language), neu: highlightLines(newSide, this.language), oldAt, newAt };
    this.blocks.set(key, b);
    return b;
  }
}
