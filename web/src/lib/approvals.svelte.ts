// The live inbox: one EventSource to /api/approvals/events per page (the
// gateway watches each agent once, however many pages look), its `inbox`
// events kept as state for every view that shows counts or requests.

import { api } from "./api";
import { emptyInbox, type ApprovalAnswer, type Inbox } from "./approvals";

class InboxStore {
  inbox = $state<Inbox>(emptyInbox());
  /** Whether the stream is open now. */
  live = $state(false);
  private source: EventSource | null = null;

  start(): void {
    if (this.source || typeof EventSource === "undefined") return;
    const s = new EventSource("/api/approvals/events");
    this.source = s;
    s.addEventListener("inbox", (e) => {
      try {
        this.inbox = JSON.parse((e as MessageEvent<string>).data) as Inbox;
      } catch {
        /* a malformed event changes nothing */
      }
    });
    s.onopen = () => (this.live = true);
    // EventSource reconnects by itself; the next `inbox` event brings it up to date.
    s.onerror = () => (this.live = false);
  }

  stop(): void {
    this.source?.close();
    this.source = null;
    this.live = false;
    this.inbox = emptyInbox();
  }

  answer(workspace: string, session: string, requestId: string, a: ApprovalAnswer): Promise<void> {
    return api.answerApproval(workspace, session, requestId, a);
  }
}

export const approvals = new InboxStore();
