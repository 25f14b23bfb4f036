// Builds an xterm.js terminal with the addons the UI relies on. The WebGL
// renderer is faster, but a machine may lack WebGL or lose the context (GPU
// reset, too many contexts): then the terminal falls back to the DOM renderer.

import { FitAddon } from "@xterm/addon-fit";
import { SearchAddon } from "@xterm/addon-search";
import { Unicode11Addon } from "@xterm/addon-unicode11";
import { WebLinksAddon } from "@xterm/addon-web-links";
import { WebglAddon } from "@xterm/addon-webgl";
import { Terminal, type ITheme } from "@xterm/xterm";

export const THEME: ITheme = {
  background: "#0b0d11",
  foreground: "#d8dee9",
  cursor: "#7aa2ff",
  cursorAccent: "#0b0d11",
  selectionBackground: "#2f3d5c",
  black: "#1d2128",
  red: "#ff7a85",
  green: "#5fd3a6",
  yellow: "#f2c46d",
  blue: "#7aa2ff",
  magenta: "#c79bff",
  cyan: "#6fd0e6",
  white: "#d8dee9",
  brightBlack: "#5c6370",
  brightRed: "#ff98a1",
  brightGreen: "#86e4bf",
  brightYellow: "#f7d68f",
  brightBlue: "#9cbaff",
  brightMagenta: "#d9b8ff",
  brightCyan: "#95e0f0",
  brightWhite: "#ffffff",
};

export const LIGHT_THEME: ITheme = {
  background: "#fbfbfd",
  foreground: "#1d2128",
  cursor: "#3360d6",
  cursorAccent: "#fbfbfd",
  selectionBackground: "#c8d6f7",
  black: "#1d2128",
  red: "#c9283a",
  green: "#1c8a5e",
  yellow: "#9a6a00",
  blue: "#3360d6",
  magenta: "#8a3fd1",
  cyan: "#127f96",
  white: "#6b7383",
  brightBlack: "#4f5868",
  brightRed: "#e0455a",
  brightGreen: "#25a26f",
  brightYellow: "#b58300",
  brightBlue: "#4a76e8",
  brightMagenta: "#a05ae6",
  brightCyan: "#1896b0",
  brightWhite: "#9aa3b2",
};

export function themeFor(t: "dark" | "light"): ITheme {
  return t === "light" ? LIGHT_THEME : THEME;
}

/** Lines the live terminal keeps; earlier output is read from the agent on demand (ScrollbackView). */
export const SCROLLBACK = 10_000;

export interface BuiltTerminal {
  term: Terminal;
  fit: FitAddon;
  search: SearchAddon;
  /** "webgl" or "dom"; changes to "dom" if the WebGL context is lost. */
  renderer: () => string;
  dispose: () => void;
}

export function buildTerminal(container: HTMLElement, opts: { readOnly: boolean; fontSize: number; theme: "dark" | "light" }): BuiltTerminal {
  const term = new Terminal({
    allowProposedApi: true, // the unicode11 addon uses the proposed unicode API
    cursorBlink: !opts.readOnly,
    disableStdin: opts.readOnly,
    fontFamily: "'JetBrains Mono', 'DejaVu Sans Mono', ui-monospace, Menlo, Consolas, monospace",
    fontSize: opts.fontSize,
    lineHeight: 1.15,
    scrollback: SCROLLBACK,
    theme: themeFor(opts.theme),
    macOptionIsMeta: true,
  });
  const fit = new FitAddon();
  const search = new SearchAddon();
  term.loadAddon(fit);
  term.loadAddon(search);
  term.loadAddon(new WebLinksAddon());
  term.loadAddon(new Unicode11Addon());
  term.unicode.activeVersion = "11";
  term.open(container);

  let renderer = "dom";
  let webgl: WebglAddon | null = null;
  const useDom = () => {
    webgl?.dispose();
    webgl = null;
    renderer = "dom";
  };
  if (chooseRenderer() === "webgl") {
    try {
      webgl = new WebglAddon();
      webgl.onContextLoss(useDom);
      term.loadAddon(webgl);
      renderer = "webgl";
    } catch {
      useDom();
    }
  }

  return {
    term,
    fit,
    search,
    renderer: () => renderer,
    dispose: () => {
      webgl?.dispose();
      term.dispose();
    },
  };
}

/**
 * WebGL when the GPU draws it. A software WebGL (SwiftShader, llvmpipe: no
 * GPU, or GPU disabled) is slower than the DOM renderer and has been seen to
 * paint nothing on high-density screens, so the DOM renderer is used there.
 * `localStorage.dispatchRenderer = "webgl" | "dom"` overrides the choice.
 */
export function chooseRenderer(): "webgl" | "dom" {
  let forced: string | null = null;
  try {
    forced = localStorage.getItem("dispatchRenderer");
  } catch {
    /* storage disabled */
  }
  if (forced === "webgl" || forced === "dom") return forced;
  probed ??= probeRenderer();
  return probed;
}

let probed: "webgl" | "dom" | undefined;

function probeRenderer(): "webgl" | "dom" {
  try {
    const gl = document.createElement("canvas").getContext("webgl2");
    if (!gl) return "dom";
    const info = gl.getExtension("WEBGL_debug_renderer_info");
    const name = info ? String(gl.getParameter(info.UNMASKED_RENDERER_WEBGL)) : "";
    gl.getExtension("WEBGL_lose_context")?.loseContext();
    return isSoftwareRenderer(name) ? "dom" : "webgl";
  } catch {
    return "dom";
  }
}

export function isSoftwareRenderer(name: string): boolean {
  return /swiftshader|llvmpipe|softpipe|software|basic render driver/i.test(name);
}

/** The buffer's lines from `start` (inclusive) to `end` (exclusive), right-trimmed. */
export function bufferLines(term: Terminal, start: number, end: number): string[] {
  const buf = term.buffer.active;
  const out: string[] = [];
  for (let i = Math.max(0, start); i < Math.min(end, buf.length); i++) {
    out.push(buf.getLine(i)?.translateToString(true) ?? "");
  }
  return out;
}

/**
 * The last `max` lines of the buffer as the program wrote them: rows the
 * terminal wrapped are joined again, so a long URL stays one line to copy.
 */
export function logicalLines(term: Terminal, max: number): string[] {
  const buf = term.buffer.active;
  const out: string[] = [];
  for (let i = 0; i < buf.length; i++) {
    const line = buf.getLine(i);
    const text = line?.translateToString(!buf.getLine(i + 1)?.isWrapped) ?? "";
    if (line?.isWrapped && out.length > 0) out[out.length - 1] += text;
    else out.push(text);
  }
  return out.slice(-max);
}
