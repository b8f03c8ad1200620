-- Interactions already acted on, by a key derived from the interaction (a modal's view id, hash
-- and submitted values; a click's action_ts; a confirmation message), so a repeated or retried
-- submission or click does its action once, across replicas (slack::once).
CREATE TABLE interaction_claims (
    claim_key  TEXT PRIMARY KEY,
    claimed_at BIGINT NOT NULL
);
CREATE INDEX interaction_claims_at ON interaction_claims (claimed_at);
