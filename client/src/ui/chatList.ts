// The list of chats (last message, unread count, presence) and the search that opens a new chat.
//
// The list comes from GET /chats; between reloads it is kept current by the socket's pushes (a new message moves
// its chat to the top and counts as unread unless the chat is open). After every reconnect it is read again,
// since pushes missed while offline are not replayed.

import { errorText } from "../api";
import type { ChatSummary, Message, User } from "../types";
import type { Context } from "./context";
import { field, h, replace, timeText } from "./dom";
import { displayName } from "./users";

export class ChatList {
  readonly element: HTMLElement;
  private readonly list = h("ul", { class: "chat-list", "aria-label": "Chats" });
  private readonly results = h("ul", { class: "search-results", "aria-label": "Users found" });
  private readonly searchInput = h("input", {
    type: "search",
    name: "user-search",
    placeholder: "Username…",
    autocomplete: "off",
    maxlength: 32,
  });
  private summaries: ChatSummary[] = [];
  private activeChatId: number | null = null;
  private loaded = false;
  private searchTimer: ReturnType<typeof setTimeout> | undefined;
  private searchSeq = 0;

  constructor(private readonly context: Context) {
    const searchForm = h(
      "form",
      { class: "search", role: "search" },
      field("Find a user by name", this.searchInput).wrapper,
    );
    searchForm.addEventListener("submit", (event) => {
      event.preventDefault();
      void this.search();
    });
    this.searchInput.addEventListener("input", () => {
      clearTimeout(this.searchTimer);
      this.searchTimer = setTimeout(() => void this.search(), 250); // not one request per keystroke
    });
    this.element = h(
      "aside",
      { class: "sidebar", "aria-label": "Your chats" },
      searchForm,
      this.results,
      h("h2", { class: "sidebar-title" }, "Chats"),
      this.list,
    );
    this.render();
  }

  async reload(): Promise<void> {
    try {
      this.summaries = await this.context.api.chats();
      this.loaded = true;
      this.render();
    } catch (error) {
      this.context.notice.show(error, "Could not load your chats");
    }
  }

  setActive(chatId: number | null): void {
    this.activeChatId = chatId;
    const summary = this.summaries.find((item) => item.chat_id === chatId);
    if (summary) summary.unread_count = 0; // the open chat is being read; the read push confirms it
    this.render();
  }

  /** A message pushed or synced, in any chat. */
  activity(message: Message, kind: "created" | "edited" | "deleted"): void {
    const summary = this.summaries.find((item) => item.chat_id === message.chat_id);
    if (!summary) {
      void this.reload(); // a chat someone else just opened with us
      return;
    }
    const last = summary.last_message;
    if (!last || message.seq > last.seq) {
      summary.last_message = message;
      const fromOther = message.sender_id !== this.context.me.userId;
      if (kind === "created" && fromOther && message.chat_id !== this.activeChatId) summary.unread_count += 1;
      // Most recently active first.
      this.summaries = [summary, ...this.summaries.filter((item) => item !== summary)];
    } else if (message.seq === last.seq) {
      summary.last_message = message; // an edit or a deletion of the last message
    }
    this.render();
  }

  /** A read push: ours (another device, or this one) resets the unread count. */
  read(chatId: number, userId: number, lastReadSeq: number): void {
    if (userId !== this.context.me.userId) return;
    const summary = this.summaries.find((item) => item.chat_id === chatId);
    if (!summary) return;
    if (!summary.last_message || lastReadSeq >= summary.last_message.seq) {
      summary.unread_count = 0;
      this.render();
    } else {
      void this.reload(); // read up to somewhere in the middle: only the server knows the count now
    }
  }

  render(): void {
    if (!this.loaded) {
      replace(this.list, h("li", { class: "muted empty" }, "Loading…"));
      return;
    }
    if (this.summaries.length === 0) {
      replace(this.list, h("li", { class: "muted empty" }, "No chats yet. Find someone above to start one."));
      return;
    }
    replace(this.list, ...this.summaries.map((summary) => this.item(summary)));
  }

  private item(summary: ChatSummary): HTMLElement {
    const name = h("span", { class: "chat-name" });
    this.context.users.nameInto(name, summary.other_user_id);
    const last = summary.last_message;
    const preview = !last
      ? "No messages yet"
      : last.deleted_at
        ? "Message deleted"
        : `${last.sender_id === this.context.me.userId ? "You: " : ""}${last.body}`;
    const online = this.context.presence.get(summary.other_user_id)?.online === true;
    const unread = summary.unread_count;
    return h(
      "li",
      {},
      h(
        "a",
        {
          class: `chat-item${summary.chat_id === this.activeChatId ? " active" : ""}`,
          href: `#/chats/${summary.chat_id}`,
          "data-chat-id": summary.chat_id,
          "aria-current": summary.chat_id === this.activeChatId ? "page" : null,
        },
        h("span", { class: `avatar${online ? " online" : ""}`, "aria-hidden": "true" }, "●"),
        h(
          "span",
          { class: "chat-text" },
          h(
            "span",
            { class: "chat-top" },
            name,
            last ? h("time", { class: "chat-time" }, timeText(last.created_at)) : null,
          ),
          h("span", { class: "chat-preview" }, preview),
        ),
        unread > 0
          ? h("span", { class: "badge", "aria-label": `${unread} unread`, "data-unread": unread }, String(unread))
          : null,
        online ? h("span", { class: "visually-hidden" }, " (online)") : null,
      ),
    );
  }

  private async search(): Promise<void> {
    const prefix = this.searchInput.value.trim();
    const mine = ++this.searchSeq; // answers may come back out of order: only the latest one counts
    if (!prefix) {
      replace(this.results);
      return;
    }
    try {
      const users = (await this.context.api.searchUsers(prefix)).filter((user) => user.id !== this.context.me.userId);
      if (mine !== this.searchSeq) return;
      replace(
        this.results,
        ...(users.length > 0
          ? users.map((user) => this.result(user))
          : [h("li", { class: "muted" }, `Nobody's username starts with “${prefix}”.`)]),
      );
    } catch (error) {
      if (mine === this.searchSeq) replace(this.results, h("li", { class: "error-text" }, errorText(error)));
    }
  }

  private result(user: User): HTMLElement {
    this.context.users.remember(user);
    const open = async () => {
      try {
        const chat = await this.context.api.openChat(user.id);
        this.searchInput.value = "";
        replace(this.results);
        await this.reload();
        this.context.navigate(`#/chats/${chat.id}`);
      } catch (error) {
        this.context.notice.show(error, `Could not open a chat with ${displayName(user)}`);
      }
    };
    return h(
      "li",
      {},
      h(
        "button",
        { type: "button", class: "result", onclick: () => void open() },
        h("span", { class: "chat-name" }, displayName(user)),
        h("span", { class: "muted" }, ` @${user.username}`),
        h("span", { class: "visually-hidden" }, " — open a chat"),
      ),
    );
  }
}
