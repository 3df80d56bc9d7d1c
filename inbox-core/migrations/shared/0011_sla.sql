-- SLA policies (docs/metrics.md, "SLA targets"): time limits per channel and/or label.
CREATE TABLE sla_policies (
    id             TEXT PRIMARY KEY,
    name           TEXT NOT NULL,
    channel_id     TEXT REFERENCES channels (id),
    label          TEXT,
    first_reply_s  BIGINT,
    next_reply_s   BIGINT,
    resolution_s   BIGINT,
    -- 1: counted in business hours; 0: calendar time.
    business_hours BIGINT NOT NULL,
    created_at     BIGINT NOT NULL
);

-- A conversation's next deadline and which target it is, kept by the change that moves it;
-- the due time of the last breach recorded, so a breach is recorded once.
ALTER TABLE conversations ADD COLUMN sla_due_at BIGINT;
ALTER TABLE conversations ADD COLUMN sla_target TEXT;
ALTER TABLE conversations ADD COLUMN sla_breached_due BIGINT;
CREATE INDEX conversations_sla_due ON conversations (sla_due_at, id) WHERE sla_due_at IS NOT NULL;

-- Whether a sample met its policy's target (1/0; NULL: no target).
ALTER TABLE metric_samples ADD COLUMN sla_met BIGINT;
