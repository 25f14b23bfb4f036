// The workspace's files and git routes (README "Files and git API"), under
// /api/workspaces/{name}/. Errors come as {"error": {"code", "message"}}.
// Uploads go through XMLHttpRequest: it is the browser API that reports
// upload progress, and given a File it streams it from disk (the page never
// reads the file into memory). Downloads are plain links (the browser
// streams them to disk with its own progress).

import { ApiError } from "../api";

export { ApiError };

// The shapes are generated from the api crate (api/src/files.rs).
import type { FileEntry, FileList, FileVersion, GitBranches, GitCommitDone, GitCommitInfo, GitFileStatus, GitLog, GitStatus } from "../generated/protocol";

export type Entry = FileEntry;
export type Listing = FileList;
export type GitFile = GitFileStatus;
export type GitCommit = GitCommitInfo;
export type { GitStatus };

export function workspaceBase(workspace: string): string {
  return `/api/workspaces/${encodeURIComponent(workspace)}`;
}

function q(params: Record<string, string | number | boolean | undefined>): string {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== false) u.set(k, v === true ? "1" : String(v));
  const s = u.toString();
  return s ? `?${s}` : "";
}

/** The error a failed response carries (either error shape the gateway uses). */
export function errorFrom(status: number, statusText: string, body: string): ApiError {
  let code = `http_${status}`;
  let message = `${status} ${statusText}`.trim();
  try {
    const parsed = JSON.parse(body) as { error?: { code?: unknown; message?: unknown }; code?: unknown; message?: unknown };
    const e = parsed.error && typeof parsed.error === "object" ? parsed.error : parsed;
    if (typeof e.code === "string") code = e.code;
    if (typeof e.message === "string") message = e.message;
  } catch {
    if (body.trim() && body.length < 300) message = body.trim();
  }
  return new ApiError(status, code, message);
}

async function call(method: string, url: string, init: RequestInit = {}): Promise<Response> {
  let res: Response;
  try {
    res = await fetch(url, { method, credentials: "same-origin", ...init });
  } catch (e) {
    throw new ApiError(0, "network", `cannot reach the server (${e instanceof Error ? e.message : String(e)})`);
  }
  if (!res.ok) throw errorFrom(res.status, res.statusText, await res.text());
  return res;
}

async function json<T>(method: string, url: string, body?: unknown): Promise<T> {
  const res = await call(method, url, body === undefined ? {} : { headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  const text = await res.text();
  return (text ? JSON.parse(text) : undefined) as T;
}

export interface TextFile {
  text: string;
  etag: string | null;
  size: number;
}

/** Largest file the viewer and the diffs read as text. */
export const MAX_TEXT_BYTES = 5 * 1024 * 1024;

export class FilesApi {
  readonly base: string;
  constructor(readonly workspace: string) {
    this.base = workspaceBase(workspace);
  }

  list(path: string): Promise<Listing> {
    return json("GET", `${this.base}/files/list${q({ path })}`);
  }

  contentUrl(path: string, download = false): string {
    return `${this.base}/files/content${q({ path, download })}`;
  }

  archiveUrl(path: string): string {
    return `${this.base}/files/archive${q({ path })}`;
  }

  /**
   * A file as text. A file over `max` bytes or one that is not UTF-8 is an
   * ApiError (`too_large`, `not_a_text_file`) rather than a page full of noise.
   */
  async readText(path: string, max = MAX_TEXT_BYTES): Promise<TextFile> {
    const res = await call("GET", this.contentUrl(path));
    const size = Number(res.headers.get("content-length") ?? "-1");
    if (size > max) {
      await res.body?.cancel();
      throw new ApiError(413, "too_large", `${path} is ${formatBytes(size)}; the viewer opens files up to ${formatBytes(max)} (download it instead)`);
    }
    const bytes = new Uint8Array(await res.arrayBuffer());
    let text: string;
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    } catch {
      throw new ApiError(415, "not_a_text_file", `${path} is not UTF-8 text (download it instead)`);
    }
    if (text.includes("\u0000")) throw new ApiError(415, "not_a_text_file", `${path} looks binary (download it instead)`);
    return { text, etag: res.headers.get("etag"), size: bytes.length };
  }

  /** Saves text; with `etag`, only over that version (else 412 `conflict`); `create`: only if absent (else 409). */
  async writeText(path: string, text: string, opts: { etag?: string | null; create?: boolean } = {}): Promise<FileVersion> {
    const headers: Record<string, string> = { "content-type": "application/octet-stream" };
    if (opts.etag) headers["if-match"] = opts.etag;
    if (opts.create) headers["if-none-match"] = "*";
    const res = await call("PUT", `${this.base}/files/content${q({ path })}`, { headers, body: new TextEncoder().encode(text) });
    const body = (await res.json()) as FileVersion;
    return { ...body, etag: quoteEtag(body.etag) };
  }

  mkdir(path: string): Promise<unknown> {
    return json("POST", `${this.base}/files/mkdir${q({ path })}`);
  }

  move(from: string, to: string): Promise<unknown> {
    return json("POST", `${this.base}/files/move`, { from, to });
  }

  remove(path: string, recursive: boolean): Promise<unknown> {
    return json("DELETE", `${this.base}/files${q({ path, recursive })}`);
  }

  /** Streams a File (or any Blob) to `path`, reporting bytes sent. */
  upload(path: string, file: Blob, onprogress: (sent: number, total: number) => void, opts: { overwrite?: boolean } = {}): { done: Promise<{ etag: string; size: number }>; abort: () => void } {
    const xhr = new XMLHttpRequest();
    const done = new Promise<{ etag: string; size: number }>((resolve, reject) => {
      xhr.open("PUT", `${this.base}/files/content${q({ path })}`);
      xhr.withCredentials = true;
      xhr.setRequestHeader("content-type", "application/octet-stream");
      if (!opts.overwrite) xhr.setRequestHeader("if-none-match", "*");
      xhr.upload.onprogress = (e) => onprogress(e.loaded, e.lengthComputable ? e.total : file.size);
      xhr.onload = () => {
        if (xhr.status >= 200 && xhr.status < 300) {
          onprogress(file.size, file.size);
          try {
            resolve(JSON.parse(xhr.responseText) as { etag: string; size: number });
          } catch {
            resolve({ etag: "", size: file.size });
          }
        } else reject(errorFrom(xhr.status, xhr.statusText, xhr.responseText));
      };
      xhr.onerror = () => reject(new ApiError(0, "network", "the upload was cut off (network error)"));
      xhr.onabort = () => reject(new ApiError(0, "aborted", "upload cancelled"));
      xhr.send(file);
    });
    return { done, abort: () => xhr.abort() };
  }

  gitStatus(): Promise<GitStatus> {
    return json("GET", `${this.base}/git/status`);
  }

  gitInit(): Promise<unknown> {
    return json("POST", `${this.base}/git/init`);
  }

  async gitDiff(staged: boolean, path?: string): Promise<string> {
    return (await call("GET", `${this.base}/git/diff${q({ staged: staged ? 1 : 0, path })}`)).text();
  }

  gitStage(paths: string[]): Promise<unknown> {
    return json("POST", `${this.base}/git/stage`, { paths });
  }

  gitUnstage(paths: string[]): Promise<unknown> {
    return json("POST", `${this.base}/git/unstage`, { paths });
  }

  gitCommit(message: string): Promise<GitCommitDone> {
    return json("POST", `${this.base}/git/commit`, { message });
  }

  gitBranches(): Promise<GitBranches> {
    return json("GET", `${this.base}/git/branches`);
  }

  gitCheckout(branch: string): Promise<unknown> {
    return json("POST", `${this.base}/git/checkout`, { branch });
  }

  async gitLog(limit = 30): Promise<GitCommit[]> {
    return (await json<GitLog>("GET", `${this.base}/git/log${q({ limit })}`)).commits;
  }

  /** A Claude session's recorded turns, oldest first. */
  turns(session: string): Promise<{ turns: { turn: number; complete: boolean }[] }> {
    return json("GET", `${this.base}/claude/${encodeURIComponent(session)}/turns`);
  }

  /** What turn `turn` (from 1) of a Claude session changed. */
  turnChanges(session: string, turn: number): Promise<{ turn: number; files: { path: string; status: string }[]; diff: string; truncated: boolean }> {
    return json("GET", `${this.base}/claude/${encodeURIComponent(session)}/turns/${turn}/changes`);
  }

  undoTurn(session: string, turn: number, force: boolean): Promise<{ restored: string[]; removed: string[] }> {
    return json("POST", `${this.base}/claude/${encodeURIComponent(session)}/turns/${turn}/undo${q({ force })}`);
  }

  async gitShow(sha: string): Promise<string> {
    return (await call("GET", `${this.base}/git/show${q({ sha })}`)).text();
  }
}

/** ETags travel quoted in headers; a body may give the bare version. */
export function quoteEtag(etag: string): string {
  return etag.startsWith('"') || etag.startsWith("W/") ? etag : `"${etag}"`;
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[u]}`;
}

/** `dir` joined with `name` as a workspace-relative path ("" is the root). */
export function joinPath(dir: string, name: string): string {
  return dir === "" || dir === "." ? name : `${dir.replace(/\/+$/, "")}/${name}`;
}

export function parentOf(path: string): string {
  const i = path.lastIndexOf("/");
  return i < 0 ? "" : path.slice(0, i);
}

export function baseName(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}
