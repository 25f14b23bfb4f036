// Markdown from the model to safe HTML: marked parses (GFM), highlight.js
// colours fenced code, DOMPurify removes anything executable (scripts, event
// handlers, javascript: URLs) from the result. The model's text is untrusted:
// it can quote a web page or a file, so nothing it says may run in the page.
//
// Raw HTML in the model's text is shown as the text it is, never as markup:
// `Option<T>`, `<path>` or a quoted tag would otherwise be parsed as an
// element and vanish (with everything after an unclosed one).
//
// highlight.js core with a handful of languages keeps the bundle small and the
// highlighting synchronous (shiki's grammars and WASM engine are heavier and
// asynchronous, awkward for text that re-renders on every streamed token).

import DOMPurify from "dompurify";
import hljs from "highlight.js/lib/core";
import bash from "highlight.js/lib/languages/bash";
import css from "highlight.js/lib/languages/css";
import diff from "highlight.js/lib/languages/diff";
import dockerfile from "highlight.js/lib/languages/dockerfile";
import go from "highlight.js/lib/languages/go";
import javascript from "highlight.js/lib/languages/javascript";
import json from "highlight.js/lib/languages/json";
import markdown from "highlight.js/lib/languages/markdown";
import plaintext from "highlight.js/lib/languages/plaintext";
import python from "highlight.js/lib/languages/python";
import rust from "highlight.js/lib/languages/rust";
import shell from "highlight.js/lib/languages/shell";
import sql from "highlight.js/lib/languages/sql";
import typescript from "highlight.js/lib/languages/typescript";
import xml from "highlight.js/lib/languages/xml";
import yaml from "highlight.js/lib/languages/yaml";
import { Marked, type Tokens } from "marked";

const languages = { bash, css, diff, dockerfile, go, javascript, json, markdown, plaintext, python, rust, shell, sql, typescript, xml, yaml };
for (const [name, lang] of Object.entries(languages)) hljs.registerLanguage(name, lang);
hljs.registerAliases(["sh", "zsh", "console"], { languageName: "bash" });
hljs.registerAliases(["js", "jsx", "mjs"], { languageName: "javascript" });
hljs.registerAliases(["ts", "tsx"], { languageName: "typescript" });
hljs.registerAliases(["py"], { languageName: "python" });
hljs.registerAliases(["rs"], { languageName: "rust" });
hljs.registerAliases(["yml"], { languageName: "yaml" });
hljs.registerAliases(["html", "svg"], { languageName: "xml" });
hljs.registerAliases(["text", "txt"], { languageName: "plaintext" });

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Highlighted HTML of a code block (escaped plain text for unknown languages). */
export function highlight(code: string, lang: string | undefined): { html: string; language: string | null } {
  const name = (lang ?? "").trim().split(/\s+/)[0].toLowerCase();
  if (name && hljs.getLanguage(name)) {
    return { html: hljs.highlight(code, { language: name, ignoreIllegals: true }).value, language: name };
  }
  return { html: escapeHtml(code), language: null };
}

const marked = new Marked({
  gfm: true,
  breaks: false,
  renderer: {
    html({ text }: Tokens.HTML | Tokens.Tag): string {
      return escapeHtml(text);
    },
    code({ text, lang }: Tokens.Code): string {
      const { html, language } = highlight(text, lang);
      const cls = language ? ` class="hljs language-${language}"` : ` class="hljs"`;
      const label = language ? `<span class="code-lang">${escapeHtml(language)}</span>` : "";
      return `<pre class="code">${label}<code${cls}>${html}</code></pre>`;
    },
  },
});

let hooked = false;
function purifier(): typeof DOMPurify {
  if (!hooked) {
    hooked = true;
    // Links open in a new tab and give the target no handle on this page.
    DOMPurify.addHook("afterSanitizeAttributes", (node) => {
      if (node.tagName === "A" && node.getAttribute("href")) {
        node.setAttribute("target", "_blank");
        node.setAttribute("rel", "noopener noreferrer nofollow");
      }
    });
  }
  return DOMPurify;
}

/** Sanitised HTML: no scripts, event handlers, forms, frames or javascript: URLs. */
export function sanitize(html: string): string {
  return purifier().sanitize(html, {
    FORBID_TAGS: ["style", "form", "input", "button", "textarea", "select", "iframe", "object", "embed"],
    FORBID_ATTR: ["style"],
  });
}

/** The model's markdown as HTML that is safe to put in the page. */
export function renderMarkdown(text: string): string {
  const html = marked.parse(text, { async: false });
  return sanitize(html);
}
