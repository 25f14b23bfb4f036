// @vitest-environment jsdom
// markdown.ts (highlight.js's setup) loads DOMPurify, which needs a DOM.
import { structuredPatch } from "diff";
import { describe, expect, it } from "vitest";
import { diffTexts, lineWords, parseUnified, wordSegments } from "../src/lib/review/diff";
import { highlightLines, languageFor, markChanged, splitHtmlLines } from "../src/lib/review/highlight";
import { DiffRenderer } from "../src/lib/review/render";
import { applyEdits, changeTexts, fileChange, workspaceRelative } from "../src/lib/review/toolchange";

function dom(html: string): HTMLElement {
  const div = document.createElement("div");
  div.innerHTML = html;
  return div;
}

describe("diffs of two texts", () => {
  it("numbers lines and pairs a changed line's words", () => {
    const before = "a\nlet x = 1;\nc\n";
    const after = "a\nlet x = 2;\nc\nd\n";
    const d = diffTexts("f.ts", before, after);
    expect(d.status).toBe("modified");
    expect(d.added).toBe(2);
    expect(d.removed).toBe(1);
    const lines = d.hunks[0].lines;
    expect(lines.map((l) => [l.kind, l.oldNo, l.newNo])).toEqual([
      ["ctx", 1, 1],
      ["del", 2, undefined],
      ["add", undefined, 2],
      ["ctx", 3, 3],
      ["add", undefined, 4],
    ]);
    expect(lineWords(lines, 1)?.filter((w) => w.changed).map((w) => w.text)).toEqual(["1"]);
    expect(lineWords(lines, 2)?.filter((w) => w.changed).map((w) => w.text)).toEqual(["2"]);
    // The added last line has no partner: no word marks.
    expect(lineWords(lines, 4)).toBeNull();
  });

  it("shows a new file as all added, and a deleted one as all removed", () => {
    const added = diffTexts("n.txt", null, "one\ntwo\n");
    expect(added.status).toBe("added");
    expect(added.hunks[0].lines.map((l) => [l.kind, l.newNo])).toEqual([
      ["add", 1],
      ["add", 2],
    ]);
    const gone = diffTexts("n.txt", "one\n", null);
    expect(gone.status).toBe("deleted");
    expect(gone.removed).toBe(1);
  });

  it("gives hunks that rebuild the new text, with as few changed lines as jsdiff finds", () => {
    // A small deterministic generator: the same cases every run.
    let seed = 7;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed % n;
    };
    for (let round = 0; round < 200; round++) {
      const a = Array.from({ length: rand(40) }, () => `l${rand(8)}`);
      const b = [...a];
      for (let e = rand(6); e > 0; e--) {
        const at = rand(b.length + 1);
        if (rand(2) === 0) b.splice(at, 1);
        else b.splice(at, 0, `n${rand(8)}`);
      }
      const text = (ls: string[]) => (ls.length ? ls.join("\n") + "\n" : "");
      const d = diffTexts("f", text(a), text(b));
      // Apply the hunks to the old lines.
      const out: string[] = [];
      let next = 1;
      for (const h of d.hunks) {
        const first = h.lines.find((l) => l.oldNo !== undefined)?.oldNo ?? h.oldStart + 1;
        while (next < first) out.push(a[next++ - 1]);
        for (const l of h.lines) {
          if (l.kind !== "add") expect(l.text).toBe(a[l.oldNo! - 1]);
          if (l.kind !== "del") out.push(l.text);
          if (l.kind !== "add") next = l.oldNo! + 1;
          if (l.kind !== "del") expect(l.text).toBe(b[l.newNo! - 1]);
        }
      }
      while (next <= a.length) out.push(a[next++ - 1]);
      expect(out, `round ${round}`).toEqual(b);
      const p = structuredPatch("f", "f", text(a), text(b), undefined, undefined, { context: 3 });
      const changed = p.hunks.flatMap((h) => h.lines).filter((l) => l[0] === "+" || l[0] === "-").length;
      expect(d.added + d.removed, `round ${round}`).toBe(changed);
    }
  });

  it("shows a change of the final newline alone", () => {
    const d = diffTexts("f", "a\nb", "a\nb\n");
    expect(d.hunks.length).toBeGreaterThan(0);
  });

  it("keeps a rewritten line plain (no word marks when little is shared)", () => {
    expect(wordSegments("completely different", "nothing alike here at all")).toBeNull();
  });

  it("gives up on a huge rewrite within its edit budget and shows it replaced whole", () => {
    const a = Array.from({ length: 30_000 }, (_, i) => `a${i}`).join("\n");
    const b = Array.from({ length: 30_000 }, (_, i) => `b${i}`).join("\n");
    const d = diffTexts("big", a, b);
    expect(d.replacedWhole).toBe(true);
    expect(d.removed).toBe(30_000);
    expect(d.added).toBe(30_000);
  });
});

describe("unified diffs from git", () => {
  it("parses files, renames, new and deleted files", () => {
    const text = [
      "diff --git a/src/a.rs b/src/a.rs",
      "index 1111111..2222222 100644",
      "--- a/src/a.rs",
      "+++ b/src/a.rs",
      "@@ -1,2 +1,2 @@",
      " fn main() {",
      '-    println!("hi");',
      '+    println!("hello");',
      "diff --git a/new.txt b/new.txt",
      "new file mode 100644",
      "index 0000000..3333333",
      "--- /dev/null",
      "+++ b/new.txt",
      "@@ -0,0 +1 @@",
      "+fresh",
      "diff --git a/old.txt b/old.txt",
      "deleted file mode 100644",
      "index 4444444..0000000",
      "--- a/old.txt",
      "+++ /dev/null",
      "@@ -1 +0,0 @@",
      "-stale",
      "",
    ].join("\n");
    const files = parseUnified(text);
    expect(files.map((f) => [f.path, f.status, f.added, f.removed])).toEqual([
      ["src/a.rs", "modified", 1, 1],
      ["new.txt", "added", 1, 0],
      ["old.txt", "deleted", 0, 1],
    ]);
    expect(files[1].hunks[0].lines[0].newNo).toBe(1);
    expect(files[2].hunks[0].lines[0].oldNo).toBe(1);
    expect(parseUnified("")).toEqual([]);
  });
});

describe("syntax colours per line", () => {
  it("keeps a multi-line comment coloured on every line, with balanced spans", () => {
    const lines = highlightLines(["/* one", "two */", "let x = 1;"], "typescript");
    expect(lines).toHaveLength(3);
    expect(dom(lines[1]).querySelector(".hljs-comment")?.textContent).toBe("two */");
    expect(dom(lines[2]).querySelector(".hljs-keyword")?.textContent).toBe("let");
    for (const l of lines) expect(l.split("<span").length).toBe(l.split("</span>").length);
  });

  it("splits without losing text", () => {
    expect(splitHtmlLines('<span class="a">x\ny</span>z')).toEqual(['<span class="a">x</span>', '<span class="a">y</span>z']);
  });

  it("escapes code in unknown languages", () => {
    expect(highlightLines(["<script>alert(1)</script>"], undefined)[0]).not.toContain("<script>");
    expect(languageFor("a/b/main.rs")).toBe("rust");
    expect(languageFor("Dockerfile")).toBe("dockerfile");
    expect(languageFor("README")).toBeUndefined();
  });

  it("marks changed words across highlight spans and entities", () => {
    const html = highlightLines(['let s = "a<b";'], "typescript")[0];
    const marked = markChanged(html, [
      { text: "let s = ", changed: false },
      { text: '"a<b"', changed: true },
      { text: ";", changed: false },
    ]);
    const d = dom(marked);
    expect(d.textContent).toBe('let s = "a<b";');
    expect([...d.querySelectorAll("mark")].map((m) => m.textContent).join("")).toBe('"a<b"');
    expect(d.querySelector(".hljs-keyword")?.textContent).toBe("let");
  });
});

describe("rendering", () => {
  it("draws numbered, signed lines with word marks", () => {
    const d = diffTexts("x.py", "x = 1\ny = 2\n", "x = 1\ny = 3\n");
    const r = new DiffRenderer(d, "python");
    const el = dom(r.html(0, r.rows.length));
    const rows = [...el.querySelectorAll(".l")];
    expect(rows.map((e) => e.className)).toEqual(["l ctx", "l del", "l add"]);
    expect(rows[2].querySelector("mark")?.textContent).toBe("3");
    expect([...rows[1].querySelectorAll(".n")].map((n) => n.textContent)).toEqual(["2", ""]);
  });

  it("draws any window of a long diff, with hunk headers, the same as drawing it all", () => {
    const before = Array.from({ length: 1000 }, (_, i) => `line ${i}`).join("\n");
    const after = before.replace("line 10\n", "line ten\n").replace("line 900\n", "line nine hundred\n");
    const r = new DiffRenderer(diffTexts("t.txt", before, after), undefined);
    const all = dom(r.html(0, r.rows.length)).children;
    expect(all[0].className).toBe("hh");
    const part = dom(r.html(8, 12)).children;
    expect([...part].map((e) => e.outerHTML)).toEqual([...all].slice(8, 12).map((e) => e.outerHTML));
    // A new 450-line file: lines past a highlight block's edge are drawn too.
    const big = new DiffRenderer(diffTexts("n.ts", null, Array.from({ length: 450 }, (_, i) => `let v${i} = ${i};`).join("\n")), "typescript");
    const tail = dom(big.html(440, 450));
    expect(tail.children).toHaveLength(10);
    expect(tail.querySelector(".hljs-keyword")?.textContent).toBe("let");
    expect(tail.children[9].textContent).toContain("let v449 = 449;");
  });
});

describe("Claude file tools", () => {
  it("reads Write, Edit, MultiEdit and NotebookEdit inputs, and nothing else", () => {
    expect(fileChange("Write", { file_path: "/w/a", content: "x" })).toEqual({ tool: "Write", path: "/w/a", content: "x" });
    expect(fileChange("Edit", { file_path: "/w/a", old_string: "a", new_string: "b" })?.tool).toBe("Edit");
    expect(fileChange("MultiEdit", { file_path: "/w/a", edits: [{ old_string: "a", new_string: "b", replace_all: true }] })).toEqual({
      tool: "MultiEdit",
      path: "/w/a",
      edits: [{ oldString: "a", newString: "b", replaceAll: true }],
    });
    expect(fileChange("MultiEdit", { file_path: "/w/a", edits: [{ old_string: 1 }] })).toBeUndefined();
    expect(fileChange("NotebookEdit", { notebook_path: "/w/n.ipynb", cell_id: "c1", new_source: "print(1)" })?.tool).toBe("NotebookEdit");
    expect(fileChange("Bash", { command: "ls" })).toBeUndefined();
    expect(fileChange("Write", null)).toBeUndefined();
  });

  it("applies edits as the CLI does: first match, or all with replace_all", () => {
    expect(applyEdits("a a a", [{ oldString: "a", newString: "b", replaceAll: false }])).toEqual({ text: "b a a", missing: 0 });
    expect(applyEdits("a a a", [{ oldString: "a", newString: "b", replaceAll: true }])).toEqual({ text: "b b b", missing: 0 });
    expect(applyEdits("abc", [{ oldString: "zz", newString: "b", replaceAll: false }]).missing).toBe(1);
  });

  it("diffs an Edit against the whole file, a new Write as all added", () => {
    const edit = fileChange("Edit", { file_path: "/w/a.txt", old_string: "two", new_string: "2" });
    const t = changeTexts(edit!, "one\ntwo\nthree\n");
    expect(t.after).toBe("one\n2\nthree\n");
    const write = changeTexts(fileChange("Write", { file_path: "/w/n", content: "hi\n" })!, null);
    expect(t.note).toBeUndefined();
    expect(write.before).toBeNull();
    expect(diffTexts("n", write.before, write.after).status).toBe("added");
    // Unreadable file: only the edit's own strings, and a note saying so.
    expect(changeTexts(edit!, undefined)).toMatchObject({ before: "two", after: "2" });
    expect(changeTexts(edit!, undefined).note).toMatch(/could not be read/);
  });

  it("diffs a notebook cell by id", () => {
    const nb = JSON.stringify({ cells: [{ id: "c1", source: ["print(1)\n", "x = 2"] }] });
    const t = changeTexts(fileChange("NotebookEdit", { notebook_path: "/w/n.ipynb", cell_id: "c1", new_source: "print(2)" })!, nb);
    expect(t).toMatchObject({ before: "print(1)\nx = 2", after: "print(2)" });
  });

  it("turns the CLI's absolute paths into workspace paths, refusing what lies outside", () => {
    expect(workspaceRelative("/ws/root/src/a.rs", "/ws/root", ".")).toBe("src/a.rs");
    expect(workspaceRelative("/ws/root/src/a.rs", "/ws/root/src", "src")).toBe("src/a.rs");
    expect(workspaceRelative("b.rs", "/ws/root/src", "src")).toBe("src/b.rs");
    expect(workspaceRelative("/ws/root/../etc/passwd", "/ws/root", ".")).toBeUndefined();
    expect(workspaceRelative("/ws/rootx/a", "/ws/root", ".")).toBeUndefined();
    expect(workspaceRelative("/ws/root", "/ws/root", ".")).toBeUndefined();
    expect(workspaceRelative("/a", undefined, ".")).toBeUndefined();
  });
});
