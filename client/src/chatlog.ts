// The messages of one chat that this client holds, each seq once. No DOM, no network: the unit tests drive it.
//
// Messages reach the client by three roads: history pages (REST), `sync` answers and pushes (WebSocket). Pushes
// are *at least once* and *may have gaps* (docs/websocket_protocol.md), so the seq is the identity of a message:
// a message whose seq is held already is a duplicate, unless it is a newer state of it (edited, deleted).

import type { Message } from "./types";

export type Applied = "added" | "updated" | "duplicate";

/** Is `incoming` a later state of the same message than `held`? (Deleted beats edited beats created.) */
export function isNewer(incoming: Message, held: Message): boolean {
  if (incoming.deleted_at && !held.deleted_at) return true;
  if (held.deleted_at) return false; // a deletion is final
  if (incoming.edited_at && (!held.edited_at || Date.parse(incoming.edited_at) > Date.parse(held.edited_at))) {
    return true;
  }
  // Same state, but the gateway now tells us about the reply (a message we made ourselves from an ack has none).
  return incoming.reply_to !== undefined && held.reply_to === undefined;
}

export class ChatLog {
  private readonly bySeq = new Map<number, Message>();
  /** True once history has been read back to seq 1: there is nothing older to load. */
  reachedStart = false;

  constructor(readonly chatId: number) {}

  get size(): number {
    return this.bySeq.size;
  }

  get(seq: number): Message | undefined {
    return this.bySeq.get(seq);
  }

  /** Keep a message; say whether it was new, a newer state of one held, or a duplicate (ignored). */
  apply(message: Message): Applied {
    if (message.chat_id !== this.chatId)
      throw new Error(`message of chat ${message.chat_id} given to chat ${this.chatId}`);
    const held = this.bySeq.get(message.seq);
    if (held && !isNewer(message, held)) return "duplicate";
    this.bySeq.set(message.seq, message);
    if (message.seq === 1) this.reachedStart = true;
    return held ? "updated" : "added";
  }

  /**
   * Show a change of ours before the server confirms it (an edit or a deletion we were acked for). Unconditional:
   * the caller keeps the old edit time, so the push with the server's own time still counts as newer.
   */
  overwrite(message: Message): void {
    if (this.bySeq.has(message.seq)) this.bySeq.set(message.seq, message);
  }

  /** Every message held, oldest first. */
  ordered(): Message[] {
    return [...this.bySeq.values()].sort((a, b) => a.seq - b.seq);
  }

  /** The lowest seq held (where "load older" continues), or undefined when nothing is held. */
  lowestSeq(): number | undefined {
    let lowest: number | undefined;
    for (const seq of this.bySeq.keys()) if (lowest === undefined || seq < lowest) lowest = seq;
    return lowest;
  }

  highestSeq(): number {
    let highest = 0;
    for (const seq of this.bySeq.keys()) highest = Math.max(highest, seq);
    return highest;
  }

  /**
   * Where a `sync` starts: the highest seq such that every seq from the lowest held up to it is held too.
   * History gives a contiguous window (the newest page, then older ones); a push that skipped some seqs leaves a
   * hole, and syncing from below the hole fills it. 0 when nothing is held: then sync brings the whole chat.
   */
  syncFrom(): number {
    const lowest = this.lowestSeq();
    if (lowest === undefined) return 0;
    let seq = lowest;
    while (this.bySeq.has(seq + 1)) seq += 1;
    return seq;
  }

  /** Would a push of this seq leave a hole after what is held? Then the client must sync. */
  leavesGap(seq: number): boolean {
    return seq > this.syncFrom() + 1;
  }
}
