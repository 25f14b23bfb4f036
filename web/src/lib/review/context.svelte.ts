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
  /** Folders whose listing changed (an upload landed, a turn ended or was undone): the panels reload. */
  changed: { dirs: string[]; at: number };
  /** Says that these workspace paths changed. */
  touched: (paths: string[]) => void;
}

export function setWorkspaceReview(workspace: string): WorkspaceReview {
  const files = new FilesApi(workspace);
  const changed = $state({ dirs: [] as string[], at: 0 });
  // Every folder above a changed path: a new folder shows in its parent's listing.
  const touched = (paths: string[]): void => {
    const dirs = new Set<string>([""]);
    for (const p of paths) {
      const parts = p.split("/").slice(0, -1);
      for (let i = 1; i <= parts.length; i++) dirs.add(parts.slice(0, i).join("/"));
    }
    changed.dirs = [...dirs];
    changed.at++;
  };
  const uploads = new UploadQueue(files, (path) => touched([path]));
  const review = { files, uploads, changed, touched };
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
