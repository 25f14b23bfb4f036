// @vitest-environment jsdom
// DOMPurify needs a DOM; jsdom provides one (the browser has its own).
import { describe, expect, it } from "vitest";
import { highlight, renderMarkdown, sanitize } from "../src/lib/claude/markdown";

function dom(html: string): HTMLElement {
  const div = document.createElement("div");
  div.innerHTML = html;
  return div;
}

describe("markdown rendering", () => {
  it("renders GFM with highlighted code", () => {
    const html = renderMarkdown("Some **bold** and `code`.\n\n```rust\nfn main() {}\n```\n\n| a | b |\n|---|---|\n| 1 | 2 |\n");
    const d = dom(html);
    expect(d.querySelector("strong")?.textContent).toBe("bold");
    expect(d.querySelector("p code")?.textContent).toBe("code");
    const code = d.querySelector("pre code.language-rust");
    expect(code?.textContent).toBe("fn main() {}");
    expect(code?.querySelector(".hljs-keyword")?.textContent).toBe("fn");
    expect(d.querySelector("table td")?.textContent).toBe("1");
  });

  it("shows raw HTML and angle brackets as text, never drops them", () => {
    const text = "Use Option<T> or Vec<u8>, pass a <path> to it and it works.\n\nUsage: /model <model>.\n\n<div>block</div>\n\nAfter.";
    const d = dom(renderMarkdown(text));
    expect(d.textContent).toContain("Use Option<T> or Vec<u8>, pass a <path> to it and it works.");
    expect(d.textContent).toContain("Usage: /model <model>.");
    expect(d.textContent).toContain("<div>block</div>");
    expect(d.textContent).toContain("After.");
    expect(d.querySelector("div")).toBeNull();
    expect(d.querySelector("path")).toBeNull();
  });

  it("strips scripts, event handlers and javascript: URLs", () => {
    const payload = [
      "Hi <script>window.pwned = 1</script>",
      '<img src="x" onerror="window.pwned = 2">',
      '<a href="javascript:alert(1)">click</a>',
      "[md link](javascript:alert(2))",
      '<iframe src="https://example.invalid"></iframe>',
      '<svg><script>alert(3)</script></svg>',
      '<div style="position:fixed" onclick="x()">styled</div>',
    ].join("\n\n");
    const html = renderMarkdown(payload);
    const d = dom(html);
    // the tags are shown as text: no element, no handler, no style came of them
    for (const el of d.querySelectorAll("*")) {
      expect([...el.attributes].map((a) => a.name).filter((n) => n.startsWith("on") || n === "style")).toEqual([]);
      expect(el.getAttribute("href") ?? "").not.toMatch(/javascript:/i);
    }
    expect(d.querySelector("img, script, iframe, svg, a[href^=javascript]")).toBeNull();
    expect(d.textContent).toContain("click");
    expect(d.textContent).toContain("styled");
    // what the sanitizer itself removes, for HTML that reaches it by other ways
    const s = sanitize('<img src="x" onerror="y()"><script>z()</script><a href="javascript:q()">q</a>');
    expect(s).not.toMatch(/onerror|<script|javascript:/i);
  });

  it("leaves code blocks as text, never as markup", () => {
    const d = dom(renderMarkdown("```html\n<script>alert(1)</script>\n```"));
    expect(d.querySelector("script")).toBeNull();
    expect(d.querySelector("pre code")?.textContent).toBe("<script>alert(1)</script>");
  });

  it("opens links in a new tab without an opener", () => {
    const a = dom(renderMarkdown("[docs](https://example.invalid/x)")).querySelector("a");
    expect(a?.getAttribute("target")).toBe("_blank");
    expect(a?.getAttribute("rel")).toContain("noopener");
    expect(sanitize('<a href="https://e.invalid">x</a>')).toContain('rel="noopener noreferrer nofollow"');
  });

  it("escapes code in languages it does not know", () => {
    expect(highlight("<b>", "brainfuck")).toEqual({ html: "&#60;b&#62;", language: null });
    expect(highlight("x = 1", "py").language).toBe("py");
  });
});
