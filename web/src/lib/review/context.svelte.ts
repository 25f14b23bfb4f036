// What the review components need from the page around them, handed down as
// Svelte context so the shared views (workspace, Claude pane) only set it:
// the workspace's files API and its uploads, and, inside a Claude session,
// where the session runs (to turn the CLI's absolute paths into workspace paths).

import { getContext, setContext } from "svelte";
import { FilesApi } from "./files-api";
import { UploadQueue } from "./uploads.svelte";

const WORKSPACE = Symbol("review.workspace");
const CLAUDE_CWD = Symbol("review.claudeCwd");

export interface ClaudeCwd {
  /** The CLI's absolute cwd (from its init event). */
  abs?: string;
  /** The same directory relative to the workspace root ("." for the root). */
  rel?: string;
}

export interface WorkspaceReview {
  files: FilesApi;
  uploads: UploadQueue;
  /** Folders whose listing changed (an upload landed): the files panel reloads them. */
  changed: { dirs: string[]; at: number };
}

export function setWorkspaceReview(workspace: string): WorkspaceReview {
  const files = new FilesApi(workspace);
  const changed = $state({ dirs: [] as string[], at: 0 });
  const uploads = new UploadQueue(files, (path) => {
    const i = path.lastIndexOf("/");
    changed.dirs = [i < 0 ? "" : path.slice(0, i)];
    changed.at++;
  });
  const review = { files, uploads, changed };
  setContext(WORKSPACE, review);
  return review;
}

export function workspaceReview(): WorkspaceReview | undefined {
  return getContext<WorkspaceReview | undefined>(WORKSPACE);
}

export function workspaceFiles(): FilesApi | undefined {
  return workspaceReview()?.files;
}

export function setClaudeCwd(get: () => ClaudeCwd): void {
  setContext(CLAUDE_CWD, get);
}

export function claudeCwd(): (() => ClaudeCwd) | undefined {
  return getContext<(() => ClaudeCwd) | undefined>(CLAUDE_CWD);
}
