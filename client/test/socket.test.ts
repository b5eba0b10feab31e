// The WebSocket protocol logic against a fake gateway: each test plays the server's side frame by frame.
import { beforeEach, describe, expect, it } from "vitest";

import { backoffDelay, MessengerSocket, type SocketLike, type Timers } from "../src/socket";
import type { Message } from "../src/types";
import { message } from "./helpers";

class FakeSocket implements SocketLike {
  sent: Record<string, unknown>[] = [];
  closedWith: number | null = null;
  onopen: ((event: Event) => void) | null = null;
  onmessage: ((event: MessageEvent) => void) | null = null;
  onclose: ((event: CloseEvent) => void) | null = null;
  onerror: ((event: Event) => void) | null = null;

  send(data: string): void {
    this.sent.push(JSON.parse(data) as Record<string, unknown>);
  }
  close(code = 1000): void {
    this.closedWith = code;
  }
  // The server's side:
  push(frame: Record<string, unknown>): void {
    this.onmessage?.({ data: JSON.stringify(frame) } as MessageEvent);
  }
  serverCloses(code: number, reason = ""): void {
    this.onclose?.({ code, reason } as CloseEvent);
  }
  ofType(type: string): Record<string, unknown>[] {
    return this.sent.filter((frame) => frame.type === type);
  }
}

/** Timers that run only when the test says so: no real waiting, and the test sees every delay asked for. */
class ManualTimers implements Timers {
  private next = 1;
  pending = new Map<number, { callback: () => void; ms: number }>();
  setTimeout(callback: () => void, ms: number): unknown {
    const id = this.next++;
    this.pending.set(id, { callback, ms });
    return id;
  }
  clearTimeout(handle: unknown): void {
    this.pending.delete(handle as number);
  }
  /** Run the pending timers whose delay is at most `ms` (the reconnect, say, not the 25 s ping). */
  runUpTo(ms: number): number[] {
    const due = [...this.pending].filter(([, timer]) => timer.ms <= ms);
    for (const [id, timer] of due) {
      this.pending.delete(id);
      timer.callback();
    }
    return due.map(([, timer]) => timer.ms);
  }
}

const flush = () => new Promise((resolve) => setTimeout(resolve, 0));

describe("MessengerSocket", () => {
  let sockets: FakeSocket[];
  let timers: ManualTimers;
  let ids: number;
  let client: MessengerSocket;
  let seen: Message[];
  let openedUrls: string[];

  const current = () => sockets[sockets.length - 1]!;

  /** The gateway's side of connecting: accept the auth frame and answer `ready`. */
  async function connect(): Promise<FakeSocket> {
    await flush(); // the token is asked for asynchronously
    const socket = current();
    socket.onopen?.({} as Event);
    expect(socket.sent[0]).toMatchObject({ type: "auth", token: "token-1" });
    socket.push({ type: "ready", ref: "hello", user_id: 1, limits: {} });
    return socket;
  }

  /** Answer the socket's last `sync` with these messages. */
  function answerSync(socket: FakeSocket, messages: Message[], hasMore = false): void {
    const sync = socket.ofType("sync").at(-1)!;
    socket.push({
      type: "messages",
      ref: sync.ref,
      chat_id: sync.chat_id,
      after_seq: sync.after_seq,
      has_more: hasMore,
      messages,
    });
  }

  beforeEach(() => {
    sockets = [];
    timers = new ManualTimers();
    ids = 0;
    seen = [];
    openedUrls = [];
    client = new MessengerSocket({
      url: "ws://gateway/ws",
      token: async () => "token-1",
      open: (url) => {
        openedUrls.push(url);
        const socket = new FakeSocket();
        sockets.push(socket);
        return socket;
      },
      timers,
      random: () => 1,
      newId: () => `cmid-${++ids}`,
      events: { messages: (_chat, messages) => seen.push(...messages) },
    });
  });

  it("authenticates with the first frame and never puts the token in the URL", async () => {
    client.start();
    const socket = await connect();
    expect(socket.sent).toHaveLength(1);
    expect(socket.ofType("auth")).toMatchObject([{ token: "token-1" }]);
    expect(openedUrls).toEqual(["ws://gateway/ws"]);
    expect(client.status).toBe("online");
  });

  it("drops a pushed seq it already holds (at-least-once delivery)", async () => {
    client.start();
    const socket = await connect();
    client.watch(7, [message(1)]);
    socket.push({ type: "message.created", message: message(2) });
    socket.push({ type: "message.created", message: message(2) });
    socket.push({ type: "message.created", message: message(1) });
    expect(
      client.logs
        .get(7)!
        .ordered()
        .map((m) => m.seq),
    ).toEqual([1, 2]);
    expect(seen.map((m) => m.seq)).toEqual([1, 2]); // the UI heard of each seq once
  });

  it("syncs from the highest seq held when a push skips seqs", async () => {
    client.start();
    const socket = await connect();
    client.watch(7, [message(1), message(2)]);
    socket.push({ type: "message.created", message: message(5) });
    expect(socket.ofType("sync")).toMatchObject([{ chat_id: 7, after_seq: 2 }]);
    answerSync(socket, [message(3), message(4), message(5)]);
    await flush();
    expect(
      client.logs
        .get(7)!
        .ordered()
        .map((m) => m.seq),
    ).toEqual([1, 2, 3, 4, 5]);
    expect(seen.filter((m) => m.seq === 5)).toHaveLength(1);
  });

  it("after a reconnect, syncs each open chat from its highest seq and asks again while has_more", async () => {
    client.start();
    let socket = await connect();
    client.watch(7, [message(1), message(2), message(3)]);
    socket.serverCloses(1006);
    expect(client.status).toBe("offline");
    timers.runUpTo(1000); // the first backoff
    socket = await connect();
    expect(socket.ofType("sync")).toMatchObject([{ chat_id: 7, after_seq: 3 }]);
    answerSync(socket, [message(4), message(5)], true);
    await flush();
    expect(socket.ofType("sync").at(-1)).toMatchObject({ after_seq: 5 });
    answerSync(socket, [message(6)]);
    await flush();
    expect(socket.ofType("sync")).toHaveLength(2);
    expect(
      client.logs
        .get(7)!
        .ordered()
        .map((m) => m.seq),
    ).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it("shows a send as pending until its ack, then as the message with the acked seq", async () => {
    client.start();
    const socket = await connect();
    client.watch(7, [message(1)]);
    const pending = client.send(7, "hi");
    expect(client.pendingIn(7)).toEqual([pending]);
    const send = socket.ofType("send")[0]!;
    expect(send).toMatchObject({ chat_id: 7, client_message_id: "cmid-1", body: "hi" });
    expect(send).not.toHaveProperty("reply_to_seq"); // a plain send never names it: every field is required
    socket.push({
      type: "ack",
      ref: send.ref,
      for: "send",
      chat_id: 7,
      client_message_id: "cmid-1",
      seq: 2,
      created_at: "2025-05-01T12:00:01+00:00",
    });
    await flush();
    expect(client.pendingIn(7)).toEqual([]);
    expect(client.logs.get(7)!.get(2)).toMatchObject({ body: "hi", sender_id: 1, client_message_id: "cmid-1" });
    socket.push({
      type: "message.created",
      message: message(2, { body: "hi", sender_id: 1, client_message_id: "cmid-1" }),
    });
    expect(seen.filter((m) => m.seq === 2)).toHaveLength(1); // the push after the ack is a duplicate
  });

  it("resends an unacked message after a reconnect with the same client_message_id", async () => {
    client.start();
    let socket = await connect();
    client.watch(7, [message(1)]);
    client.send(7, "are you there?");
    expect(socket.ofType("send")).toHaveLength(1);
    socket.serverCloses(1006); // the ack was lost with the connection
    expect(client.pendingIn(7)[0]!.state).toBe("waiting");
    timers.runUpTo(1000);
    socket = await connect();
    const syncIndex = socket.sent.findIndex((frame) => frame.type === "sync");
    const sendIndex = socket.sent.findIndex((frame) => frame.type === "send");
    expect(syncIndex).toBeGreaterThan(0);
    expect(sendIndex).toBeGreaterThan(syncIndex); // catch up first, then resend
    expect(socket.ofType("send")).toMatchObject([{ client_message_id: "cmid-1", body: "are you there?" }]);
    const resent = socket.ofType("send")[0]!;
    socket.push({ type: "ack", ref: resent.ref, for: "send", chat_id: 7, client_message_id: "cmid-1", seq: 2 });
    await flush();
    expect(client.pendingIn(7)).toEqual([]);
  });

  it("stops showing a message as pending once the sync shows it was stored before the connection broke", async () => {
    client.start();
    let socket = await connect();
    client.watch(7, [message(1)]);
    client.send(7, "stored, ack lost");
    socket.serverCloses(1006);
    timers.runUpTo(1000);
    socket = await connect();
    answerSync(socket, [message(2, { sender_id: 1, client_message_id: "cmid-1", body: "stored, ack lost" })]);
    await flush();
    expect(client.pendingIn(7)).toEqual([]);
    // The resend already on the wire is harmless: the gateway acks the same seq and stores nothing new.
    const resent = socket.ofType("send")[0]!;
    socket.push({ type: "ack", ref: resent.ref, for: "send", chat_id: 7, client_message_id: "cmid-1", seq: 2 });
    await flush();
    expect(
      client.logs
        .get(7)!
        .ordered()
        .map((m) => m.seq),
    ).toEqual([1, 2]);
  });

  it("sends a reply as a `reply` frame naming the seq it answers, and quotes it once acked", async () => {
    client.start();
    const socket = await connect();
    client.watch(7, [message(1, { body: "which protocol?" })]);
    client.send(7, "TCP", 1);
    const reply = socket.ofType("reply")[0]!;
    expect(reply).toMatchObject({ chat_id: 7, client_message_id: "cmid-1", body: "TCP", reply_to_seq: 1 });
    socket.push({ type: "ack", ref: reply.ref, for: "reply", chat_id: 7, client_message_id: "cmid-1", seq: 2 });
    await flush();
    expect(client.logs.get(7)!.get(2)?.reply_to).toEqual({
      seq: 1,
      sender_id: 2,
      body: "which protocol?",
      deleted: false,
    });
  });

  it("keeps a message refused for good as failed, with the gateway's words", async () => {
    client.start();
    const socket = await connect();
    client.watch(7);
    client.send(7, "x".repeat(5000));
    const send = socket.ofType("send")[0]!;
    socket.push({
      type: "error",
      ref: send.ref,
      code: "invalid",
      message: "a message is at most 4000 characters",
      client_message_id: "cmid-1",
    });
    await flush();
    expect(client.pendingIn(7)[0]).toMatchObject({ state: "failed", error: "a message is at most 4000 characters" });
  });

  it("retries a rate-limited send after retry_after, with the same id", async () => {
    client.start();
    const socket = await connect();
    client.watch(7);
    client.send(7, "too fast");
    const first = socket.ofType("send")[0]!;
    socket.push({
      type: "error",
      ref: first.ref,
      code: "rate_limited",
      message: "slow down",
      retry_after: 3,
      client_message_id: "cmid-1",
    });
    await flush();
    expect(timers.runUpTo(3000)).toContain(3000);
    expect(socket.ofType("send")).toHaveLength(2);
    expect(socket.ofType("send")[1]).toMatchObject({ client_message_id: "cmid-1" });
  });

  it("reconnects after a gateway node goes away (1001), with the same token, and syncs", async () => {
    // A node that is shutting down closes every socket with 1001; the next connection, through the load
    // balancer, reaches another node.
    client.start();
    let socket = await connect();
    client.watch(7, [message(1), message(2)]);
    socket.serverCloses(1001, "the gateway is shutting down; reconnect");
    expect(client.status).toBe("offline");
    expect(timers.runUpTo(60_000)).toEqual([500]); // the first backoff, not the longer one of a policy close
    socket = await connect(); // connect() checks that the auth frame carries token-1 again
    expect(sockets).toHaveLength(2);
    expect(client.status).toBe("online");
    expect(socket.ofType("sync")).toMatchObject([{ chat_id: 7, after_seq: 2 }]);
  });

  it("backs off exponentially between failed attempts, and refreshes the token after a 4401", async () => {
    let fresh: boolean[] = [];
    client = new MessengerSocket({
      url: "ws://gateway/ws",
      token: async (wantFresh) => {
        fresh.push(wantFresh);
        return "token-1";
      },
      open: () => {
        const socket = new FakeSocket();
        sockets.push(socket);
        return socket;
      },
      timers,
      random: () => 1,
    });
    client.start();
    await connect();
    current().serverCloses(4401, "token expired");
    expect(timers.runUpTo(60_000)).toEqual([500]);
    await flush();
    current().serverCloses(1006);
    expect(timers.runUpTo(60_000)).toEqual([1000]);
    await flush();
    current().serverCloses(1006);
    expect(timers.runUpTo(60_000)).toEqual([2000]);
    await flush();
    expect(fresh).toEqual([false, true, false, false]);
    fresh = [];
  });

  it("caps the backoff and spreads it with jitter", () => {
    expect(backoffDelay(0, () => 1)).toBe(500);
    expect(backoffDelay(3, () => 1)).toBe(4000);
    expect(backoffDelay(20, () => 1)).toBe(30_000);
    expect(backoffDelay(20, () => 0)).toBe(15_000);
  });
});
