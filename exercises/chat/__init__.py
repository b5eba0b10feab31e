"""The chat service: private chats of two users, their messages, read marks, and the outbox of events."""
