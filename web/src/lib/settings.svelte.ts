// The live settings store: components read `settings`, change it with
// `setFontSize` / `setTheme`; every change is saved and the page's theme
// attribute follows.

import { clampFont, defaultSettings, parseSettings, STORAGE_KEY, type Settings, type Theme } from "./settings";

function load(): Settings {
  const phone = typeof window !== "undefined" && !!window.matchMedia?.("(max-width: 600px)").matches;
  let stored: string | null = null;
  try {
    stored = localStorage.getItem(STORAGE_KEY);
  } catch {
    /* storage disabled */
  }
  return parseSettings(stored, defaultSettings(phone));
}

export const settings = $state<Settings>(load());

function save(): void {
  try {
    localStorage.setItem(STORAGE_KEY, JSON.stringify(settings));
  } catch {
    /* storage disabled: the choice holds for this page */
  }
  applyTheme();
}

export function applyTheme(): void {
  if (typeof document !== "undefined") document.documentElement.dataset.theme = settings.theme;
}

export function setFontSize(n: number): void {
  settings.fontSize = clampFont(n);
  save();
}

export function setTheme(t: Theme): void {
  settings.theme = t;
  save();
}
