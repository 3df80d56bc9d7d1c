-- Domain events waiting for the event relay, written in the transaction of the change. The relay
-- publishes them to `inbox.events` in `seq` order and deletes them once the bus acknowledged; the
-- conversation log stays the durable record. AUTOINCREMENT so that `seq` is never reused, even
-- after the table was emptied.
CREATE TABLE event_outbox (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL,
    payload         TEXT NOT NULL
);
