-- Times are Unix epoch milliseconds (UTC); ids are UUIDv7 text minted by the application.

CREATE TABLE channels (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    name        TEXT NOT NULL,
    -- Kind-specific settings as JSON (e.g. the webhook's outbound URL).
    config      TEXT NOT NULL DEFAULT '{}',
    -- Shared secret used to sign webhooks in both directions.
    secret      TEXT NOT NULL,
    enabled     BOOLEAN NOT NULL DEFAULT TRUE,
    created_at  BIGINT NOT NULL
);

CREATE TABLE agents (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'agent')),
    password_hash TEXT,
    created_at    BIGINT NOT NULL
);

CREATE TABLE api_tokens (
    id           TEXT PRIMARY KEY,
    agent_id     TEXT NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    -- SHA-256 of the token: tokens are random 256-bit values, so a fast hash is enough.
    token_hash   TEXT NOT NULL UNIQUE,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at   BIGINT
);

CREATE TABLE contacts (
    id          TEXT PRIMARY KEY,
    name        TEXT,
    email       TEXT,
    phone       TEXT,
    created_at  BIGINT NOT NULL
);

-- (namespace, handle) -> contact. The namespace is the channel kind, or `webhook:<channel id>` for
-- webhook channels whose user ids are only unique per integration, or `email` for verified addresses.
CREATE TABLE contact_identities (
    namespace   TEXT NOT NULL,
    handle      TEXT NOT NULL,
    contact_id  TEXT NOT NULL REFERENCES contacts (id),
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (namespace, handle)
);
CREATE INDEX contact_identities_contact ON contact_identities (contact_id);

CREATE TABLE conversations (
    id              TEXT PRIMARY KEY,
    channel_id      TEXT NOT NULL REFERENCES channels (id),
    contact_id      TEXT NOT NULL REFERENCES contacts (id),
    -- The customer's handle on the channel: where replies go.
    contact_handle  TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('open', 'pending', 'snoozed', 'resolved')),
    assignee_id     TEXT REFERENCES agents (id),
    subject         TEXT,
    labels          TEXT NOT NULL DEFAULT '[]',
    preview         TEXT NOT NULL DEFAULT '',
    message_count   BIGINT NOT NULL DEFAULT 0,
    unread_count    BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    last_message_at BIGINT NOT NULL,
    -- Since when the customer waits for a human answer; NULL when not waiting.
    waiting_since   BIGINT,
    snoozed_until   BIGINT,
    resolved_at     BIGINT
);
CREATE INDEX conversations_list ON conversations (last_message_at DESC, id DESC);
CREATE INDEX conversations_status ON conversations (status, last_message_at DESC, id DESC);
CREATE INDEX conversations_assignee ON conversations (assignee_id, last_message_at DESC, id DESC);
CREATE INDEX conversations_contact ON conversations (contact_id, channel_id, created_at);

CREATE TABLE messages (
    -- Arrival order; the tie-breaker of the history order (sent_at, ingest_seq).
    ingest_seq        INTEGER PRIMARY KEY,
    id                TEXT NOT NULL UNIQUE,
    conversation_id   TEXT NOT NULL REFERENCES conversations (id),
    channel_id        TEXT NOT NULL REFERENCES channels (id),
    -- The channel's own id; NULL for notes and for replies not yet delivered.
    external_id       TEXT,
    direction         TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound', 'note')),
    contact_id        TEXT REFERENCES contacts (id),
    agent_id          TEXT REFERENCES agents (id),
    sender_handle     TEXT,
    sender_name       TEXT,
    text              TEXT NOT NULL,
    html              TEXT,
    subject           TEXT,
    in_reply_to       TEXT,
    attachments       TEXT NOT NULL DEFAULT '[]',
    raw_ref           TEXT,
    thread_reason     TEXT NOT NULL,
    sent_at           BIGINT NOT NULL,
    received_at       BIGINT NOT NULL,
    delivery_status   TEXT CHECK (delivery_status IN ('queued', 'sent', 'failed')),
    delivery_error    TEXT,
    delivery_attempts BIGINT NOT NULL DEFAULT 0,
    delivered_at      BIGINT,
    -- An agent reply gets the provider's id once delivered; it must not block a customer message
    -- that happens to use the same id, so uniqueness is per direction.
    UNIQUE (channel_id, external_id, direction)
);
CREATE INDEX messages_history ON messages (conversation_id, sent_at, ingest_seq);

-- Every state change of a conversation, with actor and time; reports are derived from it.
CREATE TABLE conversation_events (
    id              TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL REFERENCES conversations (id),
    kind            TEXT NOT NULL,
    actor_kind      TEXT NOT NULL CHECK (actor_kind IN ('contact', 'agent', 'system')),
    actor_id        TEXT,
    message_id      TEXT,
    data            TEXT NOT NULL DEFAULT '{}',
    at              BIGINT NOT NULL
);
CREATE INDEX conversation_events_conversation ON conversation_events (conversation_id, at);

-- Replies waiting to be handed to the bus; written in the same transaction as the message.
CREATE TABLE outbox (
    message_id      TEXT PRIMARY KEY REFERENCES messages (id),
    conversation_id TEXT NOT NULL,
    payload         TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    published_at    BIGINT
);
CREATE INDEX outbox_pending ON outbox (created_at) WHERE published_at IS NULL;

CREATE TABLE connector_cursors (
    channel_id  TEXT NOT NULL,
    name        TEXT NOT NULL,
    value       TEXT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (channel_id, name)
);

CREATE TABLE dead_letters (
    id          TEXT PRIMARY KEY,
    source      TEXT NOT NULL,
    channel_id  TEXT,
    payload     TEXT NOT NULL,
    error       TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    replayed_at BIGINT
);
CREATE INDEX dead_letters_created ON dead_letters (created_at);
