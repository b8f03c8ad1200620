-- Email subscriptions to the public status page (portable: SQLite and PostgreSQL).
--
-- A subscriber is `pending` until the owner of the address confirms, then `active`; unsubscribing
-- deletes the row (nothing is kept about an address that left). `systems` is a JSON array of
-- system ids (empty: every system); `pending_systems` is what the next confirmation applies (a
-- subscribe request for an active address changes nothing until it is confirmed). Only the
-- SHA-256 (hex) of a confirmation token is stored; unsubscribe links are signed with
-- `status.subscriptions.secret`, so they are not stored at all.
CREATE TABLE status_subscribers (
    id                  TEXT PRIMARY KEY,
    email               TEXT NOT NULL,
    systems             TEXT NOT NULL,
    state               TEXT NOT NULL,
    pending_systems     TEXT,
    confirm_hash        TEXT,
    confirm_expires_at  BIGINT,
    created_at          BIGINT NOT NULL,
    confirmed_at        BIGINT,
    updated_at          BIGINT NOT NULL
);
-- Addresses are stored lower-cased: one row per address.
CREATE UNIQUE INDEX status_subscribers_email ON status_subscribers (email);
CREATE UNIQUE INDEX status_subscribers_confirm_hash ON status_subscribers (confirm_hash);
CREATE INDEX status_subscribers_state ON status_subscribers (state);

-- One row per email to an address (a confirmation or a notice), reserved by its send job (`id` is
-- the job's id, so a retry keeps its place) before it is sent: the first
-- `status.subscriptions.max_emails_per_address_per_day` of a day are sent, later ones skipped.
-- Rows older than a day are deleted.
CREATE TABLE status_email_sends (
    id     TEXT PRIMARY KEY,
    email  TEXT NOT NULL,
    at     BIGINT NOT NULL
);
CREATE INDEX status_email_sends_email_at ON status_email_sends (email, at);

-- One row per subscribe request accepted for checking, by client address (as
-- `status.subscriptions.trusted_proxy_hops` decides it): at most
-- `status.subscriptions.max_requests_per_client_per_hour` in any hour. Rows older than an hour are
-- deleted.
CREATE TABLE status_subscribe_requests (
    client  TEXT NOT NULL,
    at      BIGINT NOT NULL
);
CREATE INDEX status_subscribe_requests_client_at ON status_subscribe_requests (client, at);
