-- Scheduled maintenance. One row per window holding its current state; whether it is upcoming,
-- in progress or finished follows from the clock and starts_at/ends_at. The announced_* columns
-- record which announcements were queued (each once: a conditional UPDATE decides, and the Slack
-- post itself is a job with a dedup key).
CREATE TABLE maintenances (
    id                 TEXT PRIMARY KEY,
    title              TEXT NOT NULL,
    summary            TEXT NOT NULL,   -- details shown under the title ('' when none)
    systems            TEXT NOT NULL,   -- JSON array of system ids from the catalogue
    starts_at          BIGINT NOT NULL, -- ms since the epoch
    ends_at            BIGINT NOT NULL,
    public             BIGINT NOT NULL, -- 1: shown on the public status page
    state              TEXT NOT NULL,   -- scheduled | canceled
    created_by         TEXT NOT NULL,   -- Slack user id, or "api"
    canceled_at        BIGINT,
    announced_start    BIGINT NOT NULL, -- 1 once the start was announced (or skipped)
    announced_end      BIGINT NOT NULL, -- 1 once the end was announced
    channel            TEXT,            -- where the creation was announced
    message_ts         TEXT,
    version            BIGINT NOT NULL, -- bumped on every change
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
);
CREATE INDEX maintenances_ends ON maintenances (ends_at);
CREATE INDEX maintenances_pending ON maintenances (state, announced_end, starts_at);
