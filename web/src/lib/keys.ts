// Key sequences for the on-screen toolbar (touch screens have no Esc, Tab,
// Ctrl, Alt, arrow or page keys, and some lack |, ~, / or -).

export type Arrow = "up" | "down" | "right" | "left";

const ARROW_LETTER: Record<Arrow, string> = { up: "A", down: "B", right: "C", left: "D" };

/** The bytes an arrow key sends; full-screen programs switch the cursor keys to application mode. */
export function arrowSequence(dir: Arrow, applicationCursor: boolean): string {
  return (applicationCursor ? "\x1bO" : "\x1b[") + ARROW_LETTER[dir];
}

export const ESC = "\x1b";
export const TAB = "\t";
export const PAGE_UP = "\x1b[5~";
export const PAGE_DOWN = "\x1b[6~";

/**
 * Applies a held Ctrl to typed text: Ctrl+letter and Ctrl+[\]^_@ map to C0
 * control codes, Ctrl+? to DEL; anything else passes through unchanged.
 * Only the first character is modified, as a physical Ctrl would for one key press.
 */
export function applyCtrl(data: string): string {
  if (data.length === 0) return data;
  const c = data[0];
  const rest = data.slice(1);
  const code = c.toUpperCase().charCodeAt(0);
  if (code >= 0x40 && code <= 0x5f) return String.fromCharCode(code & 0x1f) + rest;
  if (c === "?") return "\x7f" + rest;
  if (c === " ") return "\x00" + rest;
  return data;
}

/** A held Alt (Meta) sends ESC before the key, as xterm does with macOptionIsMeta. */
export function applyAlt(data: string): string {
  return data.length === 0 ? data : ESC + data;
}

/** Applies the held modifiers (Ctrl first, then Alt) to one key's text. */
export function applyModifiers(data: string, mods: { ctrl: boolean; alt: boolean }): string {
  let d = data;
  if (mods.ctrl) d = applyCtrl(d);
  if (mods.alt) d = applyAlt(d);
  return d;
}
