-- Pager incidents (PagerDuty, Opsgenie, Grafana OnCall) posted to Slack. Portable SQL (SQLite
-- and PostgreSQL); times are Unix milliseconds.

-- One row per provider incident: the unique key is what posts an incident once across duplicate
-- deliveries and replicas. `status_at` is the provider time of the state shown; an event older
-- than it never overwrites it (deliveries arrive out of order). `claim_*` is the click being
-- carried out: one conditional UPDATE (WHERE claim_user IS NULL) lets one click act.
CREATE TABLE pager_incidents (
    id             TEXT PRIMARY KEY,
    provider       TEXT NOT NULL,          -- pagerduty | opsgenie | grafana_oncall
    incident_id    TEXT NOT NULL,          -- the provider's incident / alert / alert group id
    title          TEXT NOT NULL,
    service        TEXT NOT NULL,          -- the service, team or integration, as named
    urgency        TEXT,                   -- urgency and/or priority, as the provider says
    url            TEXT,                   -- the incident in the provider's web app
    opened_at      BIGINT NOT NULL,
    assignees      TEXT NOT NULL,          -- JSON array of {id, name, email}
    route          TEXT NOT NULL,          -- JSON: the route it was posted by
    status         TEXT NOT NULL,          -- triggered | acknowledged | resolved
    status_at      BIGINT NOT NULL,
    status_by_name TEXT,
    status_by_email TEXT,
    status_by_slack TEXT,                  -- Slack user id when the change came from Slack
    claim_user     TEXT,
    claim_action   TEXT,                   -- acknowledge | resolve
    claimed_at     BIGINT,
    request_id     TEXT,                   -- Opsgenie's requestId of the action in flight
    channel        TEXT,
    message_ts     TEXT,
    version        BIGINT NOT NULL,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    UNIQUE (provider, incident_id)
);

-- Deliveries and events already taken in (PagerDuty's X-Webhook-Id and event.id, Opsgenie's
-- alert action and update time, Grafana OnCall's group, event type and time): a redelivery is
-- answered and ignored.
CREATE TABLE pager_events_seen (
    event_key TEXT PRIMARY KEY,
    seen_at   BIGINT NOT NULL
);
