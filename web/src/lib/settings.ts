// The reader's display choices (terminal font size, light or dark theme),
// kept in localStorage so they hold across reloads and workspaces. Pure
// parsing here; the reactive store is in settings.svelte.ts.

export type Theme = "dark" | "light";

export interface Settings {
  fontSize: number;
  theme: Theme;
}

export const MIN_FONT = 9;
export const MAX_FONT = 28;
export const STORAGE_KEY = "dispatchSettings";

export function defaultSettings(phone: boolean): Settings {
  return { fontSize: phone ? 12 : 14, theme: "dark" };
}

/** Settings read back from storage: anything missing or out of range falls back to the default. */
export function parseSettings(stored: string | null, fallback: Settings): Settings {
  let v: unknown;
  try {
    v = stored ? JSON.parse(stored) : null;
  } catch {
    v = null;
  }
  const o = typeof v === "object" && v !== null ? (v as Record<string, unknown>) : {};
  const size = typeof o.fontSize === "number" && Number.isFinite(o.fontSize) ? clampFont(o.fontSize) : fallback.fontSize;
  const theme = o.theme === "light" || o.theme === "dark" ? o.theme : fallback.theme;
  return { fontSize: size, theme };
}

export function clampFont(n: number): number {
  return Math.min(MAX_FONT, Math.max(MIN_FONT, Math.round(n)));
}
