// What one Claude turn changed in the workspace, as the turn-changes view
// shows it (the agent's shape; see the README's files and git API).

export interface TurnChangeSet {
  files: { path: string; status: string }[];
  /** The combined unified diff of those files. */
  diff: string;
  /** The turn was undone (here or by another viewer). */
  undone?: boolean;
}
