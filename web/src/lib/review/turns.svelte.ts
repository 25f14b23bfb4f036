// What each Claude turn changed, from the agent's per-turn snapshots
// (README "Files and git API": claude/{session}/turns/{n}/changes and
// .../undo; turns are numbered from 1 in the order the session's prompts
// went to the CLI, so turn n is the n-th result of the session's own
// conversation). Loaded once a turn has its result; undo asks the agent to
// put the turn's files back.

import type { FilesApi } from "./files-api";

export interface TurnChangeSet {
  files: { path: string; status: string }[];
  /** The combined unified diff of those files. */
  diff: string;
  truncated?: boolean;
  /** Undone from this page. */
  undone?: boolean;
}

/** Turns loaded at most, the latest (older ones are not shown). */
const KEEP_TURNS = 50;

export class TurnTracker {
  changes = $state<Record<number, TurnChangeSet>>({});
  private asked = new Set<number>();
  private synced = 0;

  constructor(
    private readonly files: FilesApi,
    private readonly session: string,
    /** Told which paths a turn (or its undo) changed, so open listings can refresh. */
    private readonly touched: (paths: string[]) => void = () => {},
  ) {}

  /**
   * Called with the number of results the session has shown: lists the
   * recorded turns (the agent answers once the latest result's turn is
   * recorded) and loads the changes of complete turns not loaded yet.
   */
  async sync(results: number): Promise<void> {
    if (results === 0 || results === this.synced) return;
    this.synced = results;
    let turns: { turn: number; complete: boolean }[];
    try {
      turns = (await this.files.turns(this.session)).turns;
    } catch (e) {
      console.warn("per-turn changes unavailable:", e);
      return;
    }
    for (const t of turns.slice(-KEEP_TURNS)) {
      if (!t.complete || this.asked.has(t.turn)) continue;
      this.asked.add(t.turn);
      void this.load(t.turn);
    }
  }

  private async load(turn: number): Promise<void> {
    try {
      const c = await this.files.turnChanges(this.session, turn);
      this.changes[turn] = { files: c.files, diff: c.diff, truncated: c.truncated };
      if (c.files.length > 0) this.touched(c.files.map((f) => f.path));
    } catch (e) {
      console.warn(`turn ${turn} changes:`, e);
      this.asked.delete(turn);
    }
  }

  /** Puts the turn's files back; `force` also over changes made since the turn. */
  async undo(turn: number, force = false): Promise<void> {
    await this.files.undoTurn(this.session, turn, force);
    const c = this.changes[turn];
    if (c) {
      this.changes[turn] = { ...c, undone: true };
      this.touched(c.files.map((f) => f.path));
    }
  }
}
