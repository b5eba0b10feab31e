-- Replies: a message may answer an earlier message of the same chat.
-- The pair (chat_id, reply_to_seq) points at messages_chat_seq_key, so the database itself refuses a reply to a
-- message of another chat or to one that does not exist; the CHECK refuses a reply to itself or to a later one.
-- A deleted message keeps its row (and its seq), so a reply to it still points somewhere: it is shown as deleted.
ALTER TABLE chat.messages
    ADD COLUMN reply_to_seq bigint,
    ADD CONSTRAINT messages_reply_earlier CHECK (reply_to_seq > 0 AND reply_to_seq < seq),
    ADD CONSTRAINT messages_reply_same_chat FOREIGN KEY (chat_id, reply_to_seq) REFERENCES chat.messages (chat_id, seq);
