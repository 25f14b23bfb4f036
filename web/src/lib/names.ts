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
