-- Response-time samples (docs/metrics.md), one row each, computed from the conversation log:
-- what reports read, so a report never scans the log. `inbox reports rebuild` recomputes them.
CREATE TABLE metric_samples (
    conversation_id TEXT NOT NULL REFERENCES conversations (id),
    -- The sample's place among its conversation's samples (0, 1, …), in the order measured.
    seq             BIGINT NOT NULL,
    -- A versioned metric id: frt.v1, nrt.v1, resolution.v1, …
    metric          TEXT NOT NULL,
    cycle           BIGINT NOT NULL,
    channel_id      TEXT NOT NULL,
    agent_id        TEXT,
    started_at      BIGINT NOT NULL,
    ended_at        BIGINT NOT NULL,
    calendar_s      BIGINT NOT NULL,
    business_s      BIGINT NOT NULL,
    PRIMARY KEY (conversation_id, seq)
);
CREATE INDEX metric_samples_by_time ON metric_samples (metric, ended_at);
