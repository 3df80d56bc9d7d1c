-- Wakes the event relays of every process (LISTEN inbox_events) when events are queued: the
-- notification is sent at commit, and only if the transaction commits. In the database, so every
-- writer of the outbox wakes them without a statement of its own.
CREATE FUNCTION event_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('inbox_events', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER event_outbox_notify AFTER INSERT ON event_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION event_outbox_notify();
