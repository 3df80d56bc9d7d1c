-- Where each browser session came from, for the agents page's sessions list.
ALTER TABLE sessions ADD COLUMN user_agent TEXT;
ALTER TABLE sessions ADD COLUMN client TEXT;

-- A personal canned reply is offered to its creator only; a team one to everyone.
ALTER TABLE canned_replies ADD COLUMN personal BOOLEAN NOT NULL DEFAULT FALSE;

-- Tokens of agents disabled before this migration stay dead when the agent is enabled again.
UPDATE api_tokens SET revoked_at = a.disabled_at
FROM agents a
WHERE a.id = api_tokens.agent_id AND a.disabled_at IS NOT NULL AND api_tokens.revoked_at IS NULL;

-- The provider's time of a message when it was not believed (too far in the future, or too long
-- before the channel existed); `sent_at` is then the arrival time.
ALTER TABLE messages ADD COLUMN claimed_sent_at BIGINT;
