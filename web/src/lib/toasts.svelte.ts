// Unobtrusive notices (protocol errors, lost output, failed requests).

export type ToastKind = "info" | "error" | "warn";

export interface Toast {
  id: number;
  kind: ToastKind;
  text: string;
}

let nextId = 1;
export const toasts = $state<Toast[]>([]);

export function notify(text: string, kind: ToastKind = "info", ms = 6000): void {
  // The same notice repeated (a flapping connection) shows once.
  if (toasts.some((t) => t.text === text)) return;
  const id = nextId++;
  toasts.push({ id, kind, text });
  if (toasts.length > 4) toasts.shift();
  setTimeout(() => dismiss(id), ms);
}

export function dismiss(id: number): void {
  const i = toasts.findIndex((t) => t.id === id);
  if (i >= 0) toasts.splice(i, 1);
}
