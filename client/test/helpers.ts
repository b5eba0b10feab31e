import type { Message } from "../src/types";

/** A message of chat 7 from user 2, with whatever fields a test sets. */
export function message(seq: number, fields: Partial<Message> = {}): Message {
  return {
    chat_id: 7,
    seq,
    sender_id: 2,
    client_message_id: `00000000-0000-4000-8000-${String(seq).padStart(12, "0")}`,
    body: `message ${seq}`,
    created_at: "2025-05-01T12:00:00+00:00",
    edited_at: null,
    deleted_at: null,
    ...fields,
  };
}
