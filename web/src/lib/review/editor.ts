// CodeMirror 6 set up for the files panel: the editor of one file (its
// language from the file name, Mod-S saves) and the conflict view that shows
// the file on disk next to the user's unsaved text (@codemirror/merge), with
// buttons between them to take a change from disk into the user's side.

import { css } from "@codemirror/lang-css";
import { html } from "@codemirror/lang-html";
import { javascript } from "@codemirror/lang-javascript";
import { json } from "@codemirror/lang-json";
import { markdown } from "@codemirror/lang-markdown";
import { python } from "@codemirror/lang-python";
import { rust } from "@codemirror/lang-rust";
import { yaml } from "@codemirror/lang-yaml";
import { MergeView } from "@codemirror/merge";
import { EditorState, type Extension } from "@codemirror/state";
import { oneDark } from "@codemirror/theme-one-dark";
import { EditorView, keymap } from "@codemirror/view";
import { basicSetup } from "codemirror";

function languageOf(path: string): Extension {
  const ext = path.slice(path.lastIndexOf(".") + 1).toLowerCase();
  switch (ext) {
    case "js":
    case "mjs":
    case "cjs":
    case "jsx":
      return javascript({ jsx: ext === "jsx" });
    case "ts":
    case "mts":
    case "cts":
    case "tsx":
      return javascript({ typescript: true, jsx: ext === "tsx" });
    case "json":
    case "ipynb":
      return json();
    case "md":
    case "markdown":
      return markdown();
    case "py":
      return python();
    case "rs":
      return rust();
    case "css":
      return css();
    case "html":
    case "htm":
    case "svelte":
    case "vue":
      return html();
    case "yml":
    case "yaml":
      return yaml();
    default:
      return [];
  }
}

const look = EditorView.theme({
  "&": { height: "100%", fontSize: "13px" },
  ".cm-scroller": { fontFamily: "var(--mono)", overflow: "auto" },
});

function base(path: string): Extension[] {
  return [basicSetup, languageOf(path), oneDark, look];
}

export interface EditorHandle {
  view: EditorView;
  text(): string;
  setText(text: string): void;
  destroy(): void;
}

export function createEditor(parent: HTMLElement, path: string, doc: string, opts: { onsave: () => void; onchange: () => void; readOnly?: boolean }): EditorHandle {
  const view = new EditorView({
    parent,
    state: EditorState.create({
      doc,
      extensions: [
        keymap.of([
          {
            key: "Mod-s",
            preventDefault: true,
            run: () => {
              opts.onsave();
              return true;
            },
          },
        ]),
        ...base(path),
        EditorState.readOnly.of(opts.readOnly ?? false),
        EditorView.updateListener.of((u) => {
          if (u.docChanged) opts.onchange();
        }),
        EditorView.contentAttributes.of({ "aria-label": `Contents of ${path}` }),
      ],
    }),
  });
  return {
    view,
    text: () => view.state.doc.toString(),
    setText: (text) => view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: text } }),
    destroy: () => view.destroy(),
  };
}

export interface MergeHandle {
  /** The user's side, with what they took from disk. */
  mine(): string;
  destroy(): void;
}

/** The file on disk (left, read-only) against the user's text (right, editable). */
export function createMerge(parent: HTMLElement, path: string, theirs: string, mine: string): MergeHandle {
  const view = new MergeView({
    parent,
    a: {
      doc: theirs,
      extensions: [...base(path), EditorState.readOnly.of(true), EditorView.editable.of(false), EditorView.contentAttributes.of({ "aria-label": `${path} on disk` })],
    },
    b: { doc: mine, extensions: [...base(path), EditorView.contentAttributes.of({ "aria-label": `Your version of ${path}` })] },
    revertControls: "a-to-b",
    collapseUnchanged: { margin: 3, minSize: 6 },
  });
  return { mine: () => view.b.state.doc.toString(), destroy: () => view.destroy() };
}
