-- On-call: when each group changes next. Portable SQL (SQLite and PostgreSQL); times are Unix ms.

-- Per group, written by every sync run that read the group: the next moment its members change
-- (the next known handoff, or the next shift's start minus the group's handover window). The
-- service syncs the group again at that moment, on whichever replica holds the run lease; the
-- row survives restarts, so a restart between reading and handing off keeps the schedule.
CREATE TABLE oncall_schedule (
    handle  TEXT PRIMARY KEY,   -- the user group's handle, lower case
    due_at  BIGINT,             -- NULL: no change known (the interval sync re-reads the group)
    read_at BIGINT NOT NULL     -- when the providers were last read for it
);

-- Per (channel, group): the "On call: …" part slackops last put at the start of the channel's
-- topic, so the topic is read and written only when that part changes.
CREATE TABLE oncall_topics (
    channel TEXT NOT NULL,
    handle  TEXT NOT NULL,
    part    TEXT NOT NULL,
    PRIMARY KEY (channel, handle)
);
