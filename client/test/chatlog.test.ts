import { describe, expect, it } from "vitest";

import { ChatLog } from "../src/chatlog";
import { message } from "./helpers";

describe("ChatLog", () => {
  it("keeps each seq once: a second push of the same seq is a duplicate", () => {
    const log = new ChatLog(7);
    expect(log.apply(message(1))).toBe("added");
    expect(log.apply(message(1))).toBe("duplicate");
    expect(log.apply(message(1, { body: "a different body, same state" }))).toBe("duplicate");
    expect(log.ordered().map((m) => m.body)).toEqual(["message 1"]);
  });

  it("orders by seq whatever the order of arrival", () => {
    const log = new ChatLog(7);
    for (const seq of [3, 1, 2]) log.apply(message(seq));
    expect(log.ordered().map((m) => m.seq)).toEqual([1, 2, 3]);
  });

  it("takes an edit or a deletion of a held message, but never goes back to an older state", () => {
    const log = new ChatLog(7);
    log.apply(message(1));
    expect(log.apply(message(1, { body: "edited", edited_at: "2025-05-01T12:01:00+00:00" }))).toBe("updated");
    expect(log.apply(message(1))).toBe("duplicate"); // a late sync answer with the old text
    expect(log.apply(message(1, { body: "", deleted_at: "2025-05-01T12:02:00+00:00" }))).toBe("updated");
    expect(log.apply(message(1, { body: "edited again", edited_at: "2025-05-01T12:03:00+00:00" }))).toBe("duplicate");
    expect(log.get(1)?.deleted_at).not.toBeNull();
  });

  it("syncs from the end of the run without holes, starting at the lowest seq held", () => {
    const log = new ChatLog(7);
    expect(log.syncFrom()).toBe(0); // nothing held: everything
    for (const seq of [41, 42, 43]) log.apply(message(seq)); // the newest history page
    expect(log.syncFrom()).toBe(43);
    expect(log.leavesGap(44)).toBe(false);
    log.apply(message(46)); // a push that skipped 44 and 45
    expect(log.leavesGap(47)).toBe(true);
    expect(log.syncFrom()).toBe(43);
    log.apply(message(44));
    log.apply(message(45));
    expect(log.syncFrom()).toBe(46);
  });

  it("refuses a message of another chat (a bug, not a duplicate)", () => {
    expect(() => new ChatLog(7).apply(message(1, { chat_id: 8 }))).toThrow();
  });
});
