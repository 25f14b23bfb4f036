// What the model and permission-mode pickers offer. The model names are the
// CLI's own aliases (it resolves them to the current models); any other id
// the CLI reports is shown as well.

import type { PermissionMode } from "../protocol";

export const MODELS: { value: string; label: string }[] = [
  { value: "default", label: "Default model" },
  { value: "opus", label: "Opus" },
  { value: "sonnet", label: "Sonnet" },
  { value: "haiku", label: "Haiku" },
];

export const PERMISSION_MODES: { value: PermissionMode; label: string }[] = [
  { value: "default", label: "Ask before tools" },
  { value: "acceptEdits", label: "Accept edits" },
  { value: "plan", label: "Plan only" },
  { value: "auto", label: "Auto (classifier)" },
  { value: "dontAsk", label: "Don't ask (refuse)" },
  { value: "bypassPermissions", label: "Allow everything" },
];
