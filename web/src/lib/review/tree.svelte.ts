// The files panel's tree: folders are listed when first opened (one
// `files/list` each), and the panel draws the open part as a flat list of
// rows (so arrow keys can walk it and one loop draws it).

import type { Entry, FilesApi } from "./files-api";

export interface DirState {
  entries: Entry[];
  loading: boolean;
  error?: string;
  truncated?: boolean;
}

export interface Row {
  path: string;
  name: string;
  kind: Entry["kind"];
  size: number;
  depth: number;
  open: boolean;
}

/** What the listing of `dir` contributes to the rows, with open folders' rows under them. */
export function visibleRows(dirs: Record<string, DirState>, open: Record<string, boolean>, dir = "", depth = 0, out: Row[] = [], limit = 20_000): Row[] {
  const d = dirs[dir];
  if (!d) return out;
  for (const e of d.entries) {
    if (out.length >= limit) break;
    const path = dir === "" ? e.name : `${dir}/${e.name}`;
    const isOpen = e.kind === "dir" && !!open[path];
    out.push({ path, name: e.name, kind: e.kind, size: e.size, depth, open: isOpen });
    if (isOpen) visibleRows(dirs, open, path, depth + 1, out, limit);
  }
  return out;
}

export class FileTree {
  dirs = $state<Record<string, DirState>>({});
  open = $state<Record<string, boolean>>({});
  rows = $derived(visibleRows(this.dirs, this.open));

  constructor(private readonly files: FilesApi) {}

  async load(dir: string): Promise<void> {
    const prev = this.dirs[dir];
    this.dirs[dir] = { entries: prev?.entries ?? [], loading: true };
    try {
      const l = await this.files.list(dir === "" ? "." : dir);
      this.dirs[dir] = { entries: l.entries, loading: false, truncated: l.truncated };
    } catch (e) {
      this.dirs[dir] = { entries: prev?.entries ?? [], loading: false, error: e instanceof Error ? e.message : String(e) };
    }
  }

  async toggle(dir: string): Promise<void> {
    if (this.open[dir]) {
      this.open[dir] = false;
      return;
    }
    this.open[dir] = true;
    if (!this.dirs[dir]) await this.load(dir);
  }

  /** Lists again every folder that is loaded and shown (after a change the panel made or was told of). */
  async refresh(only?: string[]): Promise<void> {
    const shown = Object.keys(this.dirs).filter((d) => d === "" || this.open[d]);
    await Promise.all(shown.filter((d) => !only || only.includes(d)).map((d) => this.load(d)));
  }

  /** Forgets a folder that was renamed or deleted (and everything under it). */
  forget(path: string): void {
    for (const d of Object.keys(this.dirs)) if (d === path || d.startsWith(`${path}/`)) delete this.dirs[d];
    for (const d of Object.keys(this.open)) if (d === path || d.startsWith(`${path}/`)) delete this.open[d];
  }
}
