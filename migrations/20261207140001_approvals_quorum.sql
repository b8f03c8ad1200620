-- Quorum, reminders, expiry and reasons for Manual Judgments (portable: SQLite and PostgreSQL).
--
-- `approvals` counts the distinct people whose approval is recorded in judgment_approvals; the
-- conditional UPDATE that increments it is what serialises approvals arriving together, on one
-- replica or several. `quorum_input` is the judgment input fixed by the first approval.
ALTER TABLE judgments ADD COLUMN approvals BIGINT NOT NULL DEFAULT 0;
ALTER TABLE judgments ADD COLUMN quorum_input TEXT;
-- Why it was rejected (from `/spinnaker reject <execution> <reason>`).
ALTER TABLE judgments ADD COLUMN reason TEXT;
-- How many reminders were posted (moved forward by a conditional UPDATE, once per interval).
ALTER TABLE judgments ADD COLUMN reminders_sent BIGINT NOT NULL DEFAULT 0;
-- Set when the judgment expired in Slack (approvals.expire_after_mins).
ALTER TABLE judgments ADD COLUMN expired_at BIGINT;

CREATE TABLE judgment_approvals (
    judgment_id    TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    user_name      TEXT NOT NULL,
    judgment_input TEXT,
    approved_at    BIGINT NOT NULL,
    PRIMARY KEY (judgment_id, user_id)
);
