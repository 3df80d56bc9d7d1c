-- Email threading rule 3: the normalized subject of the conversation's first message.
ALTER TABLE conversations ADD COLUMN subject_key TEXT;
CREATE INDEX conversations_subject ON conversations (contact_id, channel_id, subject_key, created_at);
