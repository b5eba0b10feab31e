// One open chat: its history (with "load older"), live messages, what you are sending, typing, read receipts,
// presence, and editing or deleting your own messages.
//
// The messages themselves live in the socket's ChatLog (each seq once); this view only draws them. It redraws the
// whole list on each change: simple, and fast enough for a chat's worth of messages.

import { errorText } from "../api";
import type { ChatLog } from "../chatlog";
import type { Pending } from "../socket";
import type { Message } from "../types";
import type { Context } from "./context";
import { field, h, replace, timeText } from "./dom";

const TYPING_SEND_EVERY_MS = 3_000; // the protocol: at most every few seconds while the user types
const TYPING_SHOWN_MS = 5_000; // … and the other side shows "typing…" for about 5 s after the last one

export class ChatView {
  readonly element: HTMLElement;
  private readonly title = h("h2", { class: "chat-title" }, "…");
  private readonly subtitle = h("p", { class: "chat-subtitle", "aria-live": "polite" });
  private readonly list = h("ol", { class: "messages", role: "log", "aria-label": "Messages", "aria-live": "polite" });
  private readonly olderButton = h("button", { type: "button", class: "older" }, "Load older messages");
  private readonly scroller: HTMLElement;
  private readonly input = h("textarea", {
    name: "message",
    rows: 1,
    maxlength: 4000,
    placeholder: "Write a message…",
  });
  private readonly replyBar = h("div", { class: "reply-bar", hidden: true });
  private log: ChatLog | null = null;
  private otherUserId: number | null = null;
  private replyTo: Message | null = null;
  private editing: number | null = null; // the seq being edited
  private lastTypingSent = 0;
  private typingUntil = 0;
  private typingTimer: ReturnType<typeof setTimeout> | undefined;
  private lastReadSent = 0;
  private loadingOlder = false;
  /** Replies are new: offer "Reply" only once the gateway shows it knows them (its messages carry `reply_to`). */
  private repliesSupported = false;

  constructor(
    private readonly context: Context,
    readonly chatId: number,
  ) {
    this.olderButton.addEventListener("click", () => void this.loadOlder());
    this.scroller = h("div", { class: "scroller" }, this.olderButton, this.list);
    const composer = this.composer();
    this.element = h(
      "section",
      { class: "chat-view", "aria-labelledby": "chat-title" },
      h(
        "header",
        { class: "chat-header" },
        h("a", { class: "back", href: "#/chats", "aria-label": "Back to the chat list" }, "←"),
        h("div", {}, this.title, this.subtitle),
      ),
      this.scroller,
      composer,
    );
    this.title.id = "chat-title";
  }

  /** Load the newest page of history and start following the chat. */
  async open(): Promise<void> {
    replace(this.list, h("li", { class: "muted empty" }, "Loading…"));
    try {
      const summaries = await this.context.api.chats();
      const summary = summaries.find((item) => item.chat_id === this.chatId);
      if (!summary) throw new Error("This chat does not exist, or you are not one of its members");
      this.otherUserId = summary.other_user_id;
      this.context.users.nameInto(this.title, summary.other_user_id);
      const page = await this.context.api.history(this.chatId);
      this.log = this.context.socket.watch(this.chatId);
      this.context.socket.addHistory(this.chatId, page.messages, !page.has_more);
      // Messages may have come between the page and the watch: sync closes that window.
      void this.context.socket.sync(this.chatId);
      this.render(true);
      this.input.focus();
    } catch (error) {
      replace(this.list, h("li", { class: "error-text" }, `Could not open the chat: ${errorText(error)}`));
    }
  }

  close(): void {
    clearTimeout(this.typingTimer);
  }

  // -- what the socket tells us ------------------------------------------------------------------------------------

  messagesChanged(changed: readonly Message[] = []): void {
    // Their message has arrived: they are done typing it.
    if (changed.some((message) => message.sender_id === this.otherUserId)) this.typingUntil = 0;
    this.render(false);
  }

  typing(userId: number): void {
    if (userId !== this.otherUserId) return;
    this.typingUntil = Date.now() + TYPING_SHOWN_MS;
    this.renderSubtitle();
    clearTimeout(this.typingTimer);
    this.typingTimer = setTimeout(() => this.renderSubtitle(), TYPING_SHOWN_MS + 50);
  }

  read(userId: number): void {
    if (userId === this.otherUserId) this.render(false);
  }

  presenceChanged(userId: number): void {
    if (userId === this.otherUserId) this.renderSubtitle();
  }

  // -- drawing -------------------------------------------------------------------------------------------------------

  private renderSubtitle(): void {
    if (this.otherUserId === null) return;
    if (Date.now() < this.typingUntil) {
      this.subtitle.textContent = "typing…";
      this.subtitle.className = "chat-subtitle typing";
      return;
    }
    const presence = this.context.presence.get(this.otherUserId);
    this.subtitle.className = "chat-subtitle";
    if (!presence) this.subtitle.textContent = "";
    else if (presence.online) this.subtitle.textContent = "online";
    else this.subtitle.textContent = presence.lastSeen ? `last seen ${timeText(presence.lastSeen)}` : "offline";
  }

  private render(scrollToEnd: boolean): void {
    if (!this.log) return;
    const atEnd = this.scroller.scrollHeight - this.scroller.scrollTop - this.scroller.clientHeight < 40;
    const messages = this.log.ordered();
    if (messages.some((message) => message.reply_to !== undefined)) this.repliesSupported = true;
    const pending = this.context.socket.pendingIn(this.chatId);
    const items = [...messages.map((message) => this.messageItem(message)), ...pending.map((p) => this.pendingItem(p))];
    if (items.length === 0) items.push(h("li", { class: "muted empty" }, "No messages yet. Say hello!"));
    replace(this.list, ...items);
    this.olderButton.hidden = this.log.reachedStart || messages.length === 0;
    this.renderSubtitle();
    if (scrollToEnd || atEnd) this.scroller.scrollTop = this.scroller.scrollHeight;
    this.markRead();
  }

  private messageItem(message: Message): HTMLElement {
    const mine = message.sender_id === this.context.me.userId;
    const deleted = message.deleted_at !== null;
    const theirRead = this.context.theirReadSeq.get(this.chatId) ?? 0;
    const item = h("li", {
      class: `message ${mine ? "mine" : "theirs"}${deleted ? " deleted" : ""}`,
      "data-seq": message.seq,
      "data-sender": message.sender_id,
    });
    if (message.reply_to) {
      const quoted = message.reply_to;
      const who = h("span", { class: "quote-author" });
      this.context.users.nameInto(who, quoted.sender_id);
      item.append(
        h("blockquote", { class: "quote" }, who, h("span", {}, quoted.deleted ? "Message deleted" : quoted.body)),
      );
    }
    if (this.editing === message.seq && !deleted) {
      item.append(this.editForm(message));
      return item;
    }
    item.append(h("p", { class: "body" }, deleted ? "Message deleted" : message.body));
    // ✓ stored (it has a seq); ✓✓ the other member has read up to it (their `read` receipts).
    const read = message.seq <= theirRead;
    const receipt =
      mine && !deleted
        ? h(
            "span",
            { class: "receipt", "data-receipt": read ? "read" : "sent", "aria-label": read ? "read" : "sent" },
            read ? " ✓✓" : " ✓",
          )
        : null;
    const edited = message.edited_at && !deleted ? " · edited" : "";
    const time = h("time", { datetime: message.created_at }, timeText(message.created_at));
    item.append(h("p", { class: "meta" }, time, edited, receipt));
    if (!deleted) item.append(this.actions(message, mine));
    return item;
  }

  private actions(message: Message, mine: boolean): HTMLElement {
    const actions = h("div", { class: "message-actions" });
    if (this.repliesSupported) {
      actions.append(h("button", { type: "button", class: "link", onclick: () => this.startReply(message) }, "Reply"));
    }
    if (mine) {
      actions.append(
        h(
          "button",
          {
            type: "button",
            class: "link",
            onclick: () => this.startEdit(message.seq),
            "aria-label": `Edit message ${message.seq}`,
          },
          "Edit",
        ),
        h(
          "button",
          {
            type: "button",
            class: "link danger",
            onclick: () => void this.remove(message.seq),
            "aria-label": `Delete message ${message.seq}`,
          },
          "Delete",
        ),
      );
    }
    return actions;
  }

  private pendingItem(pending: Pending): HTMLElement {
    const failed = pending.state === "failed";
    return h(
      "li",
      { class: `message mine pending${failed ? " failed" : ""}`, "data-pending": pending.clientMessageId },
      h("p", { class: "body" }, pending.body),
      h(
        "p",
        { class: "meta" },
        failed
          ? `Not sent: ${pending.error ?? "refused"}`
          : pending.error
            ? `Waiting to retry (${pending.error})`
            : "Sending…",
      ),
      failed
        ? h(
            "div",
            { class: "message-actions" },
            h(
              "button",
              { type: "button", class: "link", onclick: () => this.context.socket.retry(pending.clientMessageId) },
              "Retry",
            ),
            h(
              "button",
              {
                type: "button",
                class: "link danger",
                onclick: () => this.context.socket.discard(pending.clientMessageId),
              },
              "Discard",
            ),
          )
        : null,
    );
  }

  // -- reading -------------------------------------------------------------------------------------------------------

  /** Tell the gateway we have seen the newest message, when we really can see it (the tab is visible). */
  markRead(): void {
    if (!this.log || document.visibilityState !== "visible") return;
    const newest = this.log.highestSeq();
    if (newest > this.lastReadSent) {
      this.lastReadSent = newest;
      void this.context.socket.markRead(this.chatId, newest).then((done) => {
        if (!done && this.lastReadSent === newest) this.lastReadSent = 0; // again with the next redraw
      });
    }
  }

  private async loadOlder(): Promise<void> {
    const lowest = this.log?.lowestSeq();
    if (!this.log || lowest === undefined || this.loadingOlder) return;
    this.loadingOlder = true;
    this.olderButton.disabled = true;
    const fromBottom = this.scroller.scrollHeight - this.scroller.scrollTop;
    try {
      // Keyset paging: "the page before the oldest seq I hold", never an offset that shifts as messages arrive.
      const page = await this.context.api.history(this.chatId, lowest);
      this.context.socket.addHistory(this.chatId, page.messages, !page.has_more);
      this.render(false);
      this.scroller.scrollTop = this.scroller.scrollHeight - fromBottom; // keep what was on screen in place
    } catch (error) {
      this.context.notice.show(error, "Could not load older messages");
    } finally {
      this.loadingOlder = false;
      this.olderButton.disabled = false;
    }
  }

  // -- writing -------------------------------------------------------------------------------------------------------

  private composer(): HTMLElement {
    const send = h("button", { type: "submit", class: "primary" }, "Send");
    const form = h("form", { class: "composer" }, this.replyBar, field("Message", this.input).wrapper, send);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.send();
    });
    this.input.addEventListener("keydown", (event) => {
      // Enter sends, Shift+Enter starts a new line (as in most messengers).
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.send();
      } else if (event.key === "Escape" && this.replyTo) {
        this.cancelReply();
      }
    });
    this.input.addEventListener("input", () => {
      const now = Date.now();
      if (this.input.value && now - this.lastTypingSent > TYPING_SEND_EVERY_MS) {
        this.lastTypingSent = now;
        this.context.socket.typing(this.chatId);
      }
    });
    return form;
  }

  private send(): void {
    const body = this.input.value.trim();
    if (!body || !this.log) return;
    this.context.socket.send(this.chatId, body, this.replyTo?.seq);
    this.input.value = "";
    this.lastTypingSent = 0;
    this.cancelReply();
    this.render(true);
  }

  private startReply(message: Message): void {
    this.replyTo = message;
    replace(
      this.replyBar,
      h("span", {}, "Replying to: ", h("q", {}, message.body.slice(0, 80))),
      h("button", { type: "button", class: "link", onclick: () => this.cancelReply() }, "Cancel reply"),
    );
    this.replyBar.hidden = false;
    this.input.focus();
  }

  private cancelReply(): void {
    this.replyTo = null;
    this.replyBar.hidden = true;
    replace(this.replyBar);
  }

  private startEdit(seq: number): void {
    this.editing = seq;
    this.render(false);
    this.list.querySelector<HTMLTextAreaElement>(`[data-seq="${seq}"] textarea`)?.focus();
  }

  private editForm(message: Message): HTMLElement {
    const text = h("textarea", { name: "edit", rows: 2, maxlength: 4000 });
    text.value = message.body;
    const form = h(
      "form",
      { class: "edit-form" },
      field("Edit message", text).wrapper,
      h(
        "div",
        { class: "actions" },
        h("button", { type: "submit", class: "primary" }, "Save"),
        h("button", { type: "button", onclick: () => this.stopEdit() }, "Cancel"),
      ),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      void this.saveEdit(message, text.value.trim());
    });
    text.addEventListener("keydown", (event) => {
      if (event.key === "Escape") this.stopEdit();
    });
    return form;
  }

  private stopEdit(): void {
    this.editing = null;
    this.render(false);
  }

  private async saveEdit(message: Message, body: string): Promise<void> {
    if (!body || body === message.body) return this.stopEdit();
    try {
      await this.context.socket.edit(this.chatId, message.seq, body);
      this.editing = null;
      // The ack carries no message: show the new text now. Its edit time is the old one (the local clock may be
      // off), so that the message.edited push, with the server's time, still counts as newer and replaces it.
      this.log?.overwrite({ ...message, body, edited_at: message.edited_at ?? message.created_at });
      this.render(false);
    } catch (error) {
      this.context.notice.show(error, "Could not edit the message");
    }
  }

  private async remove(seq: number): Promise<void> {
    if (!confirm("Delete this message for everyone?")) return;
    try {
      await this.context.socket.delete(this.chatId, seq);
      const message = this.log?.get(seq);
      if (message) this.log?.overwrite({ ...message, body: "", deleted_at: message.created_at });
      this.render(false);
    } catch (error) {
      this.context.notice.show(error, "Could not delete the message");
    }
  }
}
