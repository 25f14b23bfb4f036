// What the review components need from the page around them, handed down as
// Svelte context so the shared views (workspace, Claude pane) only set it:
// the workspace's name (for its files routes) and, inside a Claude session,
// where the session runs (to turn the CLI's absolute paths into workspace paths).

import { getContext, setContext } from "svelte";
import { FilesApi } from "./files-api";

const WORKSPACE = Symbol("review.workspace");
const CLAUDE_CWD = Symbol("review.claudeCwd");

export interface ClaudeCwd {
  /** The CLI's absolute cwd (from its init event). */
  abs?: string;
  /** The same directory relative to the workspace root ("." for the root). */
  rel?: string;
}

export function setWorkspaceFiles(workspace: string): FilesApi {
  const api = new FilesApi(workspace);
  setContext(WORKSPACE, api);
  return api;
}

export function workspaceFiles(): FilesApi | undefined {
  return getContext<FilesApi | undefined>(WORKSPACE);
}

export function setClaudeCwd(get: () => ClaudeCwd): void {
  setContext(CLAUDE_CWD, get);
}

export function claudeCwd(): (() => ClaudeCwd) | undefined {
  return getContext<(() => ClaudeCwd) | undefined>(CLAUDE_CWD);
}
