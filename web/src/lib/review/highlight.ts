// Syntax colours for diff lines. A block of code is highlighted whole (so a
// comment or string that spans lines keeps its colour) and the HTML is cut
// into lines, closing the open spans at each line end and opening them again
// on the next line. Word marks are then laid over a line's HTML the same way.
// highlight.js's output is only `<span class="...">`, `</span>` and escaped
// text, which is what these walkers expect.

import { highlight } from "../claude/markdown";

const EXT: Record<string, string> = {
  rs: "rust",
  ts: "typescript",
  tsx: "typescript",
  mts: "typescript",
  cts: "typescript",
  js: "javascript",
  jsx: "javascript",
  mjs: "javascript",
  cjs: "javascript",
  svelte: "xml",
  py: "python",
  go: "go",
  json: "json",
  ipynb: "python",
  md: "markdown",
  markdown: "markdown",
  css: "css",
  html: "xml",
  htm: "xml",
  xml: "xml",
  svg: "xml",
  yml: "yaml",
  yaml: "yaml",
  sh: "bash",
  bash: "bash",
  zsh: "bash",
  sql: "sql",
  diff: "diff",
  patch: "diff",
};

/** The highlight.js language for a file name, or undefined (plain text). */
export function languageFor(path: string): string | undefined {
  const base = path.split("/").pop() ?? path;
  if (/^dockerfile$|\.dockerfile$/i.test(base)) return "dockerfile";
  const dot = base.lastIndexOf(".");
  if (dot < 0) return undefined;
  return EXT[base.slice(dot + 1).toLowerCase()];
}

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Above this many characters a block is shown uncoloured (highlighting is the slow part). */
const MAX_HIGHLIGHT_CHARS = 1_000_000;

/** HTML of each line of `lines`, highlighted as one block. */
export function highlightLines(lines: string[], language: string | undefined): string[] {
  if (lines.length === 0) return [];
  const code = lines.join("\n");
  if (!language || code.length > MAX_HIGHLIGHT_CHARS) return lines.map(escapeHtml);
  const { html, language: used } = highlight(code, language);
  if (!used) return lines.map(escapeHtml);
  const out = splitHtmlLines(html);
  // Should never differ; if it does, plain text is better than shifted colours.
  return out.length === lines.length ? out : lines.map(escapeHtml);
}

/** Cuts highlighted HTML at newlines, keeping every line's spans balanced. */
export function splitHtmlLines(html: string): string[] {
  const lines: string[] = [];
  const open: string[] = [];
  let cur = "";
  let i = 0;
  while (i < html.length) {
    const c = html[i];
    if (c === "<") {
      const end = html.indexOf(">", i);
      const tag = html.slice(i, end + 1);
      if (tag.startsWith("</")) open.pop();
      else open.push(tag);
      cur += tag;
      i = end + 1;
    } else if (c === "\n") {
      cur += "</span>".repeat(open.length);
      lines.push(cur);
      cur = open.join("");
      i++;
    } else {
      const next = nextSpecial(html, i);
      cur += html.slice(i, next);
      i = next;
    }
  }
  lines.push(cur);
  return lines;
}

function nextSpecial(s: string, from: number): number {
  for (let j = from; j < s.length; j++) {
    const c = s[j];
    if (c === "<" || c === "\n") return j;
  }
  return s.length;
}

/**
 * Lays `<mark>` over the characters of a line's HTML that the segments mark
 * as changed. Positions count characters of the text (an entity is one).
 */
export function markChanged(lineHtml: string, segments: { text: string; changed: boolean }[]): string {
  // Changed ranges in text positions.
  const ranges: [number, number][] = [];
  let pos = 0;
  for (const s of segments) {
    if (s.changed && s.text.length > 0) ranges.push([pos, pos + s.text.length]);
    pos += s.text.length;
  }
  if (ranges.length === 0) return lineHtml;
  const open: string[] = [];
  let out = "";
  let textPos = 0;
  let r = 0;
  let inMark = false;
  const toggle = (on: boolean): void => {
    out += "</span>".repeat(open.length) + (on ? "<mark>" : "</mark>") + open.join("");
    inMark = on;
  };
  let i = 0;
  while (i <= lineHtml.length) {
    while (r < ranges.length && textPos >= ranges[r][1]) r++;
    const shouldMark = r < ranges.length && textPos >= ranges[r][0] && textPos < ranges[r][1];
    if (shouldMark !== inMark) toggle(shouldMark);
    if (i === lineHtml.length) break;
    const c = lineHtml[i];
    if (c === "<") {
      const end = lineHtml.indexOf(">", i);
      const tag = lineHtml.slice(i, end + 1);
      if (tag.startsWith("</")) open.pop();
      else open.push(tag);
      out += tag;
      i = end + 1;
      continue;
    }
    if (c === "&") {
      const end = lineHtml.indexOf(";", i);
      out += lineHtml.slice(i, end + 1);
      i = end + 1;
    } else {
      out += c;
      i++;
    }
    textPos++;
  }
  if (inMark) out += "</span>".repeat(open.length) + "</mark>" + open.join("");
  return out;
}
