-- Where each conversation's log has been read to by the metrics (docs/metrics.md): the change
-- that appends log rows reads only those, in its own transaction.
CREATE TABLE metric_states (
    conversation_id TEXT PRIMARY KEY REFERENCES conversations (id),
    -- metrics::MetricsState as JSON.
    state           TEXT NOT NULL,
    -- The last log row read (its time and id): a row sorting before it re-reads the whole log.
    last_at         BIGINT NOT NULL,
    last_id         TEXT NOT NULL,
    -- The seq the conversation's next sample gets.
    next_seq        BIGINT NOT NULL
);

-- Business-hours schedules, each from the time it takes effect; rows are never changed, so
-- figures of earlier times keep the schedule of their time.
CREATE TABLE business_hours (
    id           TEXT PRIMARY KEY,
    -- NULL: the default for every channel without its own.
    channel_id   TEXT REFERENCES channels (id),
    effective_at BIGINT NOT NULL,
    -- business_hours::ScheduleConfig as JSON; NULL: none (the default: calendar time; a channel:
    -- the default again).
    schedule     TEXT,
    created_by   TEXT,
    created_at   BIGINT NOT NULL
);
CREATE INDEX business_hours_by_channel ON business_hours (channel_id, effective_at);

-- Reports count the conversations opened per day.
CREATE INDEX conversations_created ON conversations (created_at);
