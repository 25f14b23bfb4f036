import { describe, expect, it } from "vitest";
import { errorFrom, formatBytes, joinPath, parentOf } from "../src/lib/review/files-api";
import { splitStatus } from "../src/lib/review/git";
import { visibleRows, type DirState } from "../src/lib/review/tree.svelte";

const entry = (name: string, kind: "file" | "dir" = "file") => ({ name, kind, size: 1, mtimeMs: 0 });

describe("the files tree", () => {
  it("shows open folders' entries under them, indented, and nothing of closed ones", () => {
    const dirs: Record<string, DirState> = {
      "": { entries: [entry("src", "dir"), entry("docs", "dir"), entry("a.txt")], loading: false },
      src: { entries: [entry("lib", "dir"), entry("main.rs")], loading: false },
      "src/lib": { entries: [entry("x.rs")], loading: false },
      docs: { entries: [entry("hidden.md")], loading: false },
    };
    const rows = visibleRows(dirs, { src: true, "src/lib": true, docs: false });
    expect(rows.map((r) => [r.path, r.depth])).toEqual([
      ["src", 0],
      ["src/lib", 1],
      ["src/lib/x.rs", 2],
      ["src/main.rs", 1],
      ["docs", 0],
      ["a.txt", 0],
    ]);
    expect(visibleRows(dirs, { src: true }, "", 0, [], 2)).toHaveLength(2);
  });

  it("joins and splits workspace paths", () => {
    expect(joinPath("", "a")).toBe("a");
    expect(joinPath("d/", "a")).toBe("d/a");
    expect(parentOf("d/e/a")).toBe("d/e");
    expect(parentOf("a")).toBe("");
    expect(formatBytes(1536)).toBe("1.5 KiB");
  });

  it("reads both error shapes", () => {
    expect(errorFrom(412, "Precondition Failed", JSON.stringify({ error: { code: "conflict", message: "changed" } }))).toMatchObject({ status: 412, code: "conflict", message: "changed" });
    expect(errorFrom(400, "Bad Request", JSON.stringify({ code: "bad_path", message: "no .." }))).toMatchObject({ code: "bad_path" });
    expect(errorFrom(502, "Bad Gateway", "<html>")).toMatchObject({ code: "http_502" });
  });
});

describe("git status", () => {
  it("puts a file in staged, unstaged or both; untracked files are unstaged", () => {
    const s = splitStatus([
      { path: "a", index: "M", worktree: "." },
      { path: "b", index: ".", worktree: "M" },
      { path: "c", index: "A", worktree: "M" },
      { path: "d", index: "?", worktree: "?" },
      { path: "e", index: "R", worktree: ".", origPath: "old-e" },
    ]);
    expect(s.staged.map((e) => [e.path, e.code])).toEqual([
      ["a", "M"],
      ["c", "A"],
      ["e", "R"],
    ]);
    expect(s.staged[2].origPath).toBe("old-e");
    expect(s.unstaged.map((e) => [e.path, e.code])).toEqual([
      ["b", "M"],
      ["c", "M"],
      ["d", "?"],
    ]);
  });
});
