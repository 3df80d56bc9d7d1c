-- A customer's message edited on its channel (Telegram, Mastodon) is updated in place: when it
-- was last edited, and every earlier version (JSON array, oldest first) so nothing is lost.
ALTER TABLE messages ADD COLUMN edited_at BIGINT;
ALTER TABLE messages ADD COLUMN revisions TEXT NOT NULL DEFAULT '[]';
