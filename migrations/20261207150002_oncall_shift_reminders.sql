-- On-call shift reminders (oncall.remind_before_shift_mins). Portable SQL (SQLite and
-- PostgreSQL); times are Unix ms.
--
-- Per group: the upcoming shifts the latest read of its providers returned, one row per
-- (group, person, shift start). Every sync run that reads a group replaces its upcoming rows with
-- what it read, so a cancelled shift loses its row and a moved one gets a new row (a new start).
-- `reminded_at` is set by the one conditional UPDATE that queues the shift's reminder, in the same
-- transaction: once per shift, across replicas and restarts, however long finished jobs are kept.
CREATE TABLE oncall_shift_reminders (
    handle      TEXT NOT NULL,   -- the user group's handle, lower case
    user_id     TEXT NOT NULL,   -- the Slack user ID of the person on shift
    starts_at   BIGINT NOT NULL,
    ends_at     BIGINT,          -- NULL: no known end
    read_id     TEXT NOT NULL,   -- the read that last returned the shift (one ID per read)
    read_at     BIGINT NOT NULL, -- when that read happened
    reminded_at BIGINT,          -- NULL: not reminded yet
    PRIMARY KEY (handle, user_id, starts_at)
);
