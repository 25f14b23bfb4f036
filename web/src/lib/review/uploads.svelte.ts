// Uploads in flight and just finished, for one workspace: dropped on the files
// panel or the terminal, or picked with the file chooser. Each File goes to
// the files API as it is (streamed by the browser from disk); the list shows
// bytes sent. Bounded: finished entries beyond the last few are dropped.

import { ApiError, formatBytes, joinPath, type FilesApi } from "./files-api";

export type UploadStatus = "sending" | "done" | "failed" | "cancelled";

export interface Upload {
  id: number;
  path: string;
  sent: number;
  total: number;
  status: UploadStatus;
  error?: string;
  /** It failed because the file exists: it may be sent again to replace it. */
  exists?: boolean;
  abort?: () => void;
}

const KEEP_FINISHED = 8;

export class UploadQueue {
  items = $state<Upload[]>([]);
  private next = 1;
  /** The File of each listed entry, kept to replace an existing file on request. */
  private blobs = new Map<number, File>();

  constructor(
    private readonly files: FilesApi,
    /** Told when an upload ends, so a listing of its folder can refresh. */
    private readonly onfinished: (path: string, ok: boolean) => void = () => {},
  ) {}

  get active(): number {
    return this.items.filter((u) => u.status === "sending").length;
  }

  /** Uploads each file into `dir` (workspace-relative, "" for the root). */
  add(dir: string, files: Iterable<File>): void {
    for (const f of files) this.start(joinPath(dir, f.name), f);
  }

  /** Sends a failed upload again, replacing the file that was in the way. */
  replace(id: number): void {
    const file = this.blobs.get(id);
    const u = this.items.find((x) => x.id === id);
    if (!file || !u) return;
    this.dismiss(id);
    this.start(u.path, file, true);
  }

  private start(path: string, file: File, overwrite = false): void {
    const id = this.next++;
    this.blobs.set(id, file);
    this.items.push({ id, path, sent: 0, total: file.size, status: "sending" });
    const item = () => this.items.find((u) => u.id === id);
    const { done, abort } = this.files.upload(path, file, (sent, total) => {
      const u = item();
      if (u) {
        u.sent = sent;
        u.total = total;
      }
    }, { overwrite });
    const u0 = item();
    if (u0) u0.abort = abort;
    done.then(
      () => {
        const u = item();
        if (u) {
          u.status = "done";
          u.sent = u.total;
        }
        this.blobs.delete(id);
        this.onfinished(path, true);
        this.trim();
      },
      (e: unknown) => {
        const u = item();
        if (u) {
          const err = e instanceof ApiError ? e : undefined;
          u.status = err?.code === "aborted" ? "cancelled" : "failed";
          u.exists = err?.status === 409;
          u.error = err?.status === 409 ? `${path} already exists` : err?.code === "too_large" ? `too large (${formatBytes(file.size)}): ${err.message}` : (err?.message ?? String(e));
        }
        this.onfinished(path, false);
        this.trim();
      },
    );
  }

  dismiss(id: number): void {
    this.blobs.delete(id);
    this.items = this.items.filter((u) => u.id !== id);
  }

  private trim(): void {
    const finished = this.items.filter((u) => u.status !== "sending");
    if (finished.length <= KEEP_FINISHED) return;
    const drop = new Set(finished.slice(0, finished.length - KEEP_FINISHED).map((u) => u.id));
    for (const id of drop) this.blobs.delete(id);
    this.items = this.items.filter((u) => !drop.has(u.id));
  }
}

/** The files a drag carries (none for a drag of text or of a page element). */
export function draggedFiles(e: DragEvent): File[] {
  const dt = e.dataTransfer;
  if (!dt) return [];
  return [...dt.files];
}

export function carriesFiles(e: DragEvent): boolean {
  return e.dataTransfer?.types.includes("Files") ?? false;
}
