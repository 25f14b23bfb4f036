// Diffs as the review views show them: hunks of numbered lines, with the
// words that changed inside a changed line. Both kinds of source end up in
// the same shape: two texts (a permission prompt: the file on disk and what
// the tool would make of it) are diffed line by line, and a unified diff from
// git goes through jsdiff's `parsePatch`. Words within a line: jsdiff's
// `diffWordsWithSpace`. Pure: no DOM.
//
// Lines of two texts: Jest's diff-sequences (Myers, linear space), which
// scripts/bench-web-diff.sh and a node run showed 10 to 20 times faster than
// jsdiff's line diff on 5,000-line files (one line in ten edited: 14-42 ms
// against 330-610 ms on the loaded 2-core machine). Its cost grows with
// lines x edits and it cannot be told to stop, so texts of more than
// MAX_SEQUENCE_LINES lines in all go to jsdiff, which can
// (`maxEditLength`, `timeout`).

import diffSequences from "@jest/diff-sequences";
import { diffWordsWithSpace, parsePatch, structuredPatch, type StructuredPatchHunk } from "diff";

export type LineKind = "ctx" | "add" | "del";

/** A piece of a changed line; `changed` marks the words that differ from its partner line. */
export interface Segment {
  text: string;
  changed: boolean;
}

export interface DiffLine {
  kind: LineKind;
  text: string;
  oldNo?: number;
  newNo?: number;
  /** Index (in its hunk) of the line this one replaces or is replaced by. */
  pair?: number;
}

export interface Hunk {
  oldStart: number;
  newStart: number;
  lines: DiffLine[];
}

export type FileStatus = "added" | "deleted" | "modified" | "renamed";

export interface FileDiff {
  /** Path after the change (before it, for a deletion). */
  path: string;
  oldPath?: string;
  status: FileStatus;
  hunks: Hunk[];
  added: number;
  removed: number;
  /** Git said "Binary files differ": no lines to show. */
  binary?: boolean;
  /** The texts differ too much to diff within the edit budget: shown as replaced whole. */
  replacedWhole?: boolean;
}

/**
 * Beyond this many line edits, or this long, jsdiff gives up and the file is
 * shown as replaced whole: Myers' diff costs about edits² steps, so the bound
 * keeps a rewrite of a huge file from freezing the page.
 */
const MAX_EDIT_LENGTH = 4_000;
const DIFF_TIMEOUT_MS = 500;
/** Word diffs only for lines up to this long (a minified line would cost more than it shows). */
const MAX_WORD_LINE = 2_000;

/** Above this many lines (both texts together) the bounded jsdiff path is taken. */
const MAX_SEQUENCE_LINES = 20_000;

/** The diff of two texts. `before: null` means the file does not exist yet. */
export function diffTexts(path: string, before: string | null, after: string | null, context = 3): FileDiff {
  const status: FileStatus = before === null ? "added" : after === null ? "deleted" : "modified";
  const a = before ?? "";
  const b = after ?? "";
  const aLines = splitLines(a);
  const bLines = splitLines(b);
  // A change of the final newline alone is jsdiff's to show ("No newline at end of file").
  const sameEnding = a.endsWith("\n") === b.endsWith("\n") || a === "" || b === "";
  if (sameEnding && aLines.length + bLines.length <= MAX_SEQUENCE_LINES) {
    return finish({ path, status, hunks: hunksOf(lineScript(aLines, bLines), context), added: 0, removed: 0 });
  }
  const patch = structuredPatch(path, path, a, b, undefined, undefined, { context, maxEditLength: MAX_EDIT_LENGTH, timeout: DIFF_TIMEOUT_MS });
  if (patch === undefined) {
    // Too different to diff cheaply: every old line out, every new line in.
    const whole = structuredPatch(path, path, a, "", undefined, undefined, { context: 0 });
    const added = structuredPatch(path, path, "", b, undefined, undefined, { context: 0 });
    const hunks = [...whole.hunks, ...added.hunks].map(toHunk);
    return finish({ path, status, hunks, added: 0, removed: 0, replacedWhole: true });
  }
  return finish({ path, status, hunks: patch.hunks.map(toHunk), added: 0, removed: 0 });
}

/** A text's lines; a final newline ends the last line rather than starting an empty one. */
export function splitLines(text: string): string[] {
  if (text === "") return [];
  const lines = text.split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  return lines;
}

/** Every line of both texts in order: kept, removed, added. */
function lineScript(a: string[], b: string[]): DiffLine[] {
  const out: DiffLine[] = [];
  let ai = 0;
  let bi = 0;
  const changesUpTo = (aEnd: number, bEnd: number): void => {
    for (; ai < aEnd; ai++) out.push({ kind: "del", text: a[ai], oldNo: ai + 1 });
    for (; bi < bEnd; bi++) out.push({ kind: "add", text: b[bi], newNo: bi + 1 });
  };
  diffSequences(
    a.length,
    b.length,
    (i, j) => a[i] === b[j],
    (n, aCommon, bCommon) => {
      changesUpTo(aCommon, bCommon);
      for (let k = 0; k < n; k++, ai++, bi++) out.push({ kind: "ctx", text: a[ai], oldNo: ai + 1, newNo: bi + 1 });
    },
  );
  changesUpTo(a.length, b.length);
  return out;
}

/** The changed lines with `context` kept lines around them, cut where kept lines run longer. */
function hunksOf(script: DiffLine[], context: number): Hunk[] {
  const hunks: Hunk[] = [];
  let i = 0;
  while (i < script.length) {
    while (i < script.length && script[i].kind === "ctx") i++;
    if (i >= script.length) break;
    const start = Math.max(0, i - context);
    let end = i;
    // Extend over changes separated by at most 2 x context kept lines.
    for (;;) {
      while (end < script.length && script[end].kind !== "ctx") end++;
      let run = end;
      while (run < script.length && script[run].kind === "ctx") run++;
      if (run < script.length && run - end <= 2 * context) end = run;
      else {
        end = Math.min(script.length, end + context);
        break;
      }
    }
    const lines = script.slice(start, end);
    hunks.push({ oldStart: startOf(script, start, "old"), newStart: startOf(script, start, "new"), lines });
    i = end;
  }
  return hunks;
}

/** A hunk's first line number on one side (as git writes it: the line before, for an empty side). */
function startOf(script: DiffLine[], from: number, side: "old" | "new"): number {
  for (let k = from; k < script.length; k++) {
    const n = side === "old" ? script[k].oldNo : script[k].newNo;
    if (n !== undefined) return n;
  }
  for (let k = from - 1; k >= 0; k--) {
    const n = side === "old" ? script[k].oldNo : script[k].newNo;
    if (n !== undefined) return n;
  }
  return 0;
}

/** The files of a unified diff (git's or any other), in order. */
export function parseUnified(text: string): FileDiff[] {
  if (!text.trim()) return [];
  const files = parsePatch(text);
  const out: FileDiff[] = [];
  for (const f of files) {
    const oldPath = stripPrefix(f.oldFileName);
    const newPath = stripPrefix(f.newFileName);
    let status: FileStatus = "modified";
    if (f.isCreate || oldPath === "/dev/null") status = "added";
    else if (f.isDelete || newPath === "/dev/null") status = "deleted";
    else if (f.isRename || (oldPath && newPath && oldPath !== newPath)) status = "renamed";
    const path = (status === "deleted" ? oldPath : newPath) ?? oldPath ?? "";
    const binary = f.hunks.length === 0 && /Binary files/.test(sectionOf(text, path));
    out.push(
      finish({
        path,
        oldPath: status === "renamed" ? oldPath : undefined,
        status,
        hunks: f.hunks.map(toHunk),
        added: 0,
        removed: 0,
        binary: binary || undefined,
      }),
    );
  }
  return out;
}

function sectionOf(text: string, path: string): string {
  const at = text.indexOf(path);
  return at < 0 ? "" : text.slice(at, at + 400);
}

function stripPrefix(name: string | undefined): string | undefined {
  if (name === undefined) return undefined;
  if (name === "/dev/null") return name;
  return name.replace(/^[ab]\//, "");
}

function toHunk(h: StructuredPatchHunk): Hunk {
  let oldNo = h.oldStart;
  let newNo = h.newStart;
  // An empty side's start is the line before (0 for an empty file).
  if (h.oldLines === 0) oldNo += 1;
  if (h.newLines === 0) newNo += 1;
  const lines: DiffLine[] = [];
  for (const raw of h.lines) {
    const mark = raw[0];
    const text = raw.slice(1);
    if (mark === " ") lines.push({ kind: "ctx", text, oldNo: oldNo++, newNo: newNo++ });
    else if (mark === "-") lines.push({ kind: "del", text, oldNo: oldNo++ });
    else if (mark === "+") lines.push({ kind: "add", text, newNo: newNo++ });
    // "\ No newline at end of file" says nothing a reader needs here.
  }
  return { oldStart: h.oldStart, newStart: h.newStart, lines };
}

function finish(d: FileDiff): FileDiff {
  let added = 0;
  let removed = 0;
  for (const h of d.hunks) {
    for (const l of h.lines) {
      if (l.kind === "add") added++;
      else if (l.kind === "del") removed++;
    }
    pairWords(h.lines);
  }
  return { ...d, added, removed };
}

/**
 * Within each run of removed lines followed by added lines, the i-th removed
 * line pairs with the i-th added one. Their word-level pieces are computed
 * when a line is drawn (`lineWords`), so a long diff pays only for what is seen.
 */
export function pairWords(lines: DiffLine[]): void {
  let i = 0;
  while (i < lines.length) {
    if (lines[i].kind !== "del") {
      i++;
      continue;
    }
    const delStart = i;
    while (i < lines.length && lines[i].kind === "del") i++;
    const addStart = i;
    while (i < lines.length && lines[i].kind === "add") i++;
    const pairs = Math.min(addStart - delStart, i - addStart);
    for (let k = 0; k < pairs; k++) {
      lines[delStart + k].pair = addStart + k;
      lines[addStart + k].pair = delStart + k;
    }
  }
}

/**
 * The word pieces of line `i` of a hunk (null: no partner, or too different to
 * mark words). Not cached here: a diff may live in reactive state, which must
 * not change while it is drawn; the renderer keeps what it computed.
 */
export function lineWords(lines: DiffLine[], i: number): Segment[] | null {
  const l = lines[i];
  if (l.pair === undefined) return null;
  const p = lines[l.pair];
  const [del, add] = l.kind === "del" ? [l, p] : [p, l];
  if (del.text.length > MAX_WORD_LINE || add.text.length > MAX_WORD_LINE) return null;
  const w = wordSegments(del.text, add.text);
  if (!w) return null;
  return l.kind === "del" ? w.old : w.new;
}

/** Word pieces of a pair of lines, or null when they share too little to be worth marking. */
export function wordSegments(a: string, b: string): { old: Segment[]; new: Segment[] } | null {
  const changes = diffWordsWithSpace(a, b);
  const old: Segment[] = [];
  const neu: Segment[] = [];
  let same = 0;
  for (const c of changes) {
    if (c.added) neu.push({ text: c.value, changed: true });
    else if (c.removed) old.push({ text: c.value, changed: true });
    else {
      old.push({ text: c.value, changed: false });
      neu.push({ text: c.value, changed: false });
      same += c.value.trim().length;
    }
  }
  const longest = Math.max(a.trim().length, b.trim().length);
  if (longest === 0 || same / longest < 0.4) return null;
  return { old, new: neu };
}
