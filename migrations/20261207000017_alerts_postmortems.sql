-- Alertmanager alert groups and postmortem follow-up.
--
-- One row per alert group (Alertmanager's groupKey, hashed into `id` so the key can be as long as
-- a route makes it). Every delivery rewrites the row under its `version` (a conditional UPDATE),
-- so two replicas receiving the same group at once never both announce: the loser re-reads.
CREATE TABLE alert_groups (
    id          TEXT PRIMARY KEY,   -- sha256 of group_key, hex
    group_key   TEXT NOT NULL,
    receiver    TEXT NOT NULL,
    rule        BIGINT NOT NULL,    -- index into announcements.alert_rules when last matched
    mode        TEXT NOT NULL,      -- suggest | announce
    status      TEXT NOT NULL,      -- firing | resolved (every alert resolved)
    alerts      TEXT NOT NULL,      -- JSON array of the group's alerts as last seen
    proposal    TEXT NOT NULL,      -- JSON {systems, severity, summary, problems}
    state       TEXT NOT NULL,      -- suggested | dismissed | announced
    decided_by  TEXT,               -- who announced or dismissed it (Slack user id or api:alertmanager)
    outage_id   TEXT,               -- the outage announced from it (the latest)
    episode     BIGINT NOT NULL,    -- bumped when a group that had resolved fires again
    resolved_at BIGINT,             -- when its last alert ended, once every alert resolved
    quiet_since BIGINT,             -- when we first saw every alert resolved (auto-resolve counts from here)
    channel     TEXT,
    message_ts  TEXT,               -- the suggestion message, once posted
    version     BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX alert_groups_outage ON alert_groups (outage_id);
CREATE INDEX alert_groups_quiet ON alert_groups (mode, status, quiet_since);

-- A postmortem owed for an outage resolved with "postmortem needed": who writes it, by when, and
-- the report once linked. Reminders sent are rows in outage_reminders (kind 'postmortem').
CREATE TABLE postmortems (
    outage_id  TEXT PRIMARY KEY,
    owner      TEXT NOT NULL,       -- Slack user id
    due_at     BIGINT NOT NULL,     -- ms since the epoch (end of the due working day, UTC)
    url        TEXT,
    summary    TEXT,
    added_by   TEXT,
    added_at   BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX postmortems_open ON postmortems (url, due_at);
