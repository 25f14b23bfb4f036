// The text a file had when Claude asked to change it, kept by tool-use id:
// the permission prompt reads the file on disk, and the tool card of the same
// call shows the same diff after the tool ran (when the disk already holds
// the new text). Bounded: the oldest entries go first.

import type { FilesApi } from "./files-api";

/** The file's text, null when it did not exist, undefined when it could not be read. */
export type Before = string | null | undefined;

const MAX_ENTRIES = 200;
const cache = new Map<string, Promise<{ before: Before; error?: string }>>();

export function cachedBefore(files: FilesApi, key: string): Promise<{ before: Before; error?: string }> | undefined {
  return cache.get(fullKey(files, key));
}

export function readBefore(files: FilesApi, key: string, path: string): Promise<{ before: Before; error?: string }> {
  const full = fullKey(files, key);
  const hit = cache.get(full);
  if (hit) return hit;
  const p = files.readText(path).then(
    (f) => ({ before: f.text as Before }),
    (e: unknown) => {
      const err = e as { code?: string; message?: string };
      if (err.code === "not_found") return { before: null as Before };
      return { before: undefined as Before, error: err.message ?? String(e) };
    },
  );
  cache.set(full, p);
  while (cache.size > MAX_ENTRIES) {
    const oldest = cache.keys().next().value;
    if (oldest === undefined) break;
    cache.delete(oldest);
  }
  return p;
}

function fullKey(files: FilesApi, key: string): string {
  return `${files.workspace}\u0000${key}`;
}
