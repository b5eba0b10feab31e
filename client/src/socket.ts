// The WebSocket side of the client, exactly as docs/websocket_protocol.md says. No DOM: the socket, the timers and
// the token come in from outside, so the unit tests can play the gateway (test/socket.test.ts).
//
// The rules it keeps:
// - authenticate with the first frame (never a token in the URL), and start nothing before `ready`;
// - a message to send gets its client_message_id once, before the first try; it stays in the outbox (shown as
//   pending) until its `ack`; after a reconnect every unacked message is sent again with the same id, which the
//   gateway stores only once;
// - pushes are at least once and may have gaps: a seq already held is dropped (ChatLog), and a push that skips
//   seqs, or any (re)connect, makes the client `sync` from the highest seq it holds without a hole;
// - a lost connection is retried with exponential backoff (with jitter, so that a thousand clients cut off by
//   the same failure do not all come back in the same millisecond); close code 4401 means "get a new token".

import { ChatLog } from "./chatlog";
import type { Message } from "./types";

export const CLOSE_UNAUTHENTICATED = 4401;
const CLOSE_POLICY = 1008;
const CLOSE_NORMAL = 1000;
const CLOSE_NO_PONG = 4000; // our own code: the connection looked dead, we closed it to reconnect

const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 30_000;
const PING_EVERY_MS = 25_000;
const PONG_WITHIN_MS = 10_000;
const COMMAND_TIMEOUT_MS = 15_000;

/** The part of the browser's WebSocket this module uses (the tests pass a fake one). */
export interface SocketLike {
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: Event) => void) | null;
  onmessage: ((event: MessageEvent) => void) | null;
  onclose: ((event: CloseEvent) => void) | null;
  onerror: ((event: Event) => void) | null;
}

export interface Timers {
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export type Status = "connecting" | "online" | "offline";

/** A message the user sent that the gateway has not acknowledged yet. */
export interface Pending {
  clientMessageId: string;
  chatId: number;
  body: string;
  replyToSeq?: number;
  state: "waiting" | "sent" | "failed"; // waiting: for a connection (or a retry); sent: on the wire
  error?: string;
  attempts: number;
}

/** What the socket tells the rest of the app. Every handler is optional. */
export interface SocketEvents {
  status?(status: Status, detail?: string): void;
  ready?(userId: number): void;
  /** Messages of a watched chat that were added or changed (already kept in its ChatLog). */
  messages?(chatId: number, messages: Message[]): void;
  /** Any message.* push or message that came by sync, watched chat or not (the chat list uses it). */
  activity?(message: Message, kind: "created" | "edited" | "deleted"): void;
  outbox?(chatId: number): void;
  read?(chatId: number, userId: number, lastReadSeq: number): void;
  typing?(chatId: number, userId: number): void;
  presence?(userId: number, online: boolean, lastSeen: string | null): void;
  /** The token was refused and could not be refreshed: the session is over. */
  signedOut?(): void;
}

export interface SocketOptions {
  url: string;
  /** A valid access token (refreshed when `fresh` is true); null when signed out. */
  token(fresh: boolean): Promise<string | null>;
  open(url: string): SocketLike;
  timers?: Timers;
  random?: () => number;
  newId?: () => string;
  events?: SocketEvents;
}

/** How long to wait before reconnect attempt number `attempt` (0, 1, 2 …): doubling, capped, with jitter. */
export function backoffDelay(attempt: number, random: () => number = Math.random): number {
  const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** attempt);
  return Math.round(ceiling * (0.5 + random() / 2)); // between half and all of the ceiling
}

type Frame = Record<string, unknown> & { type: string };

interface Waiting {
  resolve(frame: Frame): void;
  reject(error: Error): void;
  timer: unknown;
}

export class SocketError extends Error {
  constructor(
    message: string,
    readonly code: string,
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
    this.name = "SocketError";
  }
}

export class MessengerSocket {
  readonly logs = new Map<number, ChatLog>();
  readonly outbox = new Map<string, Pending>(); // by client_message_id, in the order of sending
  userId: number | null = null;
  status: Status = "offline";

  private socket: SocketLike | null = null;
  private ready = false;
  private stopped = true;
  private attempt = 0;
  private needFreshToken = false;
  private reconnectTimer: unknown = null;
  private pingTimer: unknown = null;
  private pongTimer: unknown = null;
  private nextRef = 1;
  private readonly waiting = new Map<string, Waiting>();
  private readonly syncing = new Set<number>(); // chats with a sync on the wire
  private readonly resyncAfter = new Set<number>(); // chats that need another sync once the current one ends
  private readonly retryTimers = new Map<string, unknown>();
  private readonly timers: Timers;
  private readonly random: () => number;
  private readonly newId: () => string;
  private readonly events: SocketEvents;

  constructor(private readonly options: SocketOptions) {
    this.timers = options.timers ?? {
      setTimeout: (callback, ms) => globalThis.setTimeout(callback, ms),
      clearTimeout: (handle) => globalThis.clearTimeout(handle as ReturnType<typeof setTimeout>),
    };
    this.random = options.random ?? Math.random;
    this.newId = options.newId ?? (() => crypto.randomUUID());
    this.events = options.events ?? {};
  }

  // -- the connection --------------------------------------------------------------------------------------------

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    void this.connect();
  }

  stop(): void {
    this.stopped = true;
    this.timers.clearTimeout(this.reconnectTimer);
    for (const timer of this.retryTimers.values()) this.timers.clearTimeout(timer);
    this.retryTimers.clear();
    this.drop(CLOSE_NORMAL, "signed out");
    this.setStatus("offline");
  }

  /** Connect again now, without waiting for the backoff: the browser is back online, or the token was refreshed. */
  reconnectNow(): void {
    if (this.stopped) return;
    this.attempt = 0;
    this.timers.clearTimeout(this.reconnectTimer);
    this.drop(CLOSE_NORMAL, "reconnecting");
    void this.connect();
  }

  /** The browser says the network is gone: stop using a socket that cannot work, and wait for `reconnectNow`. */
  goOffline(): void {
    this.drop(CLOSE_NORMAL, "offline");
    this.setStatus("offline", "no network");
  }

  private async connect(): Promise<void> {
    this.timers.clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    if (this.stopped || this.socket) return;
    this.setStatus("connecting");
    const fresh = this.needFreshToken;
    this.needFreshToken = false;
    let token: string | null;
    try {
      token = await this.options.token(fresh);
    } catch {
      this.scheduleReconnect();
      return;
    }
    if (this.stopped || this.socket) return;
    if (token === null) {
      this.stop();
      this.events.signedOut?.();
      return;
    }
    let socket: SocketLike;
    try {
      socket = this.options.open(this.options.url);
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.socket = socket;
    socket.onopen = () => this.transmit({ type: "auth", ref: "hello", token });
    socket.onmessage = (event) => this.receive(socket, event.data);
    socket.onclose = (event) => this.closed(socket, event.code, event.reason);
    socket.onerror = () => {}; // a close event always follows; that is where we react
  }

  /** Forget the current socket (closing it) and everything that was waiting on it. */
  private drop(code: number, reason: string): void {
    const socket = this.socket;
    if (!socket) return;
    this.forget(socket);
    try {
      socket.close(code, reason);
    } catch {
      // closing a socket that never opened may throw; it is gone either way
    }
  }

  private forget(socket: SocketLike): void {
    if (this.socket !== socket) return;
    socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
    this.socket = null;
    this.ready = false;
    this.timers.clearTimeout(this.pingTimer);
    this.timers.clearTimeout(this.pongTimer);
    for (const [ref, waiting] of this.waiting) {
      this.timers.clearTimeout(waiting.timer);
      waiting.reject(new SocketError("the connection was lost before the answer came; try again", "disconnected"));
      this.waiting.delete(ref);
    }
    this.syncing.clear();
    this.resyncAfter.clear();
    // What was on the wire has no ack now and may or may not be stored: send it again after the reconnect.
    for (const pending of this.outbox.values()) if (pending.state === "sent") pending.state = "waiting";
  }

  private closed(socket: SocketLike, code: number, reason: string): void {
    if (this.socket !== socket) return;
    this.forget(socket);
    if (this.stopped) return;
    if (code === CLOSE_UNAUTHENTICATED) this.needFreshToken = true; // expired or revoked: refresh, then retry
    const detail = reason || (code === CLOSE_UNAUTHENTICATED ? "signing in again" : `connection closed (${code})`);
    this.setStatus("offline", detail);
    this.scheduleReconnect(code === CLOSE_POLICY ? 8 : 0);
  }

  private scheduleReconnect(extraAttempts = 0): void {
    if (this.stopped) return;
    const delay = backoffDelay(this.attempt + extraAttempts, this.random);
    this.attempt += 1;
    this.timers.clearTimeout(this.reconnectTimer);
    this.reconnectTimer = this.timers.setTimeout(() => void this.connect(), delay);
  }

  private setStatus(status: Status, detail?: string): void {
    this.status = status;
    this.events.status?.(status, detail);
  }

  private transmit(frame: Frame): boolean {
    if (!this.socket) return false;
    try {
      this.socket.send(JSON.stringify(frame));
      return true;
    } catch {
      return false; // the socket is closing: its close event will reconnect
    }
  }

  // -- frames in ---------------------------------------------------------------------------------------------------

  private receive(socket: SocketLike, data: unknown): void {
    if (this.socket !== socket || typeof data !== "string") return;
    let frame: Frame;
    try {
      frame = JSON.parse(data) as Frame;
    } catch {
      return; // the gateway only sends JSON; ignore anything else rather than crash
    }
    if (frame.type === "ready") return this.onReady(frame);
    const ref = typeof frame.ref === "string" ? frame.ref : null;
    const waiting = ref !== null ? this.waiting.get(ref) : undefined;
    if (waiting) {
      this.waiting.delete(ref!);
      this.timers.clearTimeout(waiting.timer);
      return waiting.resolve(frame);
    }
    switch (frame.type) {
      case "message.created":
        return this.onPushedMessage(frame.message as Message, "created");
      case "message.edited":
        return this.onPushedMessage(frame.message as Message, "edited");
      case "message.deleted":
        return this.onPushedMessage(frame.message as Message, "deleted");
      case "read":
        return this.events.read?.(frame.chat_id as number, frame.user_id as number, frame.last_read_seq as number);
      case "typing":
        return this.events.typing?.(frame.chat_id as number, frame.user_id as number);
      case "presence":
        return this.events.presence?.(
          frame.user_id as number,
          frame.online === true,
          (frame.last_seen as string | undefined) ?? null,
        );
      case "pong":
        return this.timers.clearTimeout(this.pongTimer);
    }
  }

  private onReady(frame: Frame): void {
    this.ready = true;
    this.attempt = 0;
    this.userId = frame.user_id as number;
    this.setStatus("online");
    this.events.ready?.(this.userId);
    // Catch up first, then send what is unacked: commands are done in order, so the sync answers come first and
    // show which of our messages did get stored before the connection broke. Those are resent all the same (in
    // the same tick, before the answers arrive): harmless, the gateway acks the same seq and stores nothing new.
    for (const chatId of this.logs.keys()) void this.sync(chatId);
    for (const pending of this.outbox.values()) if (pending.state === "waiting") this.sendPending(pending);
    this.schedulePing();
  }

  private schedulePing(): void {
    this.timers.clearTimeout(this.pingTimer);
    this.pingTimer = this.timers.setTimeout(() => {
      if (!this.ready) return;
      // No pong in time: the connection is dead even if the browser has not noticed (a laptop that slept).
      this.pongTimer = this.timers.setTimeout(() => {
        const socket = this.socket;
        if (socket) {
          this.drop(CLOSE_NO_PONG, "no pong");
          this.setStatus("offline", "the connection stopped answering");
          this.scheduleReconnect();
        }
      }, PONG_WITHIN_MS);
      this.transmit({ type: "ping", ref: `ping-${this.nextRef++}` });
      this.schedulePing();
    }, PING_EVERY_MS);
  }

  private onPushedMessage(message: Message, kind: "created" | "edited" | "deleted"): void {
    this.events.activity?.(message, kind);
    const log = this.logs.get(message.chat_id);
    if (!log) return; // a chat nobody has open: the chat list shows the activity; history loads when opened
    if (kind === "created" && log.leavesGap(message.seq)) {
      // Some pushes were lost (or are late): keep this one, and ask for everything after what we hold.
      this.keep(log, [message]);
      void this.sync(message.chat_id);
      return;
    }
    this.keep(log, [message]);
  }

  /** Keep messages in their chat's log; tell the UI about those that were new or changed. */
  private keep(log: ChatLog, messages: Message[]): void {
    const changed = messages.filter((message) => log.apply(message) !== "duplicate");
    let outboxChanged = false;
    for (const message of messages) {
      // Our own message came back (by push or sync) although its ack did not: it is stored, stop resending it.
      const pending = this.outbox.get(message.client_message_id);
      if (pending && message.sender_id === this.userId && pending.chatId === message.chat_id) {
        this.settle(pending);
        outboxChanged = true;
      }
    }
    if (changed.length > 0) this.events.messages?.(log.chatId, changed);
    if (outboxChanged) this.events.outbox?.(log.chatId);
  }

  // -- commands ---------------------------------------------------------------------------------------------------

  /** Send a command and wait for its answer (matched by ref). Rejects with SocketError on an error frame. */
  private command(frame: Frame): Promise<Frame> {
    return new Promise((resolve, reject) => {
      if (!this.ready) {
        reject(new SocketError("not connected; try again in a moment", "disconnected"));
        return;
      }
      const ref = String(this.nextRef++);
      const timer = this.timers.setTimeout(() => {
        this.waiting.delete(ref);
        reject(new SocketError("the server did not answer in time", "timeout"));
      }, COMMAND_TIMEOUT_MS);
      this.waiting.set(ref, {
        resolve: (answer) => {
          if (answer.type === "error") {
            const retryAfter = typeof answer.retry_after === "number" ? answer.retry_after : undefined;
            reject(new SocketError(String(answer.message ?? "refused"), String(answer.code ?? "error"), retryAfter));
          } else resolve(answer);
        },
        reject,
        timer,
      });
      this.transmit({ ...frame, ref });
    });
  }

  /** Follow a chat: keep its messages (from history) and sync it after every reconnect. */
  watch(chatId: number, messages: Message[] = []): ChatLog {
    let log = this.logs.get(chatId);
    if (!log) {
      log = new ChatLog(chatId);
      this.logs.set(chatId, log);
    }
    this.keep(log, messages);
    return log;
  }

  /** Messages from a REST history page ("load older"): kept like any other. */
  addHistory(chatId: number, messages: Message[], reachedStart: boolean): void {
    const log = this.watch(chatId, messages);
    if (reachedStart) log.reachedStart = true;
  }

  /** Ask for everything after the highest seq held without a hole, page after page (`has_more`). */
  async sync(chatId: number): Promise<void> {
    const log = this.logs.get(chatId);
    if (!log || !this.ready) return;
    if (this.syncing.has(chatId)) {
      this.resyncAfter.add(chatId); // a sync is on the wire; one more once it is done covers this one too
      return;
    }
    this.syncing.add(chatId);
    try {
      for (;;) {
        const answer = await this.command({ type: "sync", chat_id: chatId, after_seq: log.syncFrom() });
        const messages = (answer.messages as Message[]) ?? [];
        this.keep(log, messages);
        for (const message of messages) this.events.activity?.(message, message.deleted_at ? "deleted" : "created");
        if (!answer.has_more || messages.length === 0) break;
      }
    } catch {
      // disconnected meanwhile: the next `ready` syncs again
    } finally {
      this.syncing.delete(chatId);
    }
    if (this.resyncAfter.delete(chatId)) void this.sync(chatId);
  }

  /** Send a message: shown as pending at once, sent now if connected, else after the next `ready`. */
  send(chatId: number, body: string, replyToSeq?: number): Pending {
    const pending: Pending = { clientMessageId: this.newId(), chatId, body, state: "waiting", attempts: 0 };
    if (replyToSeq !== undefined) pending.replyToSeq = replyToSeq;
    this.outbox.set(pending.clientMessageId, pending);
    if (this.ready) this.sendPending(pending);
    this.events.outbox?.(chatId);
    return pending;
  }

  /** Give up on a message that failed (the user dismissed it). */
  discard(clientMessageId: string): void {
    const pending = this.outbox.get(clientMessageId);
    if (pending) {
      this.settle(pending);
      this.events.outbox?.(pending.chatId);
    }
  }

  /** Try a failed message again, with the same client_message_id. */
  retry(clientMessageId: string): void {
    const pending = this.outbox.get(clientMessageId);
    if (!pending) return;
    pending.state = "waiting";
    delete pending.error;
    if (this.ready) this.sendPending(pending);
    this.events.outbox?.(pending.chatId);
  }

  pendingIn(chatId: number): Pending[] {
    return [...this.outbox.values()].filter((pending) => pending.chatId === chatId);
  }

  private settle(pending: Pending): void {
    this.outbox.delete(pending.clientMessageId);
    this.timers.clearTimeout(this.retryTimers.get(pending.clientMessageId));
    this.retryTimers.delete(pending.clientMessageId);
  }

  private sendPending(pending: Pending): void {
    pending.state = "sent";
    pending.attempts += 1;
    const frame: Frame = {
      type: "send",
      chat_id: pending.chatId,
      client_message_id: pending.clientMessageId,
      body: pending.body,
    };
    // A reply is a send of its own type, with the seq it answers; everything else (ack, retries) is the same.
    if (pending.replyToSeq !== undefined) {
      frame.type = "reply";
      frame.reply_to_seq = pending.replyToSeq;
    }
    this.command(frame).then(
      (ack) => this.acked(pending, ack),
      (error: SocketError) => this.sendFailed(pending, error),
    );
  }

  private acked(pending: Pending, ack: Frame): void {
    if (!this.outbox.has(pending.clientMessageId)) return; // the message came back by push or sync first
    this.settle(pending);
    const log = this.logs.get(pending.chatId);
    if (log && this.userId !== null) {
      // The ack says everything the message is; show it as sent now rather than wait for its push (the push, when
      // it comes, is a duplicate and is dropped).
      const quoted = pending.replyToSeq !== undefined ? log.get(pending.replyToSeq) : undefined;
      const message: Message = {
        chat_id: pending.chatId,
        seq: ack.seq as number,
        sender_id: this.userId,
        client_message_id: pending.clientMessageId,
        body: pending.body,
        created_at: (ack.created_at as string | undefined) ?? new Date().toISOString(),
        edited_at: null,
        deleted_at: null,
      };
      if (quoted) {
        message.reply_to_seq = quoted.seq;
        message.reply_to = {
          seq: quoted.seq,
          sender_id: quoted.sender_id,
          body: quoted.body,
          deleted: !!quoted.deleted_at,
        };
      }
      if (log.leavesGap(message.seq)) void this.sync(pending.chatId); // others wrote meanwhile
      this.keep(log, [message]);
    }
    this.events.outbox?.(pending.chatId);
  }

  private sendFailed(pending: Pending, error: SocketError): void {
    if (!this.outbox.has(pending.clientMessageId)) return;
    if (error.code === "disconnected") {
      pending.state = "waiting"; // the next `ready` sends it again
    } else if (error.code === "rate_limited" || error.code === "unavailable" || error.code === "timeout") {
      // Try again later with the same id: at worst the gateway has it already and acks the same seq.
      pending.state = "waiting";
      pending.error = error.message;
      const delay =
        error.retryAfterSeconds !== undefined
          ? error.retryAfterSeconds * 1000
          : backoffDelay(Math.min(pending.attempts, 6), this.random);
      this.retryTimers.set(
        pending.clientMessageId,
        this.timers.setTimeout(() => {
          this.retryTimers.delete(pending.clientMessageId);
          if (this.ready && this.outbox.get(pending.clientMessageId) === pending && pending.state === "waiting") {
            this.sendPending(pending);
          }
        }, delay),
      );
    } else {
      pending.state = "failed"; // refused for good (too long, not a member, a reply to nothing …): the user decides
      pending.error = error.message;
    }
    this.events.outbox?.(pending.chatId);
  }

  edit(chatId: number, seq: number, body: string): Promise<Frame> {
    return this.command({ type: "edit", chat_id: chatId, seq, body });
  }

  delete(chatId: number, seq: number): Promise<Frame> {
    return this.command({ type: "delete", chat_id: chatId, seq });
  }

  /** Move the read mark; resolves false when it was not done (disconnected meanwhile: the caller tries again). */
  markRead(chatId: number, seq: number): Promise<boolean> {
    return this.command({ type: "read", chat_id: chatId, seq }).then(
      () => true,
      () => false,
    );
  }

  /** "I am typing": no answer unless it fails, and a failure does not matter (the next keystroke sends another). */
  typing(chatId: number): void {
    if (this.ready) this.transmit({ type: "typing", chat_id: chatId });
  }
}
