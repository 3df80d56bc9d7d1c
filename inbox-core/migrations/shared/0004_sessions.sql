-- Web sign-in: one row per browser session; the cookie holds a random token, the table its SHA-256.
CREATE TABLE sessions (
    token_hash  TEXT PRIMARY KEY,
    agent_id    TEXT NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    -- Sent back with every state-changing request (header or form field).
    csrf_token  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX sessions_agent ON sessions (agent_id);

-- A disabled agent can neither sign in nor use API tokens; their history stays.
ALTER TABLE agents ADD COLUMN disabled_at BIGINT;

-- Health of each channel instance as its connector last reported it (shown on the channels page).
CREATE TABLE channel_health (
    channel_id      TEXT PRIMARY KEY REFERENCES channels (id),
    last_success_at BIGINT,
    last_error      TEXT,
    last_error_at   BIGINT,
    delivered       BIGINT NOT NULL DEFAULT 0,
    failed          BIGINT NOT NULL DEFAULT 0,
    updated_at      BIGINT NOT NULL
);
