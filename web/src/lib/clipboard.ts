// Copy to the clipboard, saying so (or why not) in a toast.

import { notify } from "./toasts.svelte";

export async function copyText(text: string): Promise<void> {
  try {
    await navigator.clipboard.writeText(text);
    notify("Copied.", "info", 2000);
  } catch {
    notify("The browser did not allow writing to the clipboard.", "warn");
  }
}
