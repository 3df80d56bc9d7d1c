-- Domain events waiting for the event relay, written in the transaction of the change. The relay
-- publishes them to `inbox.events` in `seq` order and deletes them once the bus acknowledged; the
-- conversation log stays the durable record. A sequence is never reused, so `seq` keeps
-- increasing across restarts.
CREATE TABLE event_outbox (
    seq             BIGSERIAL PRIMARY KEY,
    conversation_id TEXT NOT NULL,
    payload         TEXT NOT NULL
);
