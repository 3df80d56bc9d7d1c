-- Channels an operator manages: the funnel's rules stored per channel (fixed at creation from its
-- kind), soft deletion (history stays), and dead letters that can be replayed or discarded.
ALTER TABLE channels ADD COLUMN rules TEXT NOT NULL
    DEFAULT '{"reply_token":false,"subject":false,"latest_conversation":true,"identity":"channel"}';
ALTER TABLE channels ADD COLUMN deleted_at BIGINT;
ALTER TABLE channels ADD COLUMN updated_at BIGINT;
UPDATE channels SET rules = '{"reply_token":true,"subject":true,"latest_conversation":false,"identity":"email"}'
    WHERE kind = 'email';
UPDATE channels SET rules = '{"reply_token":false,"subject":false,"latest_conversation":true,"identity":"network"}'
    WHERE kind IN ('telegram', 'mastodon');

-- stored | duplicate | discarded, with the message it became.
ALTER TABLE dead_letters ADD COLUMN resolution TEXT;
ALTER TABLE dead_letters ADD COLUMN resolved_at BIGINT;
ALTER TABLE dead_letters ADD COLUMN message_id TEXT;
ALTER TABLE dead_letters ADD COLUMN replays INTEGER NOT NULL DEFAULT 0;
CREATE INDEX dead_letters_channel ON dead_letters (channel_id, created_at);
CREATE INDEX dead_letters_open ON dead_letters (created_at) WHERE resolution IS NULL;
