-- Outage announcements. One row per outage, holding its current state; every change is also
-- appended to outage_history (never updated or deleted), which is what the thread replies, the
-- status page's "latest update" and the API's history are built from.
CREATE TABLE outages (
    id                     TEXT PRIMARY KEY,
    summary                TEXT NOT NULL,
    systems                TEXT NOT NULL,   -- JSON array of system ids from the catalogue
    impact                 TEXT NOT NULL,   -- JSON object: audience id -> {"affected": "yes|no|unknown", "details": "..."}
    severity               TEXT NOT NULL,   -- critical | major | minor
    eta                    TEXT NOT NULL,   -- 30m | 2h | 8h | 24h | unknown
    eta_set_at             BIGINT NOT NULL, -- the ETA's deadline is eta_set_at + eta
    resolution_assignee    TEXT NOT NULL,   -- Slack user id
    communication_assignee TEXT NOT NULL,   -- Slack user id
    public                 BIGINT NOT NULL, -- 1: shown on the public status page
    state                  TEXT NOT NULL,   -- open | resolved
    announced_by           TEXT NOT NULL,   -- Slack user id, or "api:<name>"
    started_at             BIGINT NOT NULL,
    resolved_at            BIGINT,
    resolution             TEXT,            -- JSON: {"summary", "postmortem", "report_url", "resolved_by"}
    channel                TEXT,            -- where the announcement is posted
    message_ts             TEXT,
    permalink              TEXT,
    incident_channel       TEXT,            -- the dedicated channel, once created
    last_update_at         BIGINT NOT NULL, -- last change anyone posted (drives the nudge)
    version                BIGINT NOT NULL, -- bumped on every change (optimistic concurrency)
    created_at             BIGINT NOT NULL,
    updated_at             BIGINT NOT NULL,
    eta_snoozed_until      BIGINT           -- "remind me later" after the ETA passed (not a change)
);
CREATE INDEX outages_state ON outages (state);
CREATE INDEX outages_started ON outages (started_at);

CREATE TABLE outage_history (
    id         TEXT PRIMARY KEY,
    outage_id  TEXT NOT NULL,
    seq        BIGINT NOT NULL,  -- 1, 2, ... per outage
    at         BIGINT NOT NULL,
    by_user    TEXT NOT NULL,
    kind       TEXT NOT NULL,    -- announced | updated | reassigned | resolved | reopened
    changes    TEXT NOT NULL,    -- JSON array of {"field", "from", "to"}
    reason     TEXT,             -- why, as written by the person (shown as the latest update)
    snapshot   TEXT NOT NULL,    -- JSON of the outage after the change
    UNIQUE (outage_id, seq)
);
CREATE INDEX outage_history_outage ON outage_history (outage_id, seq);

-- Reminders already sent, so each is sent once: one row per (outage, kind, key). The key says which
-- occasion it was for: the ETA deadline (before_eta, eta_passed) or the quiet period (nudge).
CREATE TABLE outage_reminders (
    outage_id TEXT NOT NULL,
    kind      TEXT NOT NULL,     -- before_eta | eta_passed | nudge
    occasion  TEXT NOT NULL,
    sent_at   BIGINT NOT NULL,
    PRIMARY KEY (outage_id, kind, occasion)
);

-- Messages copied into an announcement's thread by reaction: each source message once.
CREATE TABLE outage_reaction_copies (
    outage_id  TEXT NOT NULL,
    channel    TEXT NOT NULL,
    message_ts TEXT NOT NULL,
    copied_by  TEXT NOT NULL,    -- who reacted
    copy_ts    TEXT,             -- the copy in the thread
    at         BIGINT NOT NULL,
    PRIMARY KEY (outage_id, channel, message_ts)
);
