-- Executions started from Slack, followed until they end so their message can say how.
CREATE TABLE pipeline_runs (
    id            TEXT PRIMARY KEY,
    execution_id  TEXT NOT NULL UNIQUE,
    application   TEXT NOT NULL,
    pipeline_name TEXT NOT NULL,
    started_by    TEXT NOT NULL,
    channel       TEXT,
    message_ts    TEXT,
    -- RUNNING until the execution ends, then its final status.
    status        TEXT NOT NULL,
    started_at    BIGINT NOT NULL,
    ended_at      BIGINT,
    parameters    TEXT NOT NULL
);
