-- Wake the outbox relay the moment events are committed, instead of letting them wait for its next poll.
-- NOTIFY is transactional: the relay hears it only when the transaction that wrote the rows commits, and
-- several NOTIFYs with the same payload in one transaction arrive as one. The relay still polls now and then,
-- so a notification lost while it was reconnecting costs a poll interval, never an event.
CREATE FUNCTION chat.notify_outbox() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('chat_outbox', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER outbox_notify
    AFTER INSERT ON chat.outbox
    FOR EACH STATEMENT
    EXECUTE FUNCTION chat.notify_outbox();
