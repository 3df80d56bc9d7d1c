-- What the agents' web inbox needs from the store: full-text search, label and unread filters,
-- cheap tab counts, contact merge / unmerge and canned replies.

-- Full-text search over every message's text (customer messages, replies and notes). An
-- external-content FTS5 index: the text lives once, in `messages`; the index is keyed by
-- `ingest_seq` (the rowid) and kept in sync by the triggers below. Diacritics are kept, as
-- PostgreSQL's `simple` configuration does, so both backends find the same messages.
CREATE VIRTUAL TABLE messages_fts USING fts5 (
    text,
    content = 'messages',
    content_rowid = 'ingest_seq',
    tokenize = 'unicode61 remove_diacritics 0'
);
CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts (rowid, text) VALUES (new.ingest_seq, new.text);
END;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, text) VALUES ('delete', old.ingest_seq, old.text);
END;
CREATE TRIGGER messages_fts_update AFTER UPDATE OF text ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, text) VALUES ('delete', old.ingest_seq, old.text);
    INSERT INTO messages_fts (rowid, text) VALUES (new.ingest_seq, new.text);
END;
-- Messages stored before this migration.
INSERT INTO messages_fts (messages_fts) VALUES ('rebuild');

-- One row per (label, conversation), with the conversation's status, derived from
-- `conversations.labels` (a JSON array) by triggers: the label filter is an index lookup instead
-- of parsing every conversation's JSON, also combined with a status tab.
CREATE TABLE conversation_labels (
    label           TEXT NOT NULL,
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    status          TEXT NOT NULL,
    PRIMARY KEY (label, conversation_id)
);
CREATE INDEX conversation_labels_status ON conversation_labels (label, status, conversation_id);
CREATE INDEX conversation_labels_conversation ON conversation_labels (conversation_id);
CREATE TRIGGER conversations_labels_insert AFTER INSERT ON conversations BEGIN
    INSERT OR IGNORE INTO conversation_labels (label, conversation_id, status)
        SELECT value, new.id, new.status FROM json_each(new.labels) WHERE type = 'text';
END;
CREATE TRIGGER conversations_labels_update AFTER UPDATE OF labels ON conversations
WHEN old.labels IS NOT new.labels BEGIN
    DELETE FROM conversation_labels WHERE conversation_id = new.id;
    INSERT OR IGNORE INTO conversation_labels (label, conversation_id, status)
        SELECT value, new.id, new.status FROM json_each(new.labels) WHERE type = 'text';
END;
CREATE TRIGGER conversations_labels_status AFTER UPDATE OF status ON conversations
WHEN old.status IS NOT new.status BEGIN
    UPDATE conversation_labels SET status = new.status WHERE conversation_id = new.id;
END;
INSERT OR IGNORE INTO conversation_labels (label, conversation_id, status)
    SELECT j.value, c.id, c.status FROM conversations c, json_each(c.labels) j
    WHERE j.type = 'text';

-- A status tab of one agent (or of nobody's), newest first; the tab counts (open conversations:
-- mine / unassigned / all; conversations per status) are ranges of it.
CREATE INDEX conversations_status_assignee
    ON conversations (status, assignee_id, last_message_at DESC, id DESC);
-- The unread filter walks only conversations with unread messages, newest first.
CREATE INDEX conversations_unread ON conversations (last_message_at DESC, id DESC)
    WHERE unread_count > 0;
-- ... and the unread count of the tabs counts on this one.
CREATE INDEX conversations_unread_status ON conversations (status, assignee_id)
    WHERE unread_count > 0;

-- Contact merge / unmerge. A merged (absorbed) contact stays as a row pointing at the contact
-- that absorbed it, so links to it can follow; `contact_merges` records exactly what moved.
ALTER TABLE contacts ADD COLUMN merged_into TEXT REFERENCES contacts (id);
-- Finds the messages a merge moves (messages.contact_id is the sender of customer messages).
CREATE INDEX messages_contact ON messages (contact_id, ingest_seq);

CREATE TABLE contact_merges (
    id                  TEXT PRIMARY KEY,
    kept_id             TEXT NOT NULL REFERENCES contacts (id),
    absorbed_id         TEXT NOT NULL REFERENCES contacts (id),
    -- JSON array of {"namespace", "handle"}: the identities moved to the kept contact.
    moved_identities    TEXT NOT NULL,
    -- JSON array of conversation ids moved to the kept contact.
    moved_conversations TEXT NOT NULL,
    -- How many messages changed contact; which ones is in contact_merge_messages.
    moved_messages      BIGINT NOT NULL,
    -- JSON array of {"field", "before", "after"}: the kept contact's empty fields the merge
    -- filled with the absorbed contact's values.
    filled_fields       TEXT NOT NULL,
    -- The highest ingest_seq when merged: customer messages after it arrived while merged.
    seq_at_merge        BIGINT NOT NULL,
    merged_by           TEXT REFERENCES agents (id),
    merged_at           BIGINT NOT NULL,
    undone_by           TEXT REFERENCES agents (id),
    undone_at           BIGINT
);
CREATE INDEX contact_merges_kept ON contact_merges (kept_id, merged_at);
CREATE INDEX contact_merges_absorbed ON contact_merges (absorbed_id, merged_at);

-- The messages a merge moved, by ingest_seq (the messages' primary key).
CREATE TABLE contact_merge_messages (
    merge_id    TEXT NOT NULL REFERENCES contact_merges (id),
    ingest_seq  BIGINT NOT NULL,
    PRIMARY KEY (merge_id, ingest_seq)
);

-- Canned replies, inserted in the reply box by typing `/` and their shortcut.
CREATE TABLE canned_replies (
    id          TEXT PRIMARY KEY,
    shortcut    TEXT NOT NULL UNIQUE,
    title       TEXT NOT NULL,
    body        TEXT NOT NULL,
    created_by  TEXT REFERENCES agents (id) ON DELETE SET NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
