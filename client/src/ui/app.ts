// The signed-in app: the top bar, the routes (#/chats, #/chats/{id}, #/feed) and the wiring between the socket's
// events and the views. The URL holds the route, so a page refresh comes back to the same chat.

import type { Api } from "../api";
import type { SavedSession } from "../session";
import { MessengerSocket, type Status } from "../socket";
import { ChatList } from "./chatList";
import { ChatView } from "./chatView";
import type { Context } from "./context";
import { h } from "./dom";
import { FeedView } from "./feed";
import { Notice } from "./notice";
import { Users } from "./users";

const STATUS_TEXT: Record<Status, string> = { online: "Online", connecting: "Connecting…", offline: "Offline" };

export class MessengerApp {
  readonly element: HTMLElement;
  private readonly context: Context;
  private readonly socket: MessengerSocket;
  private readonly chatList: ChatList;
  private readonly main = h("main", { class: "main", id: "main" });
  private readonly statusPill = h("span", { class: "status", role: "status", "data-status": "offline" }, "Offline");
  private readonly navChats = h("a", { href: "#/chats" }, "Chats");
  private readonly navFeed = h("a", { href: "#/feed" }, "Feed");
  private chatView: ChatView | null = null;
  private feed: FeedView | null = null;
  private readonly listeners: [EventTarget, string, EventListener][] = [];

  constructor(api: Api, session: SavedSession) {
    const notice = new Notice();
    const wsUrl = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
    this.socket = new MessengerSocket({
      url: wsUrl,
      token: (fresh) => api.accessToken(fresh),
      open: (url) => new WebSocket(url),
      events: {
        status: (status, detail) => this.showStatus(status, detail),
        ready: () => {
          void this.chatList.reload(); // pushes missed while away are not replayed: read the list again
          this.chatView?.markRead(); // a read mark lost with the old connection
        },
        messages: (chatId, changed) => this.viewOf(chatId)?.messagesChanged(changed),
        outbox: (chatId) => this.viewOf(chatId)?.messagesChanged(),
        activity: (message, kind) => this.chatList.activity(message, kind),
        read: (chatId, userId, lastReadSeq) => {
          if (userId !== session.userId) {
            const known = this.context.theirReadSeq.get(chatId) ?? 0;
            this.context.theirReadSeq.set(chatId, Math.max(known, lastReadSeq));
            this.viewOf(chatId)?.read(userId);
          }
          this.chatList.read(chatId, userId, lastReadSeq);
        },
        typing: (chatId, userId) => this.viewOf(chatId)?.typing(userId),
        presence: (userId, online, lastSeen) => {
          this.context.presence.set(userId, { online, lastSeen });
          this.chatList.render();
          this.chatView?.presenceChanged(userId);
        },
        signedOut: () => void api.logOut(),
      },
    });
    this.context = {
      api,
      socket: this.socket,
      users: new Users(api),
      notice,
      me: session,
      presence: new Map(),
      theirReadSeq: new Map(),
      navigate: (hash) => {
        if (location.hash === hash) this.route();
        else location.hash = hash;
      },
    };
    this.chatList = new ChatList(this.context);
    const logOut = h("button", { type: "button", class: "link", onclick: () => void api.logOut() }, "Log out");
    this.element = h(
      "div",
      { class: "app" },
      h("a", { class: "skip", href: "#main" }, "Skip to content"),
      h(
        "header",
        { class: "topbar" },
        h("span", { class: "brand" }, "Messenger"),
        h("nav", { "aria-label": "Sections" }, this.navChats, this.navFeed),
        this.statusPill,
        h("span", { class: "me", "data-user-id": session.userId }, session.username),
        logOut,
      ),
      notice.element,
      this.main,
    );
  }

  start(): void {
    this.listen(window, "hashchange", () => this.route());
    // The browser knows before the socket does that the network is gone, or back: act on it at once.
    this.listen(window, "offline", () => this.socket.goOffline());
    this.listen(window, "online", () => this.socket.reconnectNow());
    this.listen(document, "visibilitychange", () => this.chatView?.markRead());
    this.socket.start();
    void this.chatList.reload();
    this.route();
  }

  stop(): void {
    this.socket.stop();
    for (const [target, type, listener] of this.listeners) target.removeEventListener(type, listener);
    this.chatView?.close();
    this.feed?.close();
  }

  /** A new access token: open a socket with it now, rather than wait for the gateway to close the old one at exp. */
  tokenRefreshed(): void {
    console.info("connection: new access token, reconnecting with it");
    this.socket.reconnectNow();
  }

  private listen(target: EventTarget, type: string, listener: EventListener): void {
    target.addEventListener(type, listener);
    this.listeners.push([target, type, listener]);
  }

  private viewOf(chatId: number): ChatView | null {
    return this.chatView?.chatId === chatId ? this.chatView : null;
  }

  private showStatus(status: Status, detail?: string): void {
    console.info(`connection: ${status}${detail ? ` (${detail})` : ""}`); // for whoever opens the console
    this.statusPill.dataset.status = status;
    this.statusPill.textContent = STATUS_TEXT[status];
    this.statusPill.title = detail ?? "";
  }

  private route(): void {
    const chatMatch = /^#\/chats\/(\d+)$/.exec(location.hash);
    const onFeed = location.hash === "#/feed";
    this.navChats.setAttribute("aria-current", onFeed ? "false" : "page");
    this.navFeed.setAttribute("aria-current", onFeed ? "page" : "false");
    if (onFeed) {
      this.showFeed();
      return;
    }
    this.feed?.close();
    this.feed = null;
    const chatId = chatMatch ? Number(chatMatch[1]) : null;
    if (this.chatView?.chatId !== chatId) {
      this.chatView?.close();
      this.chatView = chatId !== null ? new ChatView(this.context, chatId) : null;
      void this.chatView?.open();
    }
    this.chatList.setActive(chatId);
    const pane =
      this.chatView?.element ??
      h(
        "section",
        { class: "chat-view placeholder" },
        h("p", { class: "muted" }, "Choose a chat, or find someone to talk to."),
      );
    // On a phone only one of the two fits: the list, or the open chat (CSS reads the class).
    this.main.className = `main chats${chatId !== null ? " has-chat" : ""}`;
    this.main.replaceChildren(this.chatList.element, pane);
  }

  private showFeed(): void {
    this.chatView?.close();
    this.chatView = null;
    this.chatList.setActive(null);
    this.feed ??= new FeedView(this.context);
    this.main.className = "main feed-route";
    this.main.replaceChildren(this.feed.element);
    void this.feed.load(true);
  }
}
