// A FileDiff as one HTML string: built in one pass and set once, because a
// 5,000-line diff as 5,000 framework-managed rows is what makes a page
// stutter. Every piece of text in it is escaped (by highlight.js or here).

import type { FileDiff, Hunk } from "./diff";
import { highlightLines, markChanged } from "./highlight";

/** Lines drawn before "show the rest" (a bound on what one diff can cost the page). */
export const RENDER_LIMIT = 10_000;

export interface Rendered {
  html: string;
  /** Lines left out by `limit`. */
  hidden: number;
}

export function renderDiff(diff: FileDiff, language: string | undefined, limit = RENDER_LIMIT): Rendered {
  const parts: string[] = [];
  let budget = limit;
  let hidden = 0;
  for (const h of diff.hunks) {
    if (budget <= 0) {
      hidden += h.lines.length;
      continue;
    }
    const take = Math.min(h.lines.length, budget);
    hidden += h.lines.length - take;
    budget -= take;
    parts.push(renderHunk(h, language, take, diff.hunks.length > 1 || h.oldStart > 1));
  }
  return { html: parts.join(""), hidden };
}

function renderHunk(h: Hunk, language: string | undefined, take: number, withHeader: boolean): string {
  const lines = h.lines.slice(0, take);
  const oldSide: string[] = [];
  const newSide: string[] = [];
  for (const l of lines) {
    if (l.kind !== "add") oldSide.push(l.text);
    if (l.kind !== "del") newSide.push(l.text);
  }
  const oldHtml = highlightLines(oldSide, language);
  const newHtml = highlightLines(newSide, language);
  let o = 0;
  let n = 0;
  let out = withHeader ? `<div class="hh">@@ −${h.oldStart} +${h.newStart} @@</div>` : "";
  for (const l of lines) {
    let html: string;
    if (l.kind === "ctx") {
      html = newHtml[n++];
      o++;
    } else if (l.kind === "del") {
      html = oldHtml[o++];
    } else {
      html = newHtml[n++];
    }
    if (l.words) html = markChanged(html, l.words);
    const sign = l.kind === "add" ? "+" : l.kind === "del" ? "−" : " ";
    out += `<div class="l ${l.kind}"><span class="n">${l.oldNo ?? ""}</span><span class="n">${l.newNo ?? ""}</span><span class="s">${sign}</span><span class="c">${html || " "}</span></div>`;
  }
  return out;
}
