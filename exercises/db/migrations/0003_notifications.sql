-- The notify service keeps what each offline user missed, written by the notifier as it consumes message.created
-- (stage 10). User and chat ids belong to the auth and chat services: stored as plain values, never a foreign key.
CREATE SCHEMA notify;

CREATE TABLE notify.notifications (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    bigint      NOT NULL,  -- who is told
    event_id   uuid        NOT NULL,  -- the event that caused it: chat.outbox.event_id
    chat_id    bigint      NOT NULL,
    seq        bigint      NOT NULL,
    preview    text        NOT NULL,  -- the start of the message, for the notification's one line
    created_at timestamptz NOT NULL DEFAULT now(),
    read_at    timestamptz,
    -- RabbitMQ delivers at least once: a redelivered event must find its notification already there.
    CONSTRAINT notifications_user_event_key UNIQUE (user_id, event_id),
    CONSTRAINT notifications_seq_positive CHECK (seq > 0),
    CONSTRAINT notifications_preview_length CHECK (char_length(preview) <= 100)
);
-- A user's notifications, newest first, read a page at a time.
CREATE INDEX notifications_user_newest_idx ON notify.notifications (user_id, created_at DESC, id DESC);
