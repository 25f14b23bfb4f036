// git status as the git panel groups it: what is staged (the index differs
// from HEAD) and what is not (the work tree differs from the index, or the
// file is untracked). A file can be in both. Pure.

import type { GitFile } from "./files-api";

export interface StatusEntry {
  path: string;
  origPath?: string;
  /** git's one-letter code on that side. */
  code: string;
}

const UNCHANGED = new Set(["", " ", "."]);

export function splitStatus(files: GitFile[]): { staged: StatusEntry[]; unstaged: StatusEntry[] } {
  const staged: StatusEntry[] = [];
  const unstaged: StatusEntry[] = [];
  for (const f of files) {
    if (f.index === "?" || f.worktree === "?") {
      unstaged.push({ path: f.path, code: "?" });
      continue;
    }
    if (!UNCHANGED.has(f.index)) staged.push({ path: f.path, origPath: f.origPath, code: f.index });
    if (!UNCHANGED.has(f.worktree)) unstaged.push({ path: f.path, code: f.worktree });
  }
  return { staged, unstaged };
}

const NAMES: Record<string, string> = {
  M: "modified",
  A: "added",
  D: "deleted",
  R: "renamed",
  C: "copied",
  U: "unmerged",
  T: "type changed",
  "?": "untracked",
};

export function codeName(code: string): string {
  return NAMES[code] ?? code;
}

/** "3 minutes ago" for a commit time. */
export function when(timeMs: number, now: number = Date.now()): string {
  const s = Math.max(0, Math.round((now - timeMs) / 1000));
  if (s < 60) return "just now";
  const m = Math.round(s / 60);
  if (m < 60) return `${m} min ago`;
  const h = Math.round(m / 60);
  if (h < 48) return `${h} h ago`;
  return new Date(timeMs).toISOString().slice(0, 10);
}
