// What a Claude file tool (Write, Edit, MultiEdit, NotebookEdit) would do to
// a file, as a before and an after text: the before is the file on disk,
// the after is that text with the tool's input applied the way the CLI
// applies it (exact string replacement; the first match, or every match with
// `replace_all`). Pure: the caller reads the file.

export interface StringEdit {
  oldString: string;
  newString: string;
  replaceAll: boolean;
}

export type FileChange =
  | { tool: "Write"; path: string; content: string }
  | { tool: "Edit" | "MultiEdit"; path: string; edits: StringEdit[] }
  | { tool: "NotebookEdit"; path: string; cellId?: string; newSource: string; editMode: "replace" | "insert" | "delete" };

type Obj = Record<string, unknown>;

function obj(v: unknown): Obj | undefined {
  return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Obj) : undefined;
}

function edit(v: unknown): StringEdit | undefined {
  const o = obj(v);
  if (!o || typeof o.old_string !== "string" || typeof o.new_string !== "string") return undefined;
  return { oldString: o.old_string, newString: o.new_string, replaceAll: o.replace_all === true };
}

/** The file change a tool call asks for, or undefined for other tools and malformed input. */
export function fileChange(toolName: string, input: unknown): FileChange | undefined {
  const o = obj(input);
  if (!o) return undefined;
  switch (toolName) {
    case "Write":
      if (typeof o.file_path === "string" && typeof o.content === "string") return { tool: "Write", path: o.file_path, content: o.content };
      return undefined;
    case "Edit": {
      const e = edit(o);
      if (typeof o.file_path === "string" && e) return { tool: "Edit", path: o.file_path, edits: [e] };
      return undefined;
    }
    case "MultiEdit": {
      if (typeof o.file_path !== "string" || !Array.isArray(o.edits)) return undefined;
      const edits = o.edits.map(edit);
      if (edits.some((e) => e === undefined)) return undefined;
      return { tool: "MultiEdit", path: o.file_path, edits: edits as StringEdit[] };
    }
    case "NotebookEdit": {
      if (typeof o.notebook_path !== "string") return undefined;
      const mode = o.edit_mode === "insert" || o.edit_mode === "delete" ? o.edit_mode : "replace";
      return {
        tool: "NotebookEdit",
        path: o.notebook_path,
        cellId: typeof o.cell_id === "string" ? o.cell_id : undefined,
        newSource: typeof o.new_source === "string" ? o.new_source : "",
        editMode: mode,
      };
    }
    default:
      return undefined;
  }
}

export interface ChangeTexts {
  /** null: the file does not exist (a Write creates it). */
  before: string | null;
  after: string;
  /** Something the reader should know: an edit whose text is not in the file, a cell not found. */
  note?: string;
  /** Shown path; for a notebook, which cell. */
  label: string;
}

/**
 * The before and after of a change. `disk` is the file's current text, null
 * when it does not exist, undefined when it could not be read (then an Edit
 * shows only its own strings).
 */
export function changeTexts(change: FileChange, disk: string | null | undefined): ChangeTexts {
  switch (change.tool) {
    case "Write":
      return { before: disk === undefined ? null : disk, after: change.content, label: change.path, note: disk === undefined ? "the file on disk could not be read; shown as new content" : undefined };
    case "Edit":
    case "MultiEdit": {
      if (disk === undefined || disk === null) {
        const before = change.edits.map((e) => e.oldString).join("\n");
        const after = change.edits.map((e) => e.newString).join("\n");
        return { before, after, label: change.path, note: disk === null ? "the file does not exist" : "the file on disk could not be read; showing only the edited text" };
      }
      const applied = applyEdits(disk, change.edits);
      return { before: disk, after: applied.text, label: change.path, note: applied.missing ? `${applied.missing} of ${change.edits.length} edit${change.edits.length === 1 ? "" : "s"} not found in the file on disk` : undefined };
    }
    case "NotebookEdit":
      return notebookTexts(change, disk);
  }
}

export function applyEdits(text: string, edits: StringEdit[]): { text: string; missing: number } {
  let out = text;
  let missing = 0;
  for (const e of edits) {
    if (e.oldString === "") {
      // An empty old string on an empty file is how the CLI creates content.
      if (out === "") out = e.newString;
      else missing++;
      continue;
    }
    const at = out.indexOf(e.oldString);
    if (at < 0) {
      missing++;
      continue;
    }
    out = e.replaceAll ? out.split(e.oldString).join(e.newString) : out.slice(0, at) + e.newString + out.slice(at + e.oldString.length);
  }
  return { text: out, missing };
}

function notebookTexts(change: Extract<FileChange, { tool: "NotebookEdit" }>, disk: string | null | undefined): ChangeTexts {
  const label = `${change.path}${change.cellId ? ` · cell ${change.cellId}` : ""}`;
  if (change.editMode === "insert") return { before: null, after: change.newSource, label };
  let cells: unknown[] = [];
  try {
    const nb = obj(JSON.parse(disk ?? "null"));
    cells = Array.isArray(nb?.cells) ? nb.cells : [];
  } catch {
    cells = [];
  }
  const byId = cells.findIndex((c) => obj(c)?.id === change.cellId);
  const index = byId >= 0 ? byId : change.cellId !== undefined && /^\d+$/.test(change.cellId) ? Number(change.cellId) : change.cellId === undefined ? 0 : -1;
  const cell = obj(cells[index]);
  const src = cell?.source;
  const before = typeof src === "string" ? src : Array.isArray(src) ? src.filter((s) => typeof s === "string").join("") : undefined;
  if (before === undefined) {
    return { before: "", after: change.editMode === "delete" ? "" : change.newSource, label, note: "the cell was not found in the notebook on disk" };
  }
  return { before, after: change.editMode === "delete" ? "" : change.newSource, label };
}

/**
 * A tool's absolute path as a path relative to the workspace root, or
 * undefined when it lies outside. `root` is the session's absolute cwd with
 * its workspace-relative part (`cwdInWorkspace`, "." for the root) removed.
 */
export function workspaceRelative(path: string, absCwd: string | undefined, cwdInWorkspace: string | undefined): string | undefined {
  if (!absCwd) return undefined;
  const root = workspaceRoot(absCwd, cwdInWorkspace ?? ".");
  if (root === undefined) return undefined;
  const abs = path.startsWith("/") ? path : `${absCwd.replace(/\/+$/, "")}/${path}`;
  const parts: string[] = [];
  for (const p of abs.split("/")) {
    if (p === "" || p === ".") continue;
    if (p === "..") {
      if (parts.length === 0) return undefined;
      parts.pop();
    } else parts.push(p);
  }
  const rootParts = root.split("/").filter((p) => p !== "");
  if (parts.length <= rootParts.length || rootParts.some((p, i) => parts[i] !== p)) return undefined;
  return parts.slice(rootParts.length).join("/");
}

function workspaceRoot(absCwd: string, rel: string): string | undefined {
  const cwd = absCwd.replace(/\/+$/, "");
  const relParts = rel.split("/").filter((p) => p !== "" && p !== ".");
  if (relParts.length === 0) return cwd;
  const suffix = `/${relParts.join("/")}`;
  return cwd.endsWith(suffix) ? cwd.slice(0, cwd.length - suffix.length) : undefined;
}
