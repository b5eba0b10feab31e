-- The chat service owns private chats, their messages, read state and the outbox.
-- User ids belong to the auth service: they are stored, never referenced by a foreign key.
CREATE SCHEMA chat;

CREATE TABLE chat.private_chats (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_low   bigint      NOT NULL,
    user_high  bigint      NOT NULL,
    last_seq   bigint      NOT NULL DEFAULT 0,  -- the chat's message counter, bumped in the send transaction
    created_at timestamptz NOT NULL DEFAULT now(),
    -- Storing the pair in order makes (a, b) and (b, a) the same chat, and refuses a chat with oneself.
    CONSTRAINT private_chats_ordered_pair CHECK (user_low < user_high),
    CONSTRAINT private_chats_pair_key UNIQUE (user_low, user_high),
    CONSTRAINT private_chats_last_seq_not_negative CHECK (last_seq >= 0)
);
CREATE INDEX private_chats_user_high_idx ON chat.private_chats (user_high);

CREATE TABLE chat.messages (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    chat_id           bigint      NOT NULL REFERENCES chat.private_chats (id),
    seq               bigint      NOT NULL,
    sender_id         bigint      NOT NULL,
    client_message_id uuid        NOT NULL,
    body              text        NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    edited_at         timestamptz,
    deleted_at        timestamptz,
    CONSTRAINT messages_seq_positive CHECK (seq > 0),
    -- A deleted message keeps its place (seq) but not its text.
    CONSTRAINT messages_body_length CHECK (
        (deleted_at IS NULL AND char_length(body) BETWEEN 1 AND 4000) OR (deleted_at IS NOT NULL AND body = '')
    ),
    CONSTRAINT messages_chat_seq_key UNIQUE (chat_id, seq),
    CONSTRAINT messages_client_message_key UNIQUE (chat_id, sender_id, client_message_id)
);

CREATE TABLE chat.read_state (
    chat_id       bigint NOT NULL REFERENCES chat.private_chats (id),
    user_id       bigint NOT NULL,
    last_read_seq bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (chat_id, user_id),
    CONSTRAINT read_state_seq_not_negative CHECK (last_read_seq >= 0)
);

-- Events wait here, written in the same transaction as the change they describe, until the relay publishes them.
CREATE TABLE chat.outbox (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id     uuid        NOT NULL UNIQUE,
    topic        text        NOT NULL,  -- the routing key: message.created, message.edited, ...
    payload      jsonb       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX outbox_unpublished_idx ON chat.outbox (id) WHERE published_at IS NULL;
