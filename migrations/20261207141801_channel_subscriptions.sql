-- Slack channels subscribed to public outage and maintenance notices (`/announce subscribe`),
-- one row per channel (portable: SQLite and PostgreSQL). `systems` is a JSON array of ids from
-- `announcements.systems`; `[]` means every system. Subscribing again replaces the row.
CREATE TABLE channel_subscriptions (
    channel     TEXT PRIMARY KEY,
    systems     TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_by  TEXT NOT NULL,
    updated_at  BIGINT NOT NULL
);
