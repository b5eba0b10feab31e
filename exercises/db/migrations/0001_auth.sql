-- The auth service owns users and their sessions (refresh tokens, used from stage 09 on).
CREATE SCHEMA auth;

CREATE TABLE auth.users (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username      text        NOT NULL,
    email         text        NOT NULL,
    display_name  text        NOT NULL DEFAULT '',
    password_hash text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_username_format CHECK (username ~ '^[a-z0-9_]{3,32}$'),
    CONSTRAINT users_email_format CHECK (email ~ '^[^@\s]+@[^@\s]+$' AND char_length(email) <= 254),
    CONSTRAINT users_display_name_length CHECK (char_length(display_name) <= 64)
);
-- Usernames are lower case by the check above; e-mail addresses are unique whatever their case.
CREATE UNIQUE INDEX users_username_key ON auth.users (username);
CREATE UNIQUE INDEX users_email_key ON auth.users (lower(email));

CREATE TABLE auth.sessions (
    id          uuid        PRIMARY KEY,
    user_id     bigint      NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
    family_id   uuid        NOT NULL,  -- every rotation of one login shares a family
    token_hash  bytea       NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    rotated_at  timestamptz,
    revoked_at  timestamptz,
    CONSTRAINT sessions_expire_after_creation CHECK (expires_at > created_at)
);
CREATE INDEX sessions_user_idx ON auth.sessions (user_id);
CREATE INDEX sessions_family_idx ON auth.sessions (family_id);
