// A small read-only window into the UI for the browser tests (and for people
// debugging in the console): the text of each terminal, which renderer it
// uses, and the connection states seen. It exposes nothing the page does not
// already show.

import type { ConnState } from "./client";

export interface PaneHandle {
  id: string;
  /** Every line of the buffer (scrollback and screen), right-trimmed. */
  text(): string;
  /** The visible screen only. */
  screen(): string;
  size(): { cols: number; rows: number };
  renderer(): string;
  readOnly(): boolean;
  /** The selected text (search selects its match). */
  selection(): string;
  /** The first buffer line in view (0: scrolled to the top). */
  viewportY(): number;
  fontSize(): number;
  /** The terminal theme's background colour. */
  background(): string;
}

export interface DispatchDebug {
  panes: Map<string, PaneHandle>;
  activeSession: string | null;
  /** Every connection state the workspace view went through, in order. */
  states: ConnState[];
  /** The workspace view has the session list (tabs are settled). */
  listed: boolean;
  /** Drops the workspace connection as a network failure would; the UI reconnects by itself. */
  dropConnection?: () => void;
  /** Times a session was paused because its terminal fell behind. */
  flowPauses?: () => number;
  /** Times the server skipped ahead to a snapshot because this page fell behind. */
  resyncs?: () => number;
  /** The client's recent stream events (attach, pause, resume, resync, gap). */
  streamLog?: () => string[];
}

declare global {
  interface Window {
    __dispatch?: DispatchDebug;
  }
}

export function debugHook(): DispatchDebug {
  if (!window.__dispatch) window.__dispatch = { panes: new Map(), activeSession: null, states: [], listed: false };
  return window.__dispatch;
}
