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

/** The name a session's tab shows. */
export function tabTitle(
  s: { type: "terminal" | "claude"; title: string } | undefined,
  programTitle: string | undefined,
  renamed: boolean,
): string {
  if (!s) return programTitle || "Terminal";
  if (s.type === "claude") return s.title || "Claude";
  // A name the user gave wins; else what the program calls itself (OSC 0/2); else the shell's name.
  if (renamed && s.title) return s.title;
  return programTitle || s.title || "Terminal";
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
