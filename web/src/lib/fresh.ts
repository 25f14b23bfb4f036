// Workspaces created on this page and not opened yet: the first open starts
// a terminal, so a new workspace opens ready to type in.

const fresh = new Set<string>();

export function markFresh(name: string): void {
  fresh.add(name);
}

/** Whether `name` was just created here; asking forgets it. */
export function takeFresh(name: string): boolean {
  return fresh.delete(name);
}
