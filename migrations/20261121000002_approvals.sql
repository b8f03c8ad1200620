-- Manual Judgment approvals. One row per judgment: a stage run, keyed by execution, stage and the
-- stage's start time (a restarted stage starts again and is a new judgment).
CREATE TABLE judgments (
    id             TEXT PRIMARY KEY,
    execution_id   TEXT NOT NULL,
    stage_id       TEXT NOT NULL,
    stage_start    BIGINT NOT NULL,
    application    TEXT NOT NULL,
    pipeline_name  TEXT NOT NULL,
    stage_name     TEXT NOT NULL,
    -- awaiting | judging | approved | rejected | decided_elsewhere | canceled | ended | vanished
    state          TEXT NOT NULL,
    channel        TEXT,
    message_ts     TEXT,
    -- The claim of the person judging from Slack (set atomically with state = 'judging').
    judge_user     TEXT,
    judge_name     TEXT,
    claimed_at     BIGINT,
    decision       TEXT,          -- continue | stop
    judgment_input TEXT,
    -- What Spinnaker did: who decided (a Slack user or a Spinnaker user) and when.
    decided_by     TEXT,
    decided_at     BIGINT,
    note           TEXT,          -- why a judgment was not accepted, or how the stage ended
    trigger_user   TEXT,
    snapshot       TEXT NOT NULL, -- what the message shows (JSON)
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    UNIQUE (execution_id, stage_id, stage_start)
);
CREATE INDEX judgments_state ON judgments (state);
CREATE INDEX judgments_execution ON judgments (execution_id);
