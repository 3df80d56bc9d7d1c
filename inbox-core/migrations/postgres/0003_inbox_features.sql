-- What the agents' web inbox needs from the store: full-text search, label and unread filters,
-- cheap tab counts, contact merge / unmerge and canned replies.

-- Full-text search over every message's text (customer messages, replies and notes) with the
-- `simple` configuration (lower-cased words, no stemming, no stop words: support mail is in many
-- languages). Only the first 100,000 characters are indexed: a tsvector is limited to 1 MB, and a
-- message that could not be indexed must still be stored.
ALTER TABLE messages ADD COLUMN search tsvector
    GENERATED ALWAYS AS (to_tsvector('simple'::regconfig, left(text, 100000))) STORED;
CREATE INDEX messages_search ON messages USING gin (search);

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

CREATE FUNCTION conversation_labels_sync() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        DELETE FROM conversation_labels WHERE conversation_id = NEW.id;
    END IF;
    INSERT INTO conversation_labels (label, conversation_id, status)
        SELECT DISTINCT t.value, NEW.id, NEW.status
        FROM jsonb_array_elements_text(NEW.labels::jsonb) AS t(value)
        ON CONFLICT DO NOTHING;
    RETURN NULL;
END;
$$;
CREATE FUNCTION conversation_labels_status() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE conversation_labels SET status = NEW.status WHERE conversation_id = NEW.id;
    RETURN NULL;
END;
$$;
CREATE TRIGGER conversations_labels_insert AFTER INSERT ON conversations
    FOR EACH ROW EXECUTE FUNCTION conversation_labels_sync();
CREATE TRIGGER conversations_labels_update AFTER UPDATE OF labels ON conversations
    FOR EACH ROW WHEN (OLD.labels IS DISTINCT FROM NEW.labels)
    EXECUTE FUNCTION conversation_labels_sync();
CREATE TRIGGER conversations_labels_status AFTER UPDATE OF status ON conversations
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION conversation_labels_status();
INSERT INTO conversation_labels (label, conversation_id, status)
    SELECT DISTINCT t.value, c.id, c.status
    FROM conversations c, jsonb_array_elements_text(c.labels::jsonb) AS t(value)
    ON CONFLICT DO NOTHING;

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
