/** DNS-1123 label, as api::rest::is_dns1123_label checks it. */
export function isDns1123Label(name: string): boolean {
  return /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(name);
}

/** Why a workspace name is refused, in words a person can act on; null when fine. */
export function workspaceNameProblem(name: string): string | null {
  if (name.length === 0) return "Enter a name.";
  if (name.length > 63) return "Use at most 63 characters.";
  if (/[A-Z]/.test(name)) return "Use lowercase letters only.";
  if (!/^[a-z0-9-]+$/.test(name)) return "Use only lowercase letters, digits and '-'.";
  if (name.startsWith("-") || name.endsWith("-")) return "Start and end with a letter or digit.";
  return isDns1123Label(name) ? null : "Not a valid name.";
}

/** A title a program set (OSC 0/2), and when (ms). */
export interface ProgramTitle {
  title: string;
  at: number;
}

/** The terminal's foreground program (not the shell), and since when this page has seen it (ms). */
export interface Foreground {
  name: string;
  since: number;
}

/**
 * The name a session's tab shows: the user's name for it; else, while a
 * program runs in the foreground, that program's title if it set one since
 * it started, or its name; else the last title set (a shell prompt's); else
 * the shell's name.
 */
export function tabTitle(
  s: { type: "terminal" | "claude"; title: string } | undefined,
  program: ProgramTitle | undefined,
  renamed: boolean,
  foreground?: Foreground,
): string {
  if (!s) return program?.title || "Terminal";
  if (s.type === "claude") return s.title || "Claude";
  if (renamed && s.title) return s.title;
  if (foreground && (!program || program.at < foreground.since)) return foreground.name;
  return program?.title || s.title || "Terminal";
}

/** The foreground program as now listed, keeping when it was first seen. */
export function nextForeground(prev: Foreground | undefined, name: string | undefined, now: number): Foreground | undefined {
  if (!name) return undefined;
  return prev?.name === name ? prev : { name, since: now };
}

/** Most renamed sessions remembered per workspace (the oldest are forgotten). */
export const MAX_RENAMED = 200;

/** Adds `id` to a list of renamed session ids, keeping it bounded. */
export function rememberRenamed(list: string[], id: string): string[] {
  const out = list.filter((x) => x !== id);
  out.push(id);
  return out.slice(-MAX_RENAMED);
}

/** A stored list of ids, or an empty one for anything else. */
export function parseIdList(stored: string | null): string[] {
  try {
    const v: unknown = stored ? JSON.parse(stored) : [];
    return Array.isArray(v) ? v.filter((x): x is string => typeof x === "string").slice(-MAX_RENAMED) : [];
  } catch {
    return [];
  }
}
