-- Customer satisfaction surveys (docs/metrics.md, "CSAT"): off unless a channel turns them on.
CREATE TABLE csat_settings (
    channel_id   TEXT PRIMARY KEY REFERENCES channels (id),
    enabled      BIGINT NOT NULL,
    -- How long a survey link can be answered.
    expiry_hours BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);

-- One survey per resolution of a conversation on such a channel. Only the token's SHA-256 is
-- kept: the link is the customer's, the database never holds it.
CREATE TABLE csat_surveys (
    id              TEXT PRIMARY KEY,
    token_hash      TEXT NOT NULL UNIQUE,
    conversation_id TEXT NOT NULL REFERENCES conversations (id),
    channel_id      TEXT NOT NULL,
    -- The agent the resolution is credited to (who resolved it).
    agent_id        TEXT,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    rating          BIGINT,
    comment         TEXT,
    answered_at     BIGINT
);
CREATE INDEX csat_surveys_conversation ON csat_surveys (conversation_id);
CREATE INDEX csat_surveys_answered ON csat_surveys (answered_at) WHERE answered_at IS NOT NULL;
