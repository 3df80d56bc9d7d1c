-- A message the channel sends in pieces (a Telegram album: one update per photo) is stored once:
-- its parts share this key, and a later part adds to the message that has it.
ALTER TABLE messages ADD COLUMN part_of TEXT;
CREATE INDEX messages_part_of ON messages (channel_id, part_of) WHERE part_of IS NOT NULL;
