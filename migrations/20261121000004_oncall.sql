-- On-call user-group sync. Portable SQL (SQLite and PostgreSQL); times are Unix milliseconds.

-- Per Slack user group: the members slackops last recorded and announced. `generation` moves on
-- with every announced change, in one conditional UPDATE (WHERE generation = <read value>), so
-- exactly one sync run queues the notices of a change; notice jobs carry it in their dedup key.
CREATE TABLE oncall_groups (
    handle       TEXT PRIMARY KEY,     -- the user group's handle, lower case
    usergroup_id TEXT,
    members      TEXT NOT NULL,        -- JSON array of Slack user IDs, sorted
    generation   BIGINT NOT NULL DEFAULT 0,
    changed_at   BIGINT NOT NULL,
    synced_at    BIGINT NOT NULL
);

-- Throttle of problem posts to the ops channel: one row per (kind of problem, group).
CREATE TABLE oncall_alerts (
    alert_key      TEXT PRIMARY KEY,
    last_posted_at BIGINT NOT NULL,
    suppressed     BIGINT NOT NULL DEFAULT 0   -- posts held back since the last one
);
